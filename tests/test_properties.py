"""Property-based differential tests against NumPy: broadcasting, indexing, reductions, promotion.

Hypothesis draws shapes, indices and axes; each property compares kiln with NumPy on the same
data. A fixed example budget keeps the file to a few seconds.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln.core as mx

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple)


@st.composite
def broadcastable_pair(draw):
    """Two shapes that broadcast: a shape, and one with some axes dropped from the left or set to 1."""
    s = draw(shapes)
    drop = draw(st.integers(0, len(s)))
    t = tuple(1 if draw(st.booleans()) else d for d in s[drop:])
    return (s, t) if draw(st.booleans()) else (t, s)


def data(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


BINARY = [(mx.add, np.add), (mx.multiply, np.multiply), (mx.maximum, np.maximum),
          (mx.subtract, np.subtract), (mx.greater, np.greater)]


@pytest.mark.parametrize("ops", BINARY, ids=[n.__name__ for _, n in BINARY])
@SETTINGS
@given(pair=broadcastable_pair())
def test_broadcasting(ops, pair):
    kop, nop = ops
    a, b = data(pair[0], 1), data(pair[1], 2)
    got = kop(mx.array(a), mx.array(b))
    want = nop(a, b)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.array(got), want, rtol=1e-6)


@st.composite
def basic_index(draw, shape):
    """A tuple of ints and slices (negative steps included), with maybe None and an Ellipsis."""
    idx = []
    for d in shape:
        kind = draw(st.sampled_from(["int", "slice", "slice", "full"]))
        if kind == "int":
            idx.append(draw(st.integers(-d, d - 1)))
        elif kind == "slice":
            start = draw(st.none() | st.integers(-d - 2, d + 2))
            stop = draw(st.none() | st.integers(-d - 2, d + 2))
            step = draw(st.none() | st.sampled_from([1, 2, 3, -1, -2, -3]))
            idx.append(slice(start, stop, step))
        else:
            idx.append(slice(None))
    if idx and draw(st.booleans()):
        idx.insert(draw(st.integers(0, len(idx))), None)
    if draw(st.booleans()):
        k = draw(st.integers(0, len(idx)))
        idx = idx[:k] + [Ellipsis] + idx[k:]
    return tuple(idx)


@SETTINGS
@given(data_=st.data(), shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple))
def test_basic_indexing(data_, shape):
    a = data(shape)
    idx = data_.draw(basic_index(shape))
    try:
        want = a[idx]
    except IndexError:
        return  # an index NumPy refuses; kiln's errors are checked elsewhere
    got = mx.array(a)[idx]
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.array(got), want)


@SETTINGS
@given(data_=st.data(), shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple))
def test_advanced_and_mixed_indexing(data_, shape):
    a = data(shape)
    idx = []
    for d in shape:
        kind = data_.draw(st.sampled_from(["array", "slice", "int"]))
        if kind == "array":
            n = data_.draw(st.integers(1, 4))
            idx.append(np.array(data_.draw(st.lists(st.integers(-d, d - 1), min_size=n, max_size=n))))
        elif kind == "slice":
            idx.append(slice(None, None, data_.draw(st.sampled_from([1, -1, 2, -2]))))
        else:
            idx.append(data_.draw(st.integers(-d, d - 1)))
    arrays = [i for i in idx if isinstance(i, np.ndarray)]
    if len({len(i) for i in arrays}) > 1:  # make the index arrays broadcast: one length
        m = min(len(i) for i in arrays)
        idx = [i[:m] if isinstance(i, np.ndarray) else i for i in idx]
    idx = tuple(idx)
    want = a[idx]
    got = mx.array(a)[tuple(mx.array(i) if isinstance(i, np.ndarray) else i for i in idx)]
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.array(got), want)


@st.composite
def axes_of(draw, ndim):
    if draw(st.booleans()):
        return None
    ax = draw(st.lists(st.integers(-ndim, ndim - 1), min_size=1, max_size=ndim,
                       unique_by=lambda v: v % ndim)) if ndim else []
    return tuple(ax)


REDUCTIONS = [(mx.sum, np.sum), (mx.max, np.max), (mx.min, np.min), (mx.mean, np.mean),
              (mx.prod, np.prod), (mx.all, np.all), (mx.any, np.any)]


@pytest.mark.parametrize("ops", REDUCTIONS, ids=[n.__name__ for _, n in REDUCTIONS])
@SETTINGS
@given(data_=st.data(), shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
       keepdims=st.booleans())
def test_reductions_over_axes(ops, data_, shape, keepdims):
    kop, nop = ops
    axis = data_.draw(axes_of(len(shape)))
    a = data(shape)
    if nop in (np.all, np.any):
        a = a > 0
    got = kop(mx.array(a), axis=axis, keepdims=keepdims)
    want = nop(a, axis=axis, keepdims=keepdims)
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(np.array(got), want, rtol=2e-5, atol=1e-6)


# kiln's promotion is MLX's: NumPy's table, with two rules of MLX's own: a float with an
# integer is that float (NumPy widens int32 + float32 to float64), and a signed integer with
# uint64 is float32 (NumPy: float64).
DTYPES = ["bool_", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
          "float16", "float32"]


def _expected(a: str, b: str) -> np.dtype:
    floats = [d for d in (a, b) if d.startswith("float")]
    if len(floats) == 1 and (a if floats[0] == b else b) != "bool_":
        return np.dtype(floats[0])
    if {a, b} & {"uint64"} and {a, b} & {"int8", "int16", "int32", "int64"}:
        return np.dtype(np.float32)
    return np.result_type(getattr(np, a), getattr(np, b))


@SETTINGS
@given(a=st.sampled_from(DTYPES), b=st.sampled_from(DTYPES))
def test_dtype_promotion(a, b):
    got = (mx.ones(2, getattr(mx, a)) + mx.ones(2, getattr(mx, b))).dtype
    assert got == mx.result_type(getattr(mx, a), getattr(mx, b))
    assert np.dtype(got.np) == _expected(a, b)
