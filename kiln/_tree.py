"""Trees: nested lists, tuples and dicts of leaves; the one tree module of kiln.

``kiln.utils`` re-exports the ``tree_*`` functions (MLX's API: anything not a list, tuple or
dict is a leaf). The transforms, ``mx.eval`` and ``compile`` use ``flatten``, whose leaves are
arrays: the array type is registered here by ``kiln.graph.array`` (this floor imports nothing of
kiln). Walkers are iterative or recurse through module-level functions with explicit state: a
nested function that calls itself forms a reference cycle, which would keep the leaves (arrays,
and so their buffers) alive until the garbage collector runs.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

__all__ = [
    "tree_map",
    "tree_map_with_path",
    "tree_flatten",
    "tree_unflatten",
    "tree_reduce",
    "tree_merge",
]

_leaf_types: tuple = ()  # the array type, set by register_leaf from kiln.graph.array


def register_leaf(cls: type) -> None:
    """Make instances of ``cls`` the leaves ``flatten`` collects (called once for ``array``)."""
    global _leaf_types
    if cls not in _leaf_types:
        _leaf_types = _leaf_types + (cls,)


def flatten(tree, what: str = "tree_flatten", strict: bool = True):
    """Leaves (arrays) of ``tree`` in order, and a function rebuilding a tree from new leaves."""
    leaves: list = []
    spec = _build(tree, leaves, what, strict)

    def unflatten(new_leaves):
        return _rebuild(spec, iter(new_leaves))

    return leaves, unflatten


def _build(t, leaves, what, strict):
    if isinstance(t, _leaf_types):
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


def leaves_of(tree) -> list:
    """The array leaves of ``tree`` (lists, tuples, dicts), in order; other leaves are returned too.

    Iterative (an explicit stack), for ``mx.eval`` and other callers that need no structure.
    """
    out: list = []
    stack = [tree]
    while stack:
        t = stack.pop()
        if isinstance(t, _leaf_types):
            out.append(t)
        elif isinstance(t, (list, tuple)):
            stack.extend(reversed(t))
        elif isinstance(t, dict):
            stack.extend(reversed(list(t.values())))
        else:
            out.append(t)
    return out


def broadcast_prefix(prefix, tree, what: str, op: str = "vmap") -> list:
    """Expand a prefix tree (e.g. ``in_axes``) to one entry per leaf of ``tree``.

    An ``int`` or ``None`` in ``prefix`` covers the whole subtree below it; a non-array leaf of
    ``tree`` gets ``None``. Errors name ``op`` and ``what`` (the argument's name). Iterative.
    """
    out: list = []
    stack = [(prefix, tree)]
    while stack:
        p, t = stack.pop()
        if isinstance(t, _leaf_types):
            if isinstance(p, (list, tuple, dict)):
                raise ValueError(f"[{op}] {what} gives a tree where the argument is a single array.")
            out.append(p)
        elif isinstance(p, (int, type(None))):
            if isinstance(t, (list, tuple)):
                stack.extend((p, v) for v in reversed(t))
            elif isinstance(t, dict):
                stack.extend((p, v) for v in reversed(list(t.values())))
            else:
                out.append(None)  # non-array leaf: passed through
        elif isinstance(t, (list, tuple)) and isinstance(p, (list, tuple)):
            if len(p) != len(t):
                raise ValueError(f"[{op}] {what} has {len(p)} entries but the matching argument has {len(t)}.")
            stack.extend(reversed(list(zip(p, t))))
        elif isinstance(t, dict) and isinstance(p, dict):
            for k in t:
                if k not in p:
                    raise ValueError(f"[{op}] {what} is missing key {k!r} of the argument.")
            stack.extend(reversed([(p[k], v) for k, v in t.items()]))
        else:
            raise ValueError(f"[{op}] {what} does not match the structure of the arguments.")
    return out


# ---------------------------------------------------------------- the tree_* API of kiln.utils
def _is_node(tree: Any) -> bool:
    return isinstance(tree, (list, tuple, dict))


def _join(path, key) -> str:
    return f"{path}.{key}" if path is not None else str(key)


def _map(fn, tree, rest, is_leaf, path, with_path):
    """``tree_map``/``tree_map_with_path`` with an explicit stack (deep trees cannot overflow).

    Leaves are visited in order (``fn`` sees them left to right); each container is rebuilt once
    its children are done.
    """
    result = [None]
    stack = [(True, tree, rest, path, result, 0)]
    while stack:
        item = stack.pop()
        if not item[0]:  # rebuild a container from its finished children
            _, t, keys, kids, dst, slot = item
            if keys is not None:
                dst[slot] = dict(zip(keys, kids))
            else:
                dst[slot] = type(t)(*kids) if _is_namedtuple(t) else type(t)(kids)
            continue
        _, t, rs, p, dst, slot = item
        if (is_leaf is not None and is_leaf(t)) or not _is_node(t):
            dst[slot] = fn(p, t, *rs) if with_path else fn(t, *rs)
            continue
        keys = list(t.keys()) if isinstance(t, dict) else None
        n = len(keys) if keys is not None else len(t)
        kids = [None] * n
        stack.append((False, t, keys, kids, dst, slot))
        for i in reversed(range(n)):
            k = keys[i] if keys is not None else i
            stack.append((True, t[k], tuple(r[k] for r in rs), _join(p, k) if with_path else None, kids, i))
    return result[0]


def tree_map(fn: Callable, tree: Any, *rest: Any, is_leaf: Optional[Callable] = None) -> Any:
    """Apply ``fn`` to every leaf of ``tree`` and return a tree of the results.

    Args:
        fn: function called as ``fn(leaf, *rest_leaves)``.
        tree: the tree that decides the structure.
        *rest: trees with at least the structure of ``tree``; their matching
            subtrees are passed to ``fn`` as extra arguments.
        is_leaf: optional predicate marking extra leaves.

    Returns:
        A tree with the structure of ``tree`` holding ``fn``'s results.
    """
    return _map(fn, tree, rest, is_leaf, None, False)


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def tree_map_with_path(
    fn: Callable,
    tree: Any,
    *rest: Any,
    is_leaf: Optional[Callable] = None,
    path: Optional[Any] = None,
) -> Any:
    """Like :func:`tree_map` but ``fn`` also gets the dotted path of the leaf.

    Args:
        fn: function called as ``fn(path, leaf, *rest_leaves)``.
        tree: the tree that decides the structure.
        *rest: trees with at least the structure of ``tree``.
        is_leaf: optional predicate marking extra leaves.
        path: prefix of every path (default: none).

    Returns:
        A tree with the structure of ``tree`` holding ``fn``'s results.
    """
    return _map(fn, tree, rest, is_leaf, path, True)


def tree_flatten(
    tree: Any,
    prefix: str = "",
    is_leaf: Optional[Callable] = None,
    destination: Optional[Union[list, dict]] = None,
) -> Union[list, dict]:
    """Flatten a tree into ``(dotted_key, leaf)`` pairs.

    Args:
        tree: the tree to flatten.
        prefix: key prefix; its first character is dropped (so ``".a"``
            yields keys ``"a.…"``), matching MLX.
        is_leaf: optional predicate marking extra leaves.
        destination: a list (pairs are appended) or dict (keys are set) to
            fill; a new list by default.

    Returns:
        ``destination`` holding the flat tree.
    """
    if destination is None:
        destination = []
    if isinstance(destination, dict):
        def put(k, v):
            destination[k] = v
    elif isinstance(destination, list):
        def put(k, v):
            destination.append((k, v))
    else:
        raise ValueError("Destination should be either a list or a dictionary or None")

    # An explicit stack (not recursion) so deep trees cannot overflow.
    stack = [(prefix, tree)]
    while stack:
        key, node = stack.pop()
        if (is_leaf is None or not is_leaf(node)) and _is_node(node):
            items = enumerate(node) if not isinstance(node, dict) else node.items()
            stack.extend(reversed([(f"{key}.{k}", child) for k, child in items]))
        else:
            put(key[1:], node)
    return destination


def tree_unflatten(tree: Union[list, dict]) -> Any:
    """Rebuild a tree from its flat ``(dotted_key, leaf)`` form.

    Keys made only of digits become list positions, others dict keys.

    Args:
        tree: a list of pairs or a dict, as returned by :func:`tree_flatten`.

    Returns:
        The nested tree.
    """
    items = list(tree.items()) if isinstance(tree, dict) else list(tree)
    if len(items) == 1 and items[0][0] == "":
        return items[0][1]
    groups: dict = {}
    for key, value in items:
        head, _, tail = key.partition(".")
        groups.setdefault(head, []).append((tail, value))
    if groups and all(k.isdigit() for k in groups):
        out = [{} for _ in range(max(int(k) for k in groups) + 1)]
        for k, sub in groups.items():
            out[int(k)] = tree_unflatten(sub)
        return out
    return {k: tree_unflatten(sub) for k, sub in groups.items()}


def tree_reduce(fn: Callable, tree: Any, initializer: Any = None, is_leaf: Optional[Callable] = None) -> Any:
    """Fold ``fn(accumulator, leaf)`` over the leaves of ``tree``.

    Args:
        fn: the reducer.
        tree: the tree to reduce.
        initializer: the starting value; the first leaf when ``None``.
        is_leaf: optional predicate marking extra leaves.

    Returns:
        The accumulated value.
    """
    acc = initializer
    started = initializer is not None
    for _, leaf in tree_flatten(tree, is_leaf=is_leaf):
        if not started:
            acc, started = leaf, True
        else:
            acc = fn(acc, leaf)
    return acc


def tree_merge(tree_a: Any, tree_b: Any, merge_fn: Optional[Callable] = None) -> Any:
    """Merge two trees into one holding the leaves of both (a deep update).

    Empty containers count as empty subtrees. Where both trees hold a leaf
    at the same place, ``merge_fn(a, b)`` decides, and without it that is an
    error.

    Args:
        tree_a: the first tree.
        tree_b: the second tree.
        merge_fn: optional function combining two leaves.

    Returns:
        The merged tree.
    """
    def empty(t):
        return t is None or (_is_node(t) and len(t) == 0)

    if empty(tree_a):
        return tree_b
    if empty(tree_b):
        return tree_a
    if isinstance(tree_a, (list, tuple)) and isinstance(tree_b, (list, tuple)):
        n = max(len(tree_a), len(tree_b))
        merged = [
            tree_merge(tree_a[i] if i < len(tree_a) else None,
                       tree_b[i] if i < len(tree_b) else None, merge_fn)
            for i in range(n)
        ]
        return type(tree_a)(merged)
    if isinstance(tree_a, dict) and isinstance(tree_b, dict):
        out = dict(tree_a)
        for k, v in tree_b.items():
            out[k] = tree_merge(tree_a.get(k), v, merge_fn)
        return out
    if _is_node(tree_a) or _is_node(tree_b):
        raise ValueError("Trees contain elements at the same locations but of different types.")
    if merge_fn is None:
        raise ValueError("Trees contain elements at the same locations but no merge function was provided")
    return merge_fn(tree_a, tree_b)
