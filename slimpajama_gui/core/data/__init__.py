"""Datasets: reading tables, the bad-data checks, tokenizing and batching."""
