"""mx.linalg (filled in by its issue)."""
