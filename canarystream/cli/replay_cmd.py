"""Placeholder for the replay_cmd command group."""
