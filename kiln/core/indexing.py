"""indexing ops (filled in by their issue)."""
__all__: list = []
