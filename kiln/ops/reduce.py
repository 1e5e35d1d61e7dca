"""Reductions, scans and sorts (and ``allclose``/``array_equal``): validate, build nodes.

Composite reductions (``mean``, ``var``, ``logsumexp``, ``softmax``, ``median``...) are written
with other ops, so their gradients come free.
"""
from __future__ import annotations

import numpy as np

from kiln import dtypes as _dt
from kiln.graph.array import _make, array
from kiln.ops.elementwise import (_py_max, _st, _equal_nan, add, astype, conj, divide, equal, exp,
                                  isclose, isinf, log, multiply, not_equal, real, sqrt, square,
                                  stop_gradient, subtract, where)
from kiln.ops.normalize import as_array, binary_args, norm_axes, scalar, shape_str
from kiln.ops.shape import reshape, transpose
from kiln.primitives import reduce as R
from kiln.primitives import scan as SC
from kiln.primitives import sort as SO

__all__ = [
    "allclose", "array_equal", "sum", "prod", "mean", "var", "std", "min", "max", "argmin",
    "argmax", "all", "any", "logsumexp", "softmax", "count_nonzero", "median", "cumsum", "cumprod",
    "cummax", "cummin", "logcumsumexp", "sort", "argsort", "partition", "argpartition", "topk",
]


def allclose(a, b, /, rtol: float = 1e-05, atol: float = 1e-08, *, equal_nan: bool = False,
             stream=None) -> array:
    """Whether ``isclose(a, b)`` holds everywhere (a boolean scalar array).

    Args:
        a: first array.
        b: second array.
        rtol: relative tolerance.
        atol: absolute tolerance.
        equal_nan: whether two NaNs count as close.

    Returns:
        A 0-d boolean array.
    """
    return all(isclose(a, b, rtol, atol, equal_nan=equal_nan))


def array_equal(a, b, equal_nan: bool = False, stream=None) -> array:
    """Whether ``a`` and ``b`` have the same shape and equal values (dtypes may differ).

    Args:
        a: first array or scalar.
        b: second array or scalar.
        equal_nan: whether NaNs compare equal.

    Returns:
        A 0-d boolean array.
    """
    a, b, _ = binary_args(a, b, "array_equal")
    if a._shape != b._shape:
        return scalar(False, _dt.bool_)
    return all(_equal_nan(a, b) if equal_nan else equal(a, b))


# ---------------------------------------------------------------- reductions
# Small integer sums accumulate in 32 bits, as MLX.
_SUM_DTYPE = {_dt.bool_: _dt.int32, _dt.int8: _dt.int32, _dt.int16: _dt.int32,
              _dt.uint8: _dt.uint32, _dt.uint16: _dt.uint32}


def _reduce(prim_cls, a, axis, keepdims, stream, name, out_dtype=None):
    axes = norm_axes(axis, a.ndim, name)
    prim = prim_cls(axes, bool(keepdims))
    shape = prim._out_shape(a._shape, axes, keepdims)
    return _make(shape, out_dtype or a._dtype, prim, (a,), _st(a, stream))


def _check_nonempty(a, axes, name):
    for ax in axes:
        if a._shape[ax] == 0:
            raise ValueError(f"[{name}] Cannot {name} reduce over axis {ax} with size 0.")


def sum(a, /, axis=None, keepdims: bool = False, *, stream=None) -> array:
    """Sum over ``axis`` (all axes by default).

    Args:
        a: input array.
        axis: an axis, a sequence of axes, or None for all.
        keepdims: keep reduced axes as size 1.

    Returns:
        The sums (bools and 8/16-bit integers accumulate in 32 bits).
    """
    a = as_array(a)
    acc = _SUM_DTYPE.get(a._dtype)
    if acc is not None:
        a = astype(a, acc)
    return _reduce(R.Sum, a, axis, keepdims, stream, "sum")


def prod(a, /, axis=None, keepdims: bool = False, *, stream=None) -> array:
    """Product over ``axis`` (all axes by default).

    Args:
        a: input array.
        axis: an axis, a sequence of axes, or None for all.
        keepdims: keep reduced axes as size 1.

    Returns:
        The products (bools and 8/16-bit integers accumulate in 32 bits).
    """
    a = as_array(a)
    acc = _SUM_DTYPE.get(a._dtype)
    if acc is not None:
        a = astype(a, acc)
    return _reduce(R.Prod, a, axis, keepdims, stream, "prod")


