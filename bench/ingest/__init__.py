"""Catalog ingest cost: one decode per file against a decode per step."""
