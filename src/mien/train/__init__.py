"""Training mien's expression model (needs the `train` extra: torch)."""
