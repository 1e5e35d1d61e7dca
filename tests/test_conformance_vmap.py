"""vmap's in_axes/out_axes trees as MLX reads them: a dict in_axes describes a single positional
argument; a one-entry tuple out_axes fits a single-array output (a list does not)."""
from __future__ import annotations

import numpy as np
import pytest

import kiln.core as mx

try:
    import mlx.core as mlx
except ImportError:
    mlx = None


def _tree(m):
    a = m.array(np.arange(6.0).reshape(2, 3))
    b = m.array(np.arange(6.0, 12.0).reshape(2, 3))
    return a, b, {"a": a, "b": (b, b * 2)}


def _f(tr):
    return tr["a"] + tr["b"][0] * tr["b"][1]


ROWS = [
    ("dict_prefix", lambda m: m.vmap(_f, in_axes={"a": 0, "b": 0})(_tree(m)[2])),
    ("dict_prefix_nested", lambda m: m.vmap(_f, in_axes={"a": 0, "b": (0, 0)})(_tree(m)[2])),
    ("dict_prefix_unbatched", lambda m: m.vmap(_f, in_axes={"a": 0, "b": None})(_tree(m)[2])),
    ("dict_prefix_inconsistent", lambda m: m.vmap(_f, in_axes={"a": 0, "b": (0, 1)})(_tree(m)[2])),
    ("dict_prefix_too_deep", lambda m: m.vmap(_f, in_axes={"a": 0, "b": ((0, 0), 0)})(_tree(m)[2])),
    ("dict_prefix_two_args", lambda m: m.vmap(lambda x, y: x["a"] + y["a"], in_axes={"a": 0})(
        {"a": _tree(m)[0]}, {"a": _tree(m)[1]})),
    ("out_axes_one_tuple", lambda m: m.vmap(lambda x: x * 2, in_axes=(0,), out_axes=(1,))(_tree(m)[0])),
    ("out_axes_one_list", lambda m: m.vmap(lambda x: x * 2, out_axes=[1])(_tree(m)[0])),
    ("out_axes_two_for_one", lambda m: m.vmap(lambda x: x * 2, out_axes=(1, 0))(_tree(m)[0])),
]


def _outcome(m, fn):
    try:
        return np.array(fn(m)).tolist()
    except ValueError:
        return "ValueError"


def test_expectations_without_mlx():
    got = {name: _outcome(mx, fn) for name, fn in ROWS}
    a, b = np.arange(6.0).reshape(2, 3), np.arange(6.0, 12.0).reshape(2, 3)
    want = (a + b * b * 2).tolist()
    assert got["dict_prefix"] == want and got["dict_prefix_nested"] == want
    assert got["out_axes_one_tuple"] == (2 * a).T.tolist()
    for name in ("dict_prefix_inconsistent", "dict_prefix_too_deep", "dict_prefix_two_args",
                 "out_axes_one_list", "out_axes_two_for_one"):
        assert got[name] == "ValueError", name


@pytest.mark.skipif(mlx is None, reason="real MLX not importable")
@pytest.mark.parametrize("name,fn", ROWS, ids=[r[0] for r in ROWS])
def test_matches_mlx(name, fn):
    assert _outcome(mx, fn) == _outcome(mlx, fn)