def max(a, /, axis=None, keepdims: bool = False, *, stream=None) -> array:
    """Maximum over ``axis``; the gradient is shared equally among tied maxima.

    Args:
        a: input array.
        axis: an axis, a sequence of axes, or None for all.
        keepdims: keep reduced axes as size 1.

    Returns:
        The maxima.
    """
    a = as_array(a)
    _check_nonempty(a, norm_axes(axis, a.ndim, "max"), "max")
    return _reduce(R.Max, a, axis, keepdims, stream, "max")


def min(a, /, axis=None, keepdims: bool = False, *, stream=None) -> array:
    """Minimum over ``axis``; the gradient is shared equally among tied minima.

    Args:
        a: input array.
        axis: an axis, a sequence of axes, or None for all.
        keepdims: keep reduced axes as size 1.

    Returns:
        The minima.
    """
    a = as_array(a)
    _check_nonempty(a, norm_axes(axis, a.ndim, "min"), "min")
    return _reduce(R.Min, a, axis, keepdims, stream, "min")


def all(a, /, axis=None, keepdims: bool = False, *, stream=None) -> array:
    """Whether all entries over ``axis`` are nonzero.

    Args:
        a: input array.
        axis: an axis, a sequence of axes, or None for all.
        keepdims: keep reduced axes as size 1.

    Returns:
        A boolean array.
    """
    a = as_array(a)
    return _reduce(R.All, a, axis, keepdims, stream, "all", _dt.bool_)


def any(a, /, axis=None, keepdims: bool = False, *, stream=None) -> array:
    """Whether any entry over ``axis`` is nonzero.

    Args:
        a: input array.
        axis: an axis, a sequence of axes, or None for all.
        keepdims: keep reduced axes as size 1.

    Returns:
        A boolean array.
    """
    a = as_array(a)
    return _reduce(R.Any, a, axis, keepdims, stream, "any", _dt.bool_)


def _arg_reduce(a, axis, keepdims, stream, kind):
    name = "arg" + kind
    a = as_array(a)
    if axis is not None and (not isinstance(axis, (int, np.integer)) or isinstance(axis, bool)):
        raise TypeError(f"{name}(): axis must be an int or None, got {type(axis).__name__}.")
    if a.size == 0:
        raise ValueError(f"[{name}] Cannot {name} reduce zero size array.")
    nd = a.ndim
    src = a
    if axis is None:
        src = a if nd == 1 else _flat(a)
        ax = 0
    else:
        ax = norm_axes(axis, nd, name)[0]
    prim = R.ArgReduce(ax, bool(keepdims) and axis is not None, kind)
    out = _make(prim._out_shape(src._shape), _dt.uint32, prim, (src,), _st(a, stream))
    if axis is None and keepdims:
        out = _reshape(out, (1,) * nd)
    return out


def argmax(a, /, axis=None, keepdims: bool = False, *, stream=None) -> array:
    """Indices (uint32) of the maxima along ``axis`` (of the flattened array if None).

    Args:
        a: input array.
        axis: an axis, or None for the flattened array.
        keepdims: keep the reduced axis as size 1.

    Returns:
        The indices of the first maximum.
    """
    return _arg_reduce(a, axis, keepdims, stream, "max")


def argmin(a, /, axis=None, keepdims: bool = False, *, stream=None) -> array:
    """Indices (uint32) of the minima along ``axis`` (of the flattened array if None).

    Args:
        a: input array.
        axis: an axis, or None for the flattened array.
        keepdims: keep the reduced axis as size 1.

    Returns:
        The indices of the first minimum.
    """
    return _arg_reduce(a, axis, keepdims, stream, "min")


def _float_input(a):
    a = as_array(a)
    return a if a._dtype.kind in "fc" else astype(a, _dt.float32)


def _count(a, axes) -> int:
    n = 1
    for ax in axes:
        n *= a._shape[ax]
    return n


