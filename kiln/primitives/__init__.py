"""Primitives, one module per family (the rule interface is in ``kiln.core.primitives.base``)."""
