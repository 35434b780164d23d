"""Benchmarks of canarystream: detection quality against peers, and speed."""
