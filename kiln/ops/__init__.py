"""Ops by family (the target layout; most still live in kiln/core/)."""
