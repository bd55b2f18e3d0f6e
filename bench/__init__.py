"""Benchmarks: one command each, printing a table against a baseline measured in the same run."""
