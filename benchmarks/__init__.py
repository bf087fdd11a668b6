"""Benchmarks for trainyard (run the scripts directly; see README.md)."""
