"""Behaviours matched to the real MLX 0.32.4 (issue 14, part A): operands, printing, creation, random.

Each table drives one check; where MLX is installed the same call runs on it and the outcome
(value, dtype, or the exception type) must agree. NumPy checks run without MLX.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import kiln.core as mx

try:
    import mlx.core as rmx
except ImportError:  # the NumPy checks still run
    rmx = None

needs_mlx = pytest.mark.skipif(rmx is None, reason="the real MLX is not installed")


def outcome(f, m):
    """What ``f(m)`` gives on namespace ``m``: (list, dtype name) or the exception type's name."""
    try:
        r = f(m)
    except Exception as e:  # noqa: BLE001 - the type is the outcome compared
        return type(e).__name__
    if hasattr(r, "dtype") and hasattr(r, "tolist") and not isinstance(r, np.ndarray):
        return (r.tolist(), str(r.dtype).rsplit(".", 1)[-1])
    if isinstance(r, np.ndarray):
        return ("ndarray", r.tolist())
    return r


# ---------------------------------------------------------------- operators and Python objects
OPERAND_CASES = [
    lambda m: m.array([1, 2]) == [1, 2],
    lambda m: m.array([1, 2]) == (1, 2),
    lambda m: m.array([1, 2]) == "x",
    lambda m: m.array([1, 2]) != [1, 2],
    lambda m: m.array([1, 2]) != object(),
    lambda m: [1, 2] == m.array([1, 2]),
    lambda m: m.array([1, 2]) + "x",
    lambda m: m.array([1, 2]) + [1, 2],
    lambda m: m.array([1, 2]) * (1, 2),
    lambda m: m.array([1, 2]) < "x",
    lambda m: m.array([1, 2]) >= "x",
    lambda m: m.array([1, 2]) & "x",
    lambda m: m.array([1, 2]) ** "x",
    lambda m: m.array([1, 2]) // "x",
    lambda m: m.array([1, 2]) % "x",
    lambda m: "x" + m.array([1, 2]),
    lambda m: m.array([1, 2]) == None,  # noqa: E711 - the comparison is the case
    lambda m: m.array([1, 2]) + None,
    lambda m: m.array([1, 2]) == 1,
    lambda m: m.array([1, 2]) == np.array([1, 2]),
    lambda m: m.array([1, 2]) + 1j,
    lambda m: np.array([1.0, 2.0]) + m.array([1.0, 2.0]),
    lambda m: np.array([1, 2]) == m.array([1, 2]),
    lambda m: np.float32(2) * m.array([1.0, 2.0]),
]


def _inplace_div(m):
    a = m.array([1, 2])
    a /= 2
    return a


def _inplace_div_float(m):
    a = m.array([1.0, 2.0])
    a /= 2
    return a


def _inplace_widen(m):
    a = m.array([1, 2])
    a += 1.5
    return a


OPERAND_CASES += [_inplace_div, _inplace_div_float, _inplace_widen]


@needs_mlx
@pytest.mark.parametrize("case", range(len(OPERAND_CASES)))
def test_operands_match_mlx(case):
    f = OPERAND_CASES[case]
    assert outcome(f, mx) == outcome(f, rmx)


def test_operands_numpy():
    a = mx.array([1, 2, 3])
    # ndarray on the left converts the kiln array: NumPy's own result, usable by np.all.
    r = np.arange(3) + 1 == a
    assert isinstance(r, np.ndarray) and r.all()
    assert np.all(np.array(a).sum() == a.sum())
    with pytest.raises(ValueError, match="addition"):
        a + "x"
    assert (a == [1, 2, 3]) is False


