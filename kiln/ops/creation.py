"""Creation ops: full, zeros, ones, the ``*_like`` forms, arange, linspace, eye, tri, tril,
triu, meshgrid: validate, then build leaves (constants made by the backend) or nodes."""
from __future__ import annotations

import math

import numpy as np

from kiln import dtypes as _dt
from kiln.ops.checks import int_tuple
from kiln.backend import get_backend
from kiln.graph.array import _leaf, _make, array
from kiln.ops.normalize import as_array, get_stream
from kiln.ops.shape import broadcast_to, reshape
from kiln.primitives import shape as S
from kiln.ops import elementwise as _ew

__all__ = [
    "arange", "asarray", "empty", "empty_like", "eye", "full", "full_like", "identity", "linspace",
    "meshgrid", "ones", "ones_like", "tri", "tril", "triu", "zeros", "zeros_like",
]


# ================================================================ creation
def _shape_arg(shape, op):
    shape = int_tuple(shape, op)
    for s in shape:
        if s < 0:
            raise ValueError(f"[{op}] Negative dimensions not allowed.")
    return shape


def _backend_xp(stream):
    return get_backend(stream.device.type).xp


def _constant(make, dtype, stream) -> array:
    """A leaf made by ``make(xp)`` on the stream's backend, as ``dtype``."""
    s = get_stream(stream)
    buf = make(_backend_xp(s))
    if buf.dtype != dtype.np:
        buf = buf.astype(dtype.np)
    return _leaf(buf, dtype, s)


def full(shape, vals, dtype=None, *, stream=None) -> array:
    """An array of ``shape`` filled with ``vals`` (which broadcasts to ``shape``).

    Args:
        shape: the output shape.
        vals: a scalar or an array broadcastable to ``shape``.
        dtype: the output dtype (default: that of ``vals``).
        stream: stream or device.
    Returns:
        The filled array.
    """
    shape = _shape_arg(shape, "full")
    if dtype is not None and not isinstance(vals, array):
        # Python values convert straight to ``dtype``, range-checked (no wrap-around).
        vals = as_array(vals, _dt.as_dtype(dtype))
    v = as_array(vals)
    if dtype is not None:
        v = _ew.astype(v, _dt.as_dtype(dtype))
    return broadcast_to(v, shape, stream=stream)


def zeros(shape, dtype=_dt.float32, *, stream=None) -> array:
    """An array of zeros of ``shape`` and ``dtype`` (float32 by default)."""
    shape = _shape_arg(shape, "full")
    dtype = _dt.as_dtype(dtype) if dtype is not None else _dt.float32
    return _constant(lambda xp: xp.zeros(shape, dtype.np), dtype, stream)


def ones(shape, dtype=_dt.float32, *, stream=None) -> array:
    """An array of ones of ``shape`` and ``dtype`` (float32 by default)."""
    shape = _shape_arg(shape, "full")
    dtype = _dt.as_dtype(dtype) if dtype is not None else _dt.float32
    return _constant(lambda xp: xp.ones(shape, dtype.np), dtype, stream)


empty = zeros


def _fill_like(a, value, dtype, stream):
    """``a``'s shape filled with the scalar ``value``: a node on ``a`` while ``a`` is unevaluated
    (so shapeless compile replays it on new shapes), else a constant."""
    dtype = a._dtype if dtype is None else _dt.as_dtype(dtype)
    if a._buf is None and a._prim is not None:
        from kiln.primitives.creation import FullLike

        if isinstance(value, (complex, np.complexfloating)) and dtype.kind != "c":
            return None
        return _make(a._shape, dtype, FullLike(value, dtype), (a,), get_stream(stream))
    return None


def zeros_like(a, /, dtype=None, *, stream=None) -> array:
    """Zeros of ``a``'s shape and of ``dtype`` (default: ``a``'s dtype)."""
    a = as_array(a)
    out = _fill_like(a, 0, dtype, stream)
    return out if out is not None else zeros(a._shape, a._dtype if dtype is None else dtype,
                                             stream=stream)


def ones_like(a, /, dtype=None, *, stream=None) -> array:
    """Ones of ``a``'s shape and of ``dtype`` (default: ``a``'s dtype)."""
    a = as_array(a)
    out = _fill_like(a, 1, dtype, stream)
    return out if out is not None else ones(a._shape, a._dtype if dtype is None else dtype,
                                            stream=stream)


empty_like = zeros_like


def full_like(a, vals, dtype=None, *, stream=None) -> array:
    """An array of ``a``'s shape filled with ``vals``, of ``dtype`` (default ``a``'s)."""
    a = as_array(a)
    if isinstance(vals, (bool, int, float, complex, np.number, np.bool_)):
        out = _fill_like(a, vals, dtype, stream)
        if out is not None:
            return out
    return full(a._shape, vals, a._dtype if dtype is None else dtype, stream=stream)


def asarray(a, dtype=None, *, copy=None) -> array:
    """``a`` as an array (arrays of the right dtype are returned as they are)."""
    if isinstance(a, array) and (dtype is None or a._dtype is _dt.as_dtype(dtype)) and not copy:
        return a
    return array(a, dtype)