def mean(a, /, axis=None, keepdims: bool = False, *, stream=None) -> array:
    """Mean over ``axis`` (integers give float32).

    Args:
        a: input array.
        axis: an axis, a sequence of axes, or None for all.
        keepdims: keep reduced axes as size 1.

    Returns:
        The means (NaN over empty axes).
    """
    a = _float_input(a)
    axes = norm_axes(axis, a.ndim, "mean")
    n = _count(a, axes)
    s = sum(a, axes, keepdims, stream=stream)
    return divide(s, n) if n != 1 else s


def var(a, /, axis=None, keepdims: bool = False, ddof: int = 0, *, stream=None) -> array:
    """Variance over ``axis`` with ``ddof`` delta degrees of freedom.

    Args:
        a: input array.
        axis: an axis, a sequence of axes, or None for all.
        keepdims: keep reduced axes as size 1.
        ddof: the divisor is ``N - ddof``.

    Returns:
        The variances (float32 for integer and complex64 inputs).
    """
    a = _float_input(a)
    axes = norm_axes(axis, a.ndim, "var")
    n = _count(a, axes)
    d = subtract(a, mean(a, axes, True))
    sq = real(multiply(d, conj(d))) if a._dtype.kind == "c" else square(d)
    s = sum(sq, axes, keepdims, stream=stream)
    return divide(s, float(_py_max(n - ddof, 0)))


def std(a, /, axis=None, keepdims: bool = False, ddof: int = 0, *, stream=None) -> array:
    """Standard deviation over ``axis`` with ``ddof`` delta degrees of freedom.

    Args:
        a: input array.
        axis: an axis, a sequence of axes, or None for all.
        keepdims: keep reduced axes as size 1.
        ddof: the divisor is ``N - ddof``.

    Returns:
        The standard deviations.
    """
    return sqrt(var(a, axis, keepdims, ddof, stream=stream))


def logsumexp(a, /, axis=None, keepdims: bool = False, *, stream=None) -> array:
    """``log(sum(exp(a), axis))`` computed without overflow.

    The gradient is ``softmax(a)``; it is exact to any order because the
    stabilising shift is a constant (``stop_gradient``) that cancels.

    Args:
        a: input array.
        axis: an axis, a sequence of axes, or None for all.
        keepdims: keep reduced axes as size 1.

    Returns:
        The log-sum-exp values.
    """
    a = _float_input(a)
    if a.size == 0:
        raise ValueError("[logsumexp] Received empty array.")
    axes = norm_axes(axis, a.ndim, "logsumexp")
    m = stop_gradient(max(a, axes, True))
    m = where(isinf(m), 0, m)  # all -inf (or +inf) rows: shift by 0, the result is right
    out = add(log(sum(exp(subtract(a, m)), axes, True)), m)
    if not keepdims:
        out = _reshape(out, R.Sum(axes, False)._out_shape(a._shape, axes, False))
    return out


def softmax(a, /, axis=None, *, precise: bool = False, stream=None) -> array:
    """``exp(a) / sum(exp(a), axis)``, shifted by the maximum for stability.

    Args:
        a: input array.
        axis: an axis, a sequence of axes, or None for all.
        precise: compute half-precision inputs in float32.

    Returns:
        The softmax, of the input's (float) dtype.
    """
    a = _float_input(a)
    dt = a._dtype
    if a.size == 0:
        return a
    axes = norm_axes(axis, a.ndim, "softmax")
    if precise and dt in (_dt.float16, _dt.bfloat16):
        a = astype(a, _dt.float32)
    e = exp(subtract(a, stop_gradient(max(a, axes, True))))
    out = divide(e, sum(e, axes, True))
    return astype(out, dt)


def count_nonzero(a, /, *, axis=None, keepdims: bool = False, stream=None) -> array:
    """Number (int32) of nonzero entries over ``axis``.

    Args:
        a: input array.
        axis: an axis, a sequence of axes, or None for all.
        keepdims: keep reduced axes as size 1.

    Returns:
        The counts.
    """
    a = as_array(a)
    return sum(not_equal(a, 0), axis, keepdims, stream=stream)


