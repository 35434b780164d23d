"""The decision engine (pure, event-time driven)."""
