"""fast.scaled_dot_product_attention corner cases as in MLX (rows masked everywhere by a boolean
mask average v instead of giving NaN; sinks' dtype must promote to the output's; sinks' shape),
and ``array == object``: strings, lists and other Python objects compare unequal (so
``mask == "causal"`` is False), None raises TypeError."""
from __future__ import annotations

import numpy as np
import pytest

import kiln.core as mx

try:
    import mlx.core as mlx
except ImportError:
    mlx = None

needs_mlx = pytest.mark.skipif(mlx is None, reason="real MLX not importable")


def _qkv(m, dtype="float32"):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 4)))
    return [m.array(x).astype(getattr(m, dtype)) for x in (q, k, v)]


def _row_mask():
    m = np.ones((3, 5), bool)
    m[1] = False
    return m


SDPA = [
    ("fully_masked_scalar", lambda m: m.fast.scaled_dot_product_attention(
        *_qkv(m), mask=m.array(False), scale=1)),
    ("one_row_masked", lambda m: m.fast.scaled_dot_product_attention(
        *_qkv(m), mask=m.array(_row_mask()), scale=1)),
] + [
    (f"sinks_{qd}_{sd}_{shape}", (lambda qd=qd, sd=sd, shape=shape: lambda m: m.fast.scaled_dot_product_attention(
        *_qkv(m, qd), scale=1, sinks=m.zeros(shape, dtype=getattr(m, sd))))())
    for qd in ("float32", "float16") for sd in ("float32", "float16", "bfloat16", "int32")
    for shape in ((2,), (3,), ())
]


def _outcome(m, fn):
    try:
        r = fn(m)
    except ValueError as e:
        return f"ValueError: {e}"
    return str(r.dtype).split(".")[-1], np.round(np.array(r.astype(m.float32)), 4).tolist()


def test_sdpa_without_mlx():
    got = {name: _outcome(mx, fn) for name, fn in SDPA}
    q, k, v = (np.array(a) for a in _qkv(mx))
    _, vals = got["fully_masked_scalar"]
    np.testing.assert_allclose(vals, np.broadcast_to(v.mean(axis=2, keepdims=True), q.shape), atol=1e-4)
    _, vals = got["one_row_masked"]
    np.testing.assert_allclose(np.array(vals)[:, :, 1], v.mean(axis=2), atol=1e-4)
    assert not np.isnan(np.array(vals)).any()
    assert got["sinks_float16_float32_(2,)"].startswith("ValueError: [scaled_dot_product_attention] Type")
    assert got["sinks_float16_int32_(2,)"][0] == "float16"
    assert got["sinks_float32_float32_(3,)"].startswith("ValueError")


@needs_mlx
@pytest.mark.parametrize("name,fn", SDPA, ids=[s[0] for s in SDPA])
def test_sdpa_matches_mlx(name, fn):
    assert _outcome(mx, fn) == _outcome(mlx, fn)


OTHERS = [("str", "causal"), ("list", [1, 2]), ("dict", {"a": 1}), ("object", object()),
          ("int", 1), ("ndarray", np.array([1, 3]))]


def _compare(m, other):
    a = m.array([1, 2])
    out = []
    for r in (a == other, a != other):
        out.append(r if isinstance(r, bool) else np.array(r).tolist())
    return out


@pytest.mark.parametrize("name,other", OTHERS, ids=[o[0] for o in OTHERS])
def test_equality_with_python_objects(name, other):
    got = _compare(mx, other)
    if name in ("int", "ndarray"):
        assert got == [(np.array([1, 2]) == other).tolist(), (np.array([1, 2]) != other).tolist()]
    else:
        assert got == [False, True]
    if mlx is not None:
        assert got == _compare(mlx, other)


def test_equality_with_none_raises():
    with pytest.raises(TypeError):
        mx.array([1]) == None  # noqa: E711


@pytest.mark.parametrize("dims", [0, -2, 3, 5, 4])
def test_rope_dims_checks(dims):
    def outcome(m):
        x = m.ones((1, 2, 4))
        try:
            return m.fast.rope(x, dims, traditional=False, base=10000.0, scale=1.0, offset=0).shape
        except ValueError as e:
            return str(e)

    got = outcome(mx)
    if dims == 4:
        assert got == (1, 2, 4)
    else:
        assert got.startswith("[rope] dims must be")
    if mlx is not None:
        assert got == outcome(mlx)