def arange(start, stop=None, step=None, dtype=None, *, stream=None) -> array:
    """Evenly spaced values in ``[start, stop)``.

    ``arange(stop)`` starts at 0. The dtype is int32 when every given bound is
    an integer and float32 otherwise, unless ``dtype`` is given.

    Args:
        start: first value (or the stop when ``stop`` is None).
        stop: end, excluded.
        step: spacing (default 1).
        dtype: the output dtype.
        stream: stream or device.
    Returns:
        A 1-D array.
    """
    if stop is None:
        start, stop = 0, start
    if step is None:
        step = 1
    vals = (start, stop, step)
    if dtype is None:
        if any(isinstance(v, float) for v in vals):
            dtype = _dt.float32
        else:  # integers beyond int32 give int64, as MLX infers
            big = any(not -2**31 <= int(v) < 2**31 for v in vals)
            dtype = _dt.int64 if big else _dt.int32
    dtype = _dt.as_dtype(dtype)
    if step == 0:
        raise ValueError("[arange] step must be nonzero.")
    if math.isinf(step) and math.isfinite(stop - start):  # one element (start) when stop lies in step's direction
        n = 1 if (stop - start) * step > 0 else 0
        step = 0
    else:
        length = (stop - start) / step
        if not math.isfinite(length):
            raise ValueError("[arange] Cannot compute length.")
        n = max(0, math.ceil(length))
    if n > 2**31 - 1:
        raise ValueError("[arange] Maximum size exceeded.")
    # Computed in the output type, as MLX does (int dtypes truncate the step).
    # NumPy scalars ([()]), not 0-d arrays: CuPy refuses 0-d NumPy arrays as operands.
    st, sp = np.array(start).astype(dtype.np)[()], np.array(step).astype(dtype.np)[()]

    def make(xp):
        return xp.arange(n).astype(dtype.np) * sp + st

    return _constant(make, dtype, stream)


def linspace(start, stop, num=50, endpoint=True, dtype=_dt.float32, stream=None) -> array:
    """``num`` evenly spaced values from ``start`` to ``stop``.

    Args:
        start: first value.
        stop: last value (included when ``endpoint``).
        num: number of values.
        endpoint: whether ``stop`` is the last value.
        dtype: output dtype (float32 by default; ints truncate).
        stream: stream or device.
    Returns:
        A 1-D array of ``num`` values.
    """
    num = int(num)
    if num < 0:
        raise ValueError(f"[linspace] number of samples, {num}, must be non-negative.")
    dtype = _dt.as_dtype(dtype) if dtype is not None else _dt.float32
    div = (num - 1 if endpoint else num) or 1
    # float64 output is computed in float64 (a Python float keeps its double value).
    wide = np.float64 if dtype is _dt.float64 else np.float32
    step = wide((stop - start) / div)

    def make(xp):
        out = xp.arange(num, dtype=wide) * step + wide(start)
        if endpoint and num > 1:
            out[-1] = stop  # the end point is the one given, not start + (num-1)*step rounded
        return out.astype(dtype.np)

    return _constant(make, dtype, stream)


def eye(n: int, m: int | None = None, k: int = 0, dtype=_dt.float32, *, stream=None) -> array:
    """A 2-D array with ones on diagonal ``k`` and zeros elsewhere."""
    m = n if m is None else m
    if n < 0 or m < 0:
        raise ValueError("[eye] N and M must be positive integers.")
    dtype = _dt.as_dtype(dtype) if dtype is not None else _dt.float32
    return _constant(lambda xp: xp.eye(n, m, k, dtype=dtype.np), dtype, stream)


def identity(n: int, dtype=_dt.float32, *, stream=None) -> array:
    """The ``n`` by ``n`` identity matrix."""
    return eye(n, n, 0, dtype, stream=stream)


def tri(n: int, m: int | None = None, k: int = 0, dtype=None, *, stream=None) -> array:
    """Ones at and below diagonal ``k`` of an ``n`` by ``m`` array, zeros above."""
    m = n if m is None else m
    dtype = _dt.as_dtype(dtype) if dtype is not None else _dt.float32
    return _constant(lambda xp: xp.tri(n, m, k, dtype=dtype.np), dtype, stream)


def _triangle(x, k, upper, op, stream):
    x = as_array(x)
    if x.ndim < 2:
        raise ValueError(f"[{op}] array must be at least 2-D")
    return _make(x._shape, x._dtype, S.Triangle(int(k), upper), (x,), get_stream(stream))


def tril(x, k: int = 0, *, stream=None) -> array:
    """Zero the elements above diagonal ``k`` of the last two axes."""
    return _triangle(x, k, False, "tril", stream)


def triu(x, k: int = 0, *, stream=None) -> array:
    """Zero the elements below diagonal ``k`` of the last two axes."""
    return _triangle(x, k, True, "triu", stream)


def meshgrid(*arrays, sparse: bool = False, indexing: str = "xy", stream=None) -> tuple:
    """Coordinate grids from 1-D coordinate arrays.

    Args:
        arrays: the coordinate arrays (flattened).
        sparse: return broadcastable arrays instead of full grids.
        indexing: ``"xy"`` (Cartesian: the first two axes swapped) or ``"ij"``.
        stream: stream or device.
    Returns:
        A tuple of arrays, one per input.
    """
    if indexing not in ("xy", "ij"):
        raise ValueError("[meshgrid] Invalid indexing value. Valid values are 'xy' and 'ij'.")
    xs = [reshape(as_array(a), (-1,), stream=stream) for a in arrays]
    nd = len(xs)
    sizes = [x.shape[0] for x in xs]
    if indexing == "xy" and nd > 1:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    out = []
    for i, x in enumerate(xs):
        pos = i
        if indexing == "xy" and nd > 1 and i < 2:
            pos = 1 - i
        shape = [1] * nd
        shape[pos] = x.shape[0]
        g = reshape(x, shape, stream=stream)
        out.append(g if sparse else broadcast_to(g, tuple(sizes), stream=stream))
    return tuple(out)