# ---------------------------------------------------------------- printing and the namespace
def test_printoptions_and_summary():
    x = mx.array([1.123456789], dtype=mx.float32)
    assert str(x) == "array([1.12346], dtype=float32)"
    for p in (0, 2, 4):
        with mx.printoptions(precision=p):
            assert str(x) == f"array([{1.123456789:.{p}f}], dtype=float32)"
            assert mx.get_printoptions().precision == p
    assert mx.get_printoptions().precision == -1
    mx.set_printoptions(precision=3)
    try:
        assert str(mx.sin(x)) == f"array([{math.sin(np.float32(1.123456789)):.3f}], dtype=float32)"
    finally:
        mx.set_printoptions(precision=-1)
    with pytest.raises(TypeError):
        mx.set_printoptions(precision="2")
    assert str(mx.ones(6, mx.int32)) == "array([" + ", ".join(["1"] * 6) + "], dtype=int32)"
    assert str(mx.ones(7, mx.int32)) == "array([1, 1, 1, ..., 1, 1, 1], dtype=int32)"


@needs_mlx
@pytest.mark.parametrize("shape", [(6,), (7,), (7, 2), (2, 7), (3, 8, 2), (1001,)])
def test_repr_matches_mlx(shape):
    n = int(np.prod(shape))
    assert repr(mx.arange(n).reshape(shape)) == repr(rmx.arange(n).reshape(shape))


@needs_mlx
@pytest.mark.parametrize("precision", [-1, 0, 2, 5])
def test_repr_precision_matches_mlx(precision):
    vals = [1.123456789, -100.5, 1e-7, 0.0, 12345.678]
    with mx.printoptions(precision=precision), rmx.printoptions(precision=precision):
        assert repr(mx.array(vals)) == repr(rmx.array(vals))


def test_namespace_and_version():
    xp = mx.array(1.0).__array_namespace__()
    assert xp is mx
    for name in ("array", "asarray", "add", "result_type", "can_cast", "isdtype", "vecdot"):
        assert callable(getattr(xp, name))
    parts = mx.__version__.split(".")
    assert len(parts) >= 3 and all(p.isdigit() for p in parts[:3])


# ---------------------------------------------------------------- creation
ARANGE_CASES = [
    (0, 3, 0.2, "int32"), (-1, -4, -0.9, "int32"), (-1, -20, -1.2, "int32"),
    (0, 10, math.inf, None), (0.0, 10.0, math.inf, None), (0, -10, math.inf, None),
    (0, 2**32, 2**30, None), (2**40, 2**40 + 3, 1, None), (0, 5, 1.5, "int32"),
    (0, 10, 3, "float32"), (0, 0.5, 0.1, "int32"), (5, 0, -1, None),
    (math.nan, 1, 5, None), (0, math.nan, 5, None), (0, 2, math.nan, None),
    (0, math.inf, math.inf, None), (math.inf, 1, 5, None), (0, 2**31, 1, None),
]


@needs_mlx
@pytest.mark.parametrize("start,stop,step,dtype", ARANGE_CASES)
def test_arange_matches_mlx(start, stop, step, dtype):
    def f(m):
        return m.arange(start, stop, step, dtype=getattr(m, dtype) if dtype else None)

    assert outcome(f, mx) == outcome(f, rmx)


