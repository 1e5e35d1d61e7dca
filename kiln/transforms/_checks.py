"""Argument checks shared by the transforms, raised where the transform is applied."""
from __future__ import annotations


def require_callable(fun, transform: str) -> None:
    """Raise TypeError naming ``transform`` unless ``fun`` can be called."""
    if not callable(fun):
        raise TypeError(f"[{transform}] The function to transform must be callable, "
                        f"got {type(fun).__name__} {fun!r:.40}.")