def median(a, /, axis=None, keepdims: bool = False, *, stream=None) -> array:
    """Median over ``axis`` (the mean of the two middle values for even counts).

    Args:
        a: input array.
        axis: an axis, a sequence of axes, or None for all.
        keepdims: keep reduced axes as size 1.

    Returns:
        The medians (integers give float32).
    """
    a = _float_input(a)
    axes = norm_axes(axis, a.ndim, "median")
    n = _count(a, axes)
    if n == 0:
        raise ValueError("[median] Cannot take median along empty axis.")
    rest = [i for i in range(a.ndim) if i not in axes]
    t = transpose(a, rest + list(axes))
    lead = tuple(a._shape[i] for i in rest)
    flat = sort(_reshape(t, lead + (n,)), -1)
    ax = len(lead)
    lo = SO.take_along(flat, _const_index(lead + (1,), (n - 1) // 2), ax)
    hi = SO.take_along(flat, _const_index(lead + (1,), n // 2), ax)
    out = multiply(add(lo, hi), 0.5)
    shape = R.Sum(axes, False)._out_shape(a._shape, axes, keepdims)
    return _reshape(out, shape)


def _const_index(shape, k):
    return array(np.full(shape, k, dtype=np.uint32))


def _reshape(a, shape):
    return reshape(a, shape)


def _flat(a):
    return _reshape(a, (a.size,))


# ---------------------------------------------------------------- scans
def _scan_axis(a, axis, name):
    """``(array, axis)``: None flattens; out-of-range axes raise IndexError as MLX."""
    if axis is None:
        return (a if a.ndim == 1 else _flat(a)), 0
    nd = a.ndim
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"[{name}] axis must be an int or None.")
    if axis < -nd or axis >= nd:
        raise IndexError(f"[{name}] Axis {axis} is out of bounds for array with {nd} dimensions.")
    return a, int(axis) % nd


def _scan(prim_cls, a, axis, reverse, inclusive, stream, name):
    a, ax = _scan_axis(a, axis, name)
    prim = prim_cls(ax, bool(reverse), bool(inclusive))
    return _make(a._shape, a._dtype, prim, (a,), _st(a, stream))


def cumsum(a, /, axis=None, *, reverse: bool = False, inclusive: bool = True, dtype=None,
           stream=None) -> array:
    """Cumulative sum along ``axis`` (of the flattened array if None).

    Args:
        a: input array.
        axis: the axis, or None.
        reverse: scan from the end.
        inclusive: include each element in its own sum (else the scan is shifted by one).
        dtype: cast the input to this dtype first (bools default to int32).

    Returns:
        The running sums.
    """
    a = as_array(a)
    if dtype is not None:
        a = astype(a, dtype)
    elif a._dtype is _dt.bool_:
        a = astype(a, _dt.int32)
    return _scan(SC.CumSum, a, axis, reverse, inclusive, stream, "cumsum")


def cumprod(a, /, axis=None, *, reverse: bool = False, inclusive: bool = True, dtype=None,
            stream=None) -> array:
    """Cumulative product along ``axis``; exact gradients even with zeros.

    Args:
        a: input array.
        axis: the axis, or None.
        reverse: scan from the end.
        inclusive: include each element in its own product.
        dtype: cast the input to this dtype first.

    Returns:
        The running products.
    """
    a = as_array(a)
    if dtype is not None:
        a = astype(a, dtype)
    return _scan(SC.CumProd, a, axis, reverse, inclusive, stream, "cumprod")


def cummax(a, /, axis=None, *, reverse: bool = False, inclusive: bool = True, stream=None) -> array:
    """Running maximum along ``axis``; the gradient goes to the element that set it.

    Args:
        a: input array.
        axis: the axis, or None.
        reverse: scan from the end.
        inclusive: include each element (else the first output is the dtype's lowest value).

    Returns:
        The running maxima.
    """
    return _scan(SC.CumMax, as_array(a), axis, reverse, inclusive, stream, "cummax")


def cummin(a, /, axis=None, *, reverse: bool = False, inclusive: bool = True, stream=None) -> array:
    """Running minimum along ``axis``; the gradient goes to the element that set it.

    Args:
        a: input array.
        axis: the axis, or None.
        reverse: scan from the end.
        inclusive: include each element (else the first output is the dtype's highest value).

    Returns:
        The running minima.
    """
    return _scan(SC.CumMin, as_array(a), axis, reverse, inclusive, stream, "cummin")


def logcumsumexp(a, /, axis=None, *, reverse: bool = False, inclusive: bool = True,
                 stream=None) -> array:
    """Running ``log(sum(exp(a)))`` along ``axis``, computed stably.

    Args:
        a: input array.
        axis: the axis, or None.
        reverse: scan from the end.
        inclusive: include each element (else the first output is -inf).

    Returns:
        The running log-sum-exp values.
    """
    return _scan(SC.LogCumSumExp, _float_input(a), axis, reverse, inclusive, stream, "logcumsumexp")


# ---------------------------------------------------------------- sorting
def _sort_axis(a, axis, name):
    if axis is None:
        return _flat(a), 0
    nd = a.ndim
    if axis < -nd or axis >= nd:
        raise IndexError(f"[{name}] Axis {axis} is out of bounds for array with {nd} dimensions.")
    return a, int(axis) % nd


def sort(a, /, axis=-1, *, stream=None) -> array:
    """Values sorted along ``axis`` (flattened if None); NaNs last.

    Gradients are routed back through the sorting permutation.

    Args:
        a: input array.
        axis: the axis, or None.

    Returns:
        The sorted array.
    """
    a, ax = _sort_axis(as_array(a), axis, "sort")
    return _make(a._shape, a._dtype, SO.Sort(ax), (a,), _st(a, stream))


def argsort(a, /, axis=-1, *, stream=None) -> array:
    """Indices (uint32) that sort ``a`` along ``axis`` (stable).

    Args:
        a: input array.
        axis: the axis, or None.

    Returns:
        The sorting indices.
    """
    a, ax = _sort_axis(as_array(a), axis, "argsort")
    return _make(a._shape, _dt.uint32, SO.ArgSort(ax), (a,), _st(a, stream))


def _kth(a, kth, ax, axis, name):
    n = a._shape[ax]
    if not isinstance(kth, (int, np.integer)) or kth < -n or kth >= n:
        raise ValueError(f"[{name}] Received invalid kth {kth} along axis {axis} for array with "
                         f"shape: {shape_str(a._shape)}")
    return int(kth) % n


def partition(a, /, kth: int, axis=-1, *, stream=None) -> array:
    """``a`` reordered so the ``kth`` entry along ``axis`` is where sorting would put it,
    with no larger entries before it and no smaller ones after.

    Args:
        a: input array.
        kth: the pivot position (negative counts from the end).
        axis: the axis, or None.

    Returns:
        The partitioned array.
    """
    a, ax = _sort_axis(as_array(a), axis, "partition")
    k = _kth(a, kth, ax, axis, "partition")
    return _make(a._shape, a._dtype, SO.Partition(k, ax), (a,), _st(a, stream))


def argpartition(a, /, kth: int, axis=-1, *, stream=None) -> array:
    """Indices (uint32) that partition ``a`` around its ``kth`` entry along ``axis``.

    Args:
        a: input array.
        kth: the pivot position (negative counts from the end).
        axis: the axis, or None.

    Returns:
        The partitioning indices.
    """
    a, ax = _sort_axis(as_array(a), axis, "argpartition")
    k = _kth(a, kth, ax, axis, "argpartition")
    return _make(a._shape, _dt.uint32, SO.ArgPartition(k, ax), (a,), _st(a, stream))


def topk(a, /, k: int, axis=-1, *, stream=None) -> array:
    """The ``k`` largest values along ``axis`` (flattened if None), in no particular order.

    Args:
        a: input array.
        k: how many values.
        axis: the axis, or None.

    Returns:
        An array with ``k`` entries along ``axis``.
    """
    a, ax = _sort_axis(as_array(a), axis, "topk")
    n = a._shape[ax]
    if not isinstance(k, (int, np.integer)) or k < 0 or k > n:
        raise ValueError(f"[topk] Received invalid k={k} along axis {axis} for array with shape: "
                         f"{shape_str(a._shape)}")
    prim = SO.TopK(int(k), ax)
    shape = tuple(int(k) if d == ax else s for d, s in enumerate(a._shape))
    return _make(shape, a._dtype, prim, (a,), _st(a, stream))
