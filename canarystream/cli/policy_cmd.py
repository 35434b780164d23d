"""Placeholder for the policy_cmd command group."""
