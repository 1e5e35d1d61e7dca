"""One module per family of primitives; see ``base.py`` for the rule interface."""
