"""Pure statistics: sequential tests, sketches, checks and guards (no I/O, no clock)."""
