"""Scenario generator for demos, tests and benchmarks."""
