"""Argument and output trees of a compiled call: flatten to arrays plus a hashable key, rebuild."""
from __future__ import annotations

from kiln._tree import leaves_of
from kiln.graph.array import array

_CONST_TYPES = (int, float, str, bool, type(None))


def _flatten_call(args, kwargs, shapeless: bool):
    """Arrays of ``args``/``kwargs`` in order, and a hashable key of the rest.

    The key is a prefix-order token list: containers ``("L", n)``,
    ``("T", n, cls)``, ``("D", keys)``, constants ``("C", type, value)`` and
    arrays ``(dtype, shape or ndim, stream)``; it also rebuilds the tree.
    """
    arrays: list = []
    key: list = []
    _flat(args, arrays, key, shapeless)
    if kwargs:
        names = tuple(sorted(kwargs))
        key.append(("K", names))
        for k in names:
            _flat(kwargs[k], arrays, key, shapeless)
    return arrays, key


def _flat(x, arrays, key, shapeless):
    t = type(x)
    if t is array or isinstance(x, array):
        arrays.append(x)
        key.append((x._dtype, len(x._shape) if shapeless else x._shape, x._stream))
    elif t is list:
        key.append(("L", len(x)))
        for v in x:
            _flat(v, arrays, key, shapeless)
    elif isinstance(x, tuple):
        key.append(("T", len(x), t))
        for v in x:
            _flat(v, arrays, key, shapeless)
    elif isinstance(x, dict):
        keys = tuple(x.keys())
        key.append(("D", keys))
        for k in keys:
            _flat(x[k], arrays, key, shapeless)
    elif t in _CONST_TYPES:
        key.append(("C", t, x))
    else:
        raise ValueError(
            "[compile] Function arguments must be trees of arrays or constants (floats, ints, "
            f"strings, or None), but received type {t.__name__}."
        )


def _unflatten_call(key, leaves):
    """Rebuild ``(args, kwargs)`` from a key made by ``_flatten_call``."""
    # Module-level recursion with explicit iterators: a nested function that
    # calls itself is a reference cycle that would keep the leaves (arrays)
    # alive until the garbage collector runs.
    it = iter(key)
    leaves = iter(leaves)
    args = _unflatten_call_rec(it, leaves)
    kwargs = {}
    tok = next(it, None)
    if tok is not None:
        kwargs = {name: _unflatten_call_rec(it, leaves) for name in tok[1]}
    return args, kwargs


def _unflatten_call_rec(it, leaves):
    tok = next(it)
    head = tok[0]
    if type(head) is not str:
        return next(leaves)
    if head == "C":
        return tok[2]
    if head == "L":
        return [_unflatten_call_rec(it, leaves) for _ in range(tok[1])]
    if head == "T":
        vals = [_unflatten_call_rec(it, leaves) for _ in range(tok[1])]
        cls = tok[2]
        return _rebuild_tuple(cls, vals)
    if head == "D":
        return {k: _unflatten_call_rec(it, leaves) for k in tok[1]}
    raise AssertionError(tok)


def _flatten_out(x, arrays):
    """A rebuildable description of the output tree (any non-array leaf is a constant)."""
    if isinstance(x, array):
        arrays.append(x)
        return None
    if type(x) is list:
        return ("L", [_flatten_out(v, arrays) for v in x])
    if isinstance(x, tuple):
        return ("T", type(x), [_flatten_out(v, arrays) for v in x])
    if isinstance(x, dict):
        return ("D", [(k, _flatten_out(v, arrays)) for k, v in x.items()])
    return ("C", x)


def _unflatten_out(spec, leaves):
    return _unflatten_out_rec(spec, iter(leaves))


def _unflatten_out_rec(s, it):
    # Module-level (not a self-referencing closure): see _unflatten_call.
    if s is None:
        return next(it)
    head = s[0]
    if head == "C":
        return s[1]
    if head == "L":
        return [_unflatten_out_rec(v, it) for v in s[1]]
    if head == "T":
        vals = [_unflatten_out_rec(v, it) for v in s[2]]
        return _rebuild_tuple(s[1], vals)
    return {k: _unflatten_out_rec(v, it) for k, v in s[1]}


def _leaf_paths(tree) -> list:
    """``(path, array)`` for each array leaf of a state tree (other leaves ignored)."""
    out: list = []
    stack = [((), tree)]
    while stack:
        path, t = stack.pop()
        if isinstance(t, array):
            out.append((path, t))
        elif isinstance(t, (list, tuple)):
            stack.extend((path + (i,), v) for i, v in reversed(list(enumerate(t))))
        elif isinstance(t, dict):
            stack.extend((path + (k,), v) for k, v in reversed(list(t.items())))
    return out


def _state_arrays(tree) -> list:
    """The arrays of a captured-state tree, in order (other leaves are not state)."""
    return [x for x in leaves_of(tree) if isinstance(x, array)]


def _tree_get(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def _tree_set(tree, path, value):
    """Set the leaf at ``path``; mutable containers change in place.

    Returns the (possibly new, where a tuple had to be rebuilt) tree.
    """
    if not path:
        return value
    k = path[0]
    new = _tree_set(tree[k], path[1:], value)
    if isinstance(tree, tuple):
        vals = list(tree)
        vals[k] = new
        return _rebuild_tuple(type(tree), vals)
    if tree[k] is not new:
        tree[k] = new
    return tree


def _rebuild_tuple(cls, vals: list) -> tuple:
    """A tuple of class ``cls`` holding ``vals``: namedtuples take their fields as arguments,
    other tuple subclasses one iterable."""
    if cls is tuple:
        return tuple(vals)
    return cls(*vals) if hasattr(cls, "_fields") else cls(vals)