@pytest.mark.parametrize("start,stop,num,endpoint", [
    (0, 1, 50, True), (-2.7, -0.7, 7, True), (0.1, 0.9, 10, True), (0, 1, 10, False),
    (1, 10, 1, True), (0.3, -1.7, 9, True), (0, math.pi, 2, True), (0, math.pi, 4, False)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linspace_numpy(start, stop, num, endpoint, dtype):
    got = mx.linspace(start, stop, num, endpoint=endpoint, dtype=getattr(mx, dtype))
    want = np.linspace(start, stop, num, endpoint=endpoint)
    assert got.dtype == getattr(mx, dtype)
    np.testing.assert_allclose(np.array(got), want, rtol=1e-6 if dtype == "float32" else 1e-15)
    if endpoint and num > 1:  # the end points are the given ones, exactly
        assert got.tolist()[-1] == np.array(stop, getattr(np, dtype)).item()
    if num:
        assert got.tolist()[0] == np.array(start, getattr(np, dtype)).item()


# ---------------------------------------------------------------- random
RANDOM_CASES = [
    lambda m: m.random.uniform(dtype=None).dtype == m.float32,
    lambda m: m.random.normal(dtype=None).dtype == m.float32,
    lambda m: m.random.gumbel(dtype=None).dtype == m.float32,
    lambda m: m.random.laplace(dtype=None).dtype == m.float32,
    lambda m: m.random.truncated_normal(0, 1, dtype=None).dtype == m.float32,
    lambda m: m.random.randint(0, 1, dtype=None).dtype == m.int32,
    lambda m: m.random.truncated_normal(2.0, 1.0, shape=(4,)),
    lambda m: m.random.bernoulli(1),
    lambda m: m.random.bernoulli(m.array([1, 0])),
    lambda m: m.random.bernoulli(1.0, (3,)),
    lambda m: m.random.bernoulli(m.array([1.0, 0.0])),
]


@needs_mlx
@pytest.mark.parametrize("case", range(len(RANDOM_CASES)))
def test_random_matches_mlx(case):
    f = RANDOM_CASES[case]
    assert outcome(f, mx) == outcome(f, rmx)


# ---------------------------------------------------------------- trees
MERGE_CASES = [({}, []), ([], {}), ([], ()), ({}, 1), ([], 1),
               ({"a": []}, {"a": {}}), ({"a": 1}, {}), ([1], {}), ((), [1]), ({}, {}),
               ([{"a": 1}, {}], [{"b": 2}, {}]), ({"a": 1, "b": {}, "c": {}}, {"a": {}, "b": {}, "c": 2}),
               ({"a": ()}, {"a": ()}), ([1, 2], [None]), ({"a": 1}, {"a": 2})]


@needs_mlx
@pytest.mark.parametrize("a,b", MERGE_CASES)
def test_tree_merge_matches_mlx(a, b):
    import kiln.utils as ku
    import mlx.utils as ru

    assert outcome(lambda u: u.tree_merge(a, b), ku) == outcome(lambda u: u.tree_merge(a, b), ru)


@needs_mlx
@pytest.mark.parametrize("pairs", [[("01", "a"), ("1", "b"), ("2", "c")], [("0", "a"), ("1", "b")],
                                   [("1", "b"), ("0", "a")], [("00", "a")], [("a.0", 1), ("a.00", 2)]])
def test_tree_unflatten_matches_mlx(pairs):
    import kiln.utils as ku
    import mlx.utils as ru

    assert ku.tree_unflatten(pairs) == ru.tree_unflatten(pairs)


def test_tree_merge_keeps_tuple_kinds():
    from collections import namedtuple

    import kiln.utils as ku

    P = namedtuple("P", "m b")

    class V(tuple):
        pass

    for t in (P(1, 2), V([1, 2])):
        out = ku.tree_merge(t, t, lambda x, y: x + y)
        assert type(out) is type(t) and tuple(out) == (2, 4)


# ---------------------------------------------------------------- argument checks and op corners
# Each case runs on kiln and on MLX; the outcome (values and dtype, or the exception type) agrees.
CORNER_CASES = {
    "addmm_bad_c": lambda m: m.addmm(m.ones((3, 3)), m.ones((2, 2)), m.ones((2, 2))),
    "einsum_two_ellipses": lambda m: m.einsum("...i...->i", m.ones((2, 2))),
    "irfftn_0d": lambda m: m.fft.irfftn(m.array(1.0)),
    "fftn_0d": lambda m: m.fft.fftn(m.array(1.0)),
    "fftn_no_axes": lambda m: m.fft.fftn(m.ones(2), axes=[]),
    "as_strided_negative": lambda m: m.as_strided(m.ones(4), (-1,), (1,)),
    "kron_empty": lambda m: m.kron(m.array([]), m.ones(2)),
    "take_empty": lambda m: m.take(m.array([]), m.array([0])),
    "take_empty_axis": lambda m: m.take(m.zeros((0, 2)), m.array([0]), axis=0),
    "take_empty_from_empty": lambda m: m.take(m.zeros((0, 2)), m.zeros((0,), m.int32), axis=0),
    "pad_reflect_empty": lambda m: m.pad(m.array([]), 1, mode="reflect"),
    "pad_symmetric_empty": lambda m: m.pad(m.array([]), 1, mode="symmetric"),
    "pad_edge_empty": lambda m: m.pad(m.array([]), 1, mode="edge"),
    "hadamard_empty": lambda m: m.hadamard_transform(m.array([])),
    "topk_float_k": lambda m: m.topk(m.ones(4), 2.0),
    "topk_numpy_int_k": lambda m: m.topk(m.arange(4), np.int64(2)).shape,
    "format_vector": lambda m: f"{m.ones(2):.2f}",
    "format_scalar": lambda m: f"{m.array(1.5):.2f}",
    "format_plain": lambda m: f"{m.ones(2)}",
    "finfo_complex_eps": lambda m: m.finfo(m.complex64).eps,
    "finfo_complex_dtype": lambda m: m.finfo(m.complex64).dtype == m.float32,
    "isneginf_bf16": lambda m: m.isneginf(m.array([1.0, -np.inf, np.inf, np.nan], m.bfloat16)),
    "isposinf_bf16": lambda m: m.isposinf(m.array([1.0, -np.inf, np.inf, np.nan], m.bfloat16)),
    "isposinf_int": lambda m: m.isposinf(m.array([1, 2])),
    "nan_to_num_bf16": lambda m: m.nan_to_num(m.array([np.nan, np.inf, -np.inf, 2.0], m.bfloat16)),
    "nan_to_num_bf16_args": lambda m: m.nan_to_num(m.array([np.nan, np.inf, -np.inf], m.bfloat16),
                                                    nan=1.0, posinf=2.0, neginf=-3.0),
    "array_equal_bf16_nan": lambda m: m.array_equal(m.array([np.nan, 1], m.bfloat16),
                                                    m.array([np.nan, 1], m.bfloat16), equal_nan=True),
    "median_nan_f16": lambda m: m.median(m.array([1.0, np.nan, 0.0], m.float16)),
    "median_nan_rows": lambda m: m.median(m.array([[1.0, np.nan, 0.0], [1, 2, 3]]), axis=1),
    "median_nan_cols": lambda m: m.median(m.array([[1.0, np.nan, 0.0], [1, 2, 3]]), axis=0),
    "sigmoid_f16": lambda m: m.sigmoid(m.array([10.0, -20, 8, 0.5, -7.25], m.float16)),
    "sigmoid_bf16": lambda m: m.sigmoid(m.array([10.0, -20, 8, 0.5, -7.25], m.bfloat16)),
    "logaddexp_complex": lambda m: m.logaddexp(m.array([1 + 1j, -2 + 0.5j]), m.array([2 + 0j, 3 - 1j])),
    "logcumsumexp_complex": lambda m: m.logcumsumexp(m.array([1 + 1j, 2 + 0j, -1 + 3j])),
    "logcumsumexp_complex_rev": lambda m: m.logcumsumexp(m.array([[1 + 1j, 2 + 0j], [0j, 1j]]),
                                                         axis=0, reverse=True),
    "addmm_complex": lambda m: m.addmm(m.array([[1 + 1j]]), m.array([[1 + 0j]]), m.array([[2j]])),
    "addmm_mixed_complex": lambda m: m.addmm(m.array([[1.0]]), m.array([[1 + 0j]]), m.array([[2.0]])),
}


def _rounded(r):
    if isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], float):
        r = ([r[0]], r[1])
    if isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], list):
        flat = np.asarray(r[0], dtype=complex if "complex" in r[1] else float).ravel()
        return ([repr(v) for v in np.round(flat, 4).tolist()], r[1])  # repr: NaN equals NaN
    return r


