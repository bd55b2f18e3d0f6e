"""Neural audio fingerprint: 1 s segments → short unit vectors, searched by sequence voting.

Importing ``engine.fpnet`` imports torch; ``engine`` itself does not.
"""

from engine.fpnet.model import (
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
from engine.fpnet.search import ReferenceSet, SegmentMatch, match_segments

__all__ = ["FP_NET_SR", "HOP_S", "SEGMENT_S", "FpNet", "FpNetConfig", "load_model", "save_model",
           "segment_starts", "segment_vectors", "ReferenceSet", "SegmentMatch", "match_segments"]
