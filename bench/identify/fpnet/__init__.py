"""Neural audio fingerprint: 1 s segments → short unit vectors, searched by sequence voting.

An experiment measured against the landmark fingerprints (``python -m bench.identify.neural``;
results in ``notes/issue-4.md``): trained here on CPU it is far weaker at low SNR and adds nothing
in fusion, so ``engine.fingerprint.identify`` does not use it and it lives with the benchmark.
"""

from bench.identify.fpnet.model import (
    FP_NET_SR,
    HOP_S,
    SEGMENT_S,
    FpNet,
    FpNetConfig,
    load_model,
    save_model,
    segment_starts,
    segment_vectors,
)
from bench.identify.fpnet.search import ReferenceSet, SegmentMatch, match_segments

__all__ = ["FP_NET_SR", "HOP_S", "SEGMENT_S", "FpNet", "FpNetConfig", "load_model", "save_model",
           "segment_starts", "segment_vectors", "ReferenceSet", "SegmentMatch", "match_segments"]
