"""Minimal tree flattening for transform arguments (lists, tuples, dicts of arrays).

The recursion is in module-level functions with explicit state: a nested
function that calls itself forms a reference cycle, which would keep the
leaves (arrays, and so their buffers) alive until the garbage collector runs.
"""
from __future__ import annotations

from ..core.array import array


def flatten(tree, what: str = "tree_flatten", strict: bool = True):
    """Leaves (arrays) of ``tree`` in order, and a function rebuilding a tree from new leaves."""
    leaves: list = []
    spec = _build(tree, leaves, what, strict)

    def unflatten(new_leaves):
        return _rebuild(spec, iter(new_leaves))

    return leaves, unflatten


def _build(t, leaves, what, strict):
    if isinstance(t, array):
        leaves.append(t)
        return None
    if isinstance(t, (list, tuple)):
        return ("seq", type(t), [_build(v, leaves, what, strict) for v in t])
    if isinstance(t, dict):
        keys = list(t.keys())
        return ("dict", keys, [_build(t[k], leaves, what, strict) for k in keys])
    if strict:
        raise ValueError(f"[{what}] The argument should contain only arrays")
    leaves.append(t)
    return None


def _rebuild(s, it):
    if s is None:
        return next(it)
    if s[0] == "seq":
        vals = [_rebuild(v, it) for v in s[2]]
        kind = s[1]
        if kind is list:
            return vals
        if kind is tuple:
            return tuple(vals)
        try:
            return kind(*vals)  # namedtuple
        except TypeError:
            return kind(vals)
    return {k: _rebuild(v, it) for k, v in zip(s[1], s[2])}
