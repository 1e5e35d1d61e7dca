"""The primitives floor: one module per family; ``base.py`` holds the rule interface."""