@needs_mlx
@pytest.mark.parametrize("name", list(CORNER_CASES))
def test_corners_match_mlx(name):
    f = CORNER_CASES[name]
    assert _rounded(outcome(f, mx)) == _rounded(outcome(f, rmx))


def test_corners_numpy():
    x = np.array([[1 + 1j, 2 + 0j], [-1 + 3j, 0.5j]], np.complex64)
    want = np.log(np.exp(x[0].astype(np.complex128)) + np.exp(x[1].astype(np.complex128)))
    got = np.array(mx.logaddexp(mx.array(x[0]), mx.array(x[1])))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    got = np.array(mx.logcumsumexp(mx.array(x), axis=0))
    np.testing.assert_allclose(got[1], want, rtol=1e-5)
    v = np.array([[3.0, np.nan, 1.0], [4.0, 1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(np.array(mx.median(mx.array(v), axis=1)), np.median(v, axis=1))
    h = np.array([-20, -3, 0.5, 8, 10], np.float16)
    np.testing.assert_array_equal(np.array(mx.sigmoid(mx.array(h))),
                                  (1 / (1 + np.exp(-h.astype(np.float64)))).astype(np.float16))


# ---------------------------------------------------------------- unique, minmax, buffers, iteration
UNIQUE_CASES = [
    ([3, 1, 3, 2, 1], 5, None), ([3, 1, 3, 2, 1], 2, -1), ([3, 1, 3, 2, 1], 3, None),
    ([[2.0, 1.0], [2.0, 7.5]], 6, 0.0), ([1.0, float("nan"), float("nan")], 4, None),
    ([5], 1, None), ([True, False, True], 3, None), ([4, 4, 4], 0, None),
]


@needs_mlx
@pytest.mark.parametrize("vals,size,fill", UNIQUE_CASES)
def test_unique_matches_mlx(vals, size, fill):
    def f(m):
        kw = {} if fill is None else {"fill_value": fill}
        outs = m.unique(m.array(vals), size, True, True, True, stream=m.cpu, **kw)
        return [repr(o.tolist()) + str(o.dtype).rsplit(".", 1)[-1] for o in outs]

    assert outcome(f, mx) == outcome(f, rmx)


@pytest.mark.parametrize("vals", [[3, 1, 3, 2, 1], [[2.0, 1.0], [2.0, 7.5]], list(range(7, 0, -1))])
def test_unique_numpy(vals):
    a = np.array(vals)
    want_v, want_i, want_inv, want_c = np.unique(a, return_index=True, return_inverse=True,
                                                 return_counts=True)
    n = len(want_v)
    v, i, inv, c = mx.unique(mx.array(vals), n, return_index=True, return_inverse=True,
                             return_counts=True)
    for got, want in ((v, want_v), (i, want_i), (inv, want_inv.reshape(a.shape)), (c, want_c)):
        np.testing.assert_array_equal(np.array(got), want)
    assert mx.unique(mx.array(vals), n).tolist() == want_v.tolist()


@pytest.mark.parametrize("axis", [None, 0, 1, (0, 1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_minmax_numpy(axis, keepdims):
    a = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    lo, hi = mx.minmax(mx.array(a), axis=axis, keepdims=keepdims)
    np.testing.assert_array_equal(np.array(lo), a.min(axis=axis, keepdims=keepdims))
    np.testing.assert_array_equal(np.array(hi), a.max(axis=axis, keepdims=keepdims))


def test_buffer_size_and_iterator():
    x, y = mx.array(np.ones(3, np.float32)), mx.array(np.ones(100, np.float32))
    with pytest.raises(ValueError, match="get_array_buffer_size"):
        mx.get_array_buffer_size(x + 1)  # not evaluated yet
    mx.eval(x, y)
    assert mx.get_array_buffer_size(x, [x, {"a": x}], 3) == 12  # one buffer, counted once
    assert mx.get_array_buffer_size(x, y) == 412
    if rmx is not None:
        rx = rmx.ones(3)
        rmx.eval(rx)
        assert rmx.get_array_buffer_size(rx, [rx], 3) == mx.get_array_buffer_size(x, [x], 3)
    it = iter(mx.arange(6).reshape(3, 2))
    assert isinstance(it, mx.ArrayIterator) and iter(it) is it
    assert [r.tolist() for r in it] == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(TypeError):
        iter(mx.array(1))
