"""kiln.utils tree functions vs mlx.utils (pure Python, so compared directly)."""
from __future__ import annotations

import pytest

from kiln import utils as ku

try:
    import mlx.utils as mu
except Exception:  # pragma: no cover
    mu = None

needs_mlx = pytest.mark.skipif(mu is None, reason="real MLX not installed")

TREES = [
    {"a": [1, {"b": 2}], "c": (3, 4)},
    [[[0]]],
    {"x": None, "y": [], "z": {}, "w": [5, [6, [7]]]},
    {"layers": [{"w": 1, "b": 2}, {"w": 3}], "head": {"out": 4}},
    7,
]


@needs_mlx
@pytest.mark.parametrize("tree", TREES)
def test_flatten_unflatten_match_mlx(tree):
    for prefix in ("", ".p"):
        assert ku.tree_flatten(tree, prefix=prefix) == mu.tree_flatten(tree, prefix=prefix)
    assert ku.tree_flatten(tree, destination={}) == mu.tree_flatten(tree, destination={})
    flat = mu.tree_flatten(tree)
    if flat and flat[0][0] != "":
        assert ku.tree_unflatten(flat) == mu.tree_unflatten(flat)
        assert ku.tree_unflatten(dict(flat)) == mu.tree_unflatten(dict(flat))


@needs_mlx
@pytest.mark.parametrize("tree", TREES)
def test_map_reduce_match_mlx(tree):
    def f(x, *rest):
        return None if x is None else (x, *rest)

    assert ku.tree_map(f, tree) == mu.tree_map(f, tree)
    assert ku.tree_map(f, tree, tree) == mu.tree_map(f, tree, tree)
    g = lambda path, x: (path, x)  # noqa: E731
    assert ku.tree_map_with_path(g, tree) == mu.tree_map_with_path(g, tree)
    assert ku.tree_map_with_path(g, tree, path="root") == mu.tree_map_with_path(g, tree, path="root")
    add = lambda acc, x: acc + (x or 0)  # noqa: E731
    assert ku.tree_reduce(add, tree, 0) == mu.tree_reduce(add, tree, 0)


def test_is_leaf_and_flatten_edge_cases():
    tree = {"a": (1, 2), "b": [3]}
    is_tuple = lambda x: isinstance(x, tuple)  # noqa: E731
    assert ku.tree_flatten(tree, is_leaf=is_tuple) == [("a", (1, 2)), ("b.0", 3)]
    assert ku.tree_map(lambda x: len(x) if is_tuple(x) else x, tree, is_leaf=is_tuple) == {"a": 2, "b": [3]}
    assert ku.tree_unflatten([("0", "x"), ("2", "z")]) == ["x", {}, "z"]
    assert ku.tree_unflatten([("a.b.c", 1), ("a.d", 2)]) == {"a": {"b": {"c": 1}, "d": 2}}
    assert ku.tree_reduce(lambda a, b: a * b, [2, [3, 4]]) == 24
    with pytest.raises(ValueError):
        ku.tree_flatten([1], destination="bad")
    # Deep trees do not hit the recursion limit in flatten.
    deep = 0
    for _ in range(5000):
        deep = [deep]
    assert len(ku.tree_flatten(deep)) == 1


@needs_mlx
def test_merge_matches_mlx():
    cases = [({"a": [1, 2]}, {"a": [None, None, 3], "b": 4}), ({"a": 1}, {"b": {"c": 2}}),
             ([1, {}], [{}, {"x": 2}])]
    for a, b in cases:
        assert ku.tree_merge(a, b) == mu.tree_merge(a, b)
    with pytest.raises(ValueError):
        ku.tree_merge({"a": 1}, {"a": 2})
    assert ku.tree_merge({"a": 1}, {"a": 2}, lambda x, y: x + y) == {"a": 3}
