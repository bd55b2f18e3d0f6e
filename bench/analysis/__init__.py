"""Benchmark of tempo, key and energy analysis (``python -m bench.analysis``)."""
