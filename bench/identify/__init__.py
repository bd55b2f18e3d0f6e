"""Benchmark: identifying catalog tracks in degraded phone memos (issue 4).

Run ``python -m bench.identify --help``.
"""
