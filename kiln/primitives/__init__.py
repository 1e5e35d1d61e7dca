"""Primitives by family (new layout; see docs/architecture.md)."""
