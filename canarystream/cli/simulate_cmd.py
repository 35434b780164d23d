"""Placeholder for the simulate_cmd command group."""
