"""Minimal tree flattening for transform arguments (lists, tuples, dicts of arrays)."""
from __future__ import annotations

from ..core.array import array


def flatten(tree, what: str = "tree_flatten", strict: bool = True):
    """Leaves (arrays) of ``tree`` in order, and a function rebuilding a tree from new leaves."""
    leaves: list = []

    def build(t):
        if isinstance(t, array):
            leaves.append(t)
            return None
        if isinstance(t, (list, tuple)):
            subs = [build(v) for v in t]
            kind = type(t)
            return ("seq", kind, subs)
        if isinstance(t, dict):
            keys = list(t.keys())
            return ("dict", keys, [build(t[k]) for k in keys])
        if strict:
            raise ValueError(f"[{what}] The argument should contain only arrays")
        leaves.append(t)
        return None

    spec = build(tree)

    def unflatten(new_leaves):
        it = iter(new_leaves)

        def rec(s):
            if s is None:
                return next(it)
            if s[0] == "seq":
                vals = [rec(v) for v in s[2]]
                kind = s[1]
                if kind is list:
                    return vals
                if kind is tuple:
                    return tuple(vals)
                try:
                    return kind(*vals)  # namedtuple
                except TypeError:
                    return kind(vals)
            return {k: rec(v) for k, v in zip(s[1], s[2])}

        return rec(spec)

    return leaves, unflatten
