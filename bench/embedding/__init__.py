"""Benchmark of the sounds-like embedder and its Annoy index (``python -m bench.embedding``)."""
