"""mx.fast (filled in by its issue)."""
