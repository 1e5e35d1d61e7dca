"""Ops: argument normalisation and node building (the layout refactor fills this floor)."""
