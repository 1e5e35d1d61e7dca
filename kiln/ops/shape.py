"""Creation and shape ops: arange/eye/full..., reshape, transpose, concatenate,
split, pad, diagonal, as_strided, view, and dtype helpers (``result_type``).

Ops validate their arguments with MLX's errors and build nodes of the
primitives in ``primitives/shape.py``; many ops (tile, roll, diag, ...) are
compositions of those few primitives, so their rules come for free.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from kiln import dtypes as _dt
from kiln.ops.normalize import as_array, get_stream, norm_axis, shape_str
from kiln.graph.array import _leaf, _make, array
from kiln.primitives import shape as S
from kiln.primitives.indexing import slice_axis as _slice_axis_node
from kiln.primitives.base import broadcast_shapes as _broadcast_shapes

__all__ = [
    "arange",
    "as_strided",
    "asarray",
    "atleast_1d",
    "atleast_2d",
    "atleast_3d",
    "broadcast_arrays",
    "broadcast_shapes",
    "broadcast_to",
    "can_cast",
    "concat",
    "concatenate",
    "contiguous",
    "diag",
    "diagonal",
    "empty",
    "empty_like",
    "expand_dims",
    "eye",
    "flatten",
    "flip",
    "full",
    "full_like",
    "identity",
    "isdtype",
    "linspace",
    "matrix_transpose",
    "meshgrid",
    "moveaxis",
    "ones",
    "ones_like",
    "pad",
    "permute_dims",
    "repeat",
    # shape
    "reshape",
    # dtypes
    "result_type",
    "roll",
    "split",
    "squeeze",
    "stack",
    "swapaxes",
    "tile",
    "trace",
    "transpose",
    "tri",
    "tril",
    "triu",
    "unflatten",
    "unstack",
    "view",
    # creation
    "zeros",
    "zeros_like",
]


def _oob(op: str, axis, ndim: int):
    return IndexError(f"[{op}] Axis {axis} is out of bounds for array with {ndim} dimensions.")


def _axis(axis, ndim: int, op: str) -> int:
    """A non-negative axis; IndexError in MLX's "out of bounds" wording."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"[{op}] Axis must be an integer, got {type(axis).__name__}.")
    if axis < -ndim or axis >= ndim:
        raise _oob(op, axis, ndim)
    return int(axis) % ndim


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# ================================================================ creation
def _shape_arg(shape, op):
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    shape = tuple(int(s) for s in shape)
    for s in shape:
        if s < 0:
            raise ValueError(f"[{op}] Negative dimensions not allowed.")
    return shape


def _backend_xp(stream):
    from kiln.backend import get_backend

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
    v = as_array(vals)
    if dtype is not None:
        from kiln.ops.elementwise import astype

        v = astype(v, _dt.as_dtype(dtype))
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


def zeros_like(a, /, dtype=None, *, stream=None) -> array:
    """Zeros of ``a``'s shape and of ``dtype`` (default: ``a``'s dtype)."""
    a = as_array(a)
    return zeros(a._shape, a._dtype if dtype is None else dtype, stream=stream)


def ones_like(a, /, dtype=None, *, stream=None) -> array:
    """Ones of ``a``'s shape and of ``dtype`` (default: ``a``'s dtype)."""
    a = as_array(a)
    return ones(a._shape, a._dtype if dtype is None else dtype, stream=stream)


empty_like = zeros_like


def full_like(a, vals, dtype=None, *, stream=None) -> array:
    """An array of ``a``'s shape filled with ``vals``, of ``dtype`` (default ``a``'s)."""
    a = as_array(a)
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
        dtype = _dt.float32 if any(isinstance(v, float) for v in vals) else _dt.int32
    dtype = _dt.as_dtype(dtype)
    if step == 0:
        raise ValueError("[arange] step must be nonzero.")
    n = max(0, math.ceil((stop - start) / step))
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
    step = np.float32((stop - start) / div)

    def make(xp):
        return xp.arange(num, dtype=xp.float32) * step + xp.float32(start)

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


# ================================================================ reshaping
def reshape(a, /, shape, *, stream=None) -> array:
    """``a`` with a new shape of the same size (one dimension may be -1)."""
    a = as_array(a)
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = tuple(int(s) for s in shape)
    size = a.size
    if -1 in shape:
        if shape.count(-1) > 1:
            raise ValueError("[reshape] Reshape can only infer one dimension.")
        known = _prod(s for s in shape if s != -1)
        if size == 0 and known == 0:
            raise ValueError("[reshape] Cannot infer the shape of an empty array")
        inferred = size // known if known else 0
        shape = tuple(inferred if s == -1 else s for s in shape)
    if _prod(shape) != size:
        raise ValueError(f"[reshape] Cannot reshape array of size {size} into shape {shape_str(shape)}.")
    if shape == a._shape:
        return a
    return _make(shape, a._dtype, S.Reshape(shape), (a,), get_stream(stream))


def flatten(a, /, start_axis: int = 0, end_axis: int = -1, *, stream=None) -> array:
    """Merge the axes ``start_axis`` to ``end_axis`` (inclusive) into one."""
    a = as_array(a)
    nd = a.ndim
    if nd == 0:
        return reshape(a, (1,), stream=stream)
    start = start_axis + nd if start_axis < 0 else start_axis
    end = end_axis + nd if end_axis < 0 else end_axis
    start, end = max(start, 0), min(end, nd - 1)
    if start > end:
        raise ValueError("[flatten] start_axis must be less than or equal to end_axis")
    shape = a._shape[:start] + (_prod(a._shape[start : end + 1]),) + a._shape[end + 1 :]
    return reshape(a, shape, stream=stream)


def unflatten(a, /, axis: int, shape, *, stream=None) -> array:
    """Split axis ``axis`` into ``shape`` (one entry may be -1)."""
    a = as_array(a)
    nd = a.ndim
    if axis < -nd or axis >= nd:
        raise IndexError(f"[unflatten] Invalid axes {axis} for array with {nd} dimensions.")
    ax = axis % nd
    shape = tuple(int(s) for s in shape)
    n = a._shape[ax]
    if shape.count(-1) > 1:
        raise ValueError("[Unflatten] Can only infer one dimension.")
    if -1 in shape:
        known = _prod(s for s in shape if s != -1)
        shape = tuple((n // known if known else 0) if s == -1 else s for s in shape)
    if _prod(shape) != n:
        raise ValueError(
            f"[Unflatten] Cannot unflatten axis {axis} with size {n} into shape {shape_str(shape)}."
        )
    return reshape(a, a._shape[:ax] + shape + a._shape[ax + 1 :], stream=stream)


def squeeze(a, /, axis=None, *, stream=None) -> array:
    """Remove size-1 axes (all of them, or those in ``axis``)."""
    a = as_array(a)
    nd = a.ndim
    if axis is None:
        axes = tuple(i for i, s in enumerate(a._shape) if s == 1)
    else:
        axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
        axes = tuple(_axis(x, nd, "squeeze") for x in axes)
        for i in axes:
            if a._shape[i] != 1:
                raise ValueError(
                    f"[squeeze] Cannot squeeze axis {i} with size {a._shape[i]} which is not equal to 1."
                )
    shape = tuple(s for i, s in enumerate(a._shape) if i not in axes)
    return reshape(a, shape, stream=stream)


def expand_dims(a, /, axis, *, stream=None) -> array:
    """Insert size-1 axes at ``axis`` (an int or a sequence of ints)."""
    a = as_array(a)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out_nd = a.ndim + len(axes)
    norm = set()
    for ax in axes:
        if ax < -out_nd or ax >= out_nd:
            raise _oob("expand_dims", ax, out_nd)
        n = ax % out_nd
        if n in norm:
            raise ValueError("[expand_dims] Received duplicate axes.")
        norm.add(n)
    it = iter(a._shape)
    shape = tuple(1 if i in norm else next(it) for i in range(out_nd))
    return reshape(a, shape, stream=stream)


def transpose(a, /, axes=None, *, stream=None) -> array:
    """Permute the axes of ``a`` (reverse them by default)."""
    a = as_array(a)
    nd = a.ndim
    if axes is None:
        axes = tuple(range(nd - 1, -1, -1))
    else:
        axes = tuple(axes)
        if len(axes) != nd:
            raise ValueError(f"[transpose] Received {len(axes)} axes for array with {nd} dimensions.")
        for x in axes:
            if x < -nd or x >= nd:
                raise IndexError(f"[transpose] Invalid axis ({x}) for array with {nd} dimensions.")
        axes = tuple(int(x) % nd for x in axes)
        if len(set(axes)) != nd:
            raise ValueError("[transpose] Repeat axes not allowed.")
    if axes == tuple(range(nd)):
        return a
    shape = tuple(a._shape[i] for i in axes)
    return _make(shape, a._dtype, S.Transpose(axes), (a,), get_stream(stream))


def permute_dims(a, /, axes=None, *, stream=None) -> array:
    """Alias of :func:`transpose`."""
    return transpose(a, axes, stream=stream)


def matrix_transpose(a, /, *, stream=None) -> array:
    """Swap the last two axes."""
    a = as_array(a)
    if a.ndim < 2:
        raise ValueError("[matrix_transpose] Input array must have at least 2 dimensions.")
    return swapaxes(a, -1, -2, stream=stream)


def moveaxis(a, /, source: int, destination: int, *, stream=None) -> array:
    """Move axis ``source`` to position ``destination``."""
    a = as_array(a)
    nd = a.ndim
    s = norm_axis(source, nd, "moveaxis")
    d = norm_axis(destination, nd, "moveaxis")
    order = [i for i in range(nd) if i != s]
    order.insert(d, s)
    return transpose(a, order, stream=stream)


def swapaxes(a, /, axis1: int, axis2: int, *, stream=None) -> array:
    """Swap two axes."""
    a = as_array(a)
    nd = a.ndim
    i, j = norm_axis(axis1, nd, "swapaxes"), norm_axis(axis2, nd, "swapaxes")
    order = list(range(nd))
    order[i], order[j] = order[j], order[i]
    return transpose(a, order, stream=stream)


def broadcast_shapes(*shapes) -> tuple:
    """The shape that arrays of ``shapes`` broadcast to (NumPy rules)."""
    if not shapes:
        raise ValueError("[broadcast_shapes] Must provide at least one shape.")
    return _broadcast_shapes(*(tuple(int(d) for d in s) for s in shapes))


def broadcast_to(a, /, shape, *, stream=None) -> array:
    """Broadcast ``a`` (an array or scalar) to ``shape``."""
    a = as_array(a)
    shape = tuple(int(s) for s in shape)
    if shape == a._shape:
        return a
    if any(s < 0 for s in shape):
        raise ValueError("[broadcast_to] Negative dimensions not allowed.")
    if len(shape) < a.ndim:
        raise ValueError(
            f"Cannot broadcast array of shape {shape_str(a._shape)} into shape {shape_str(shape)}."
        )
    if _broadcast_shapes(a._shape, shape) != shape:
        raise ValueError(
            f"[broadcast_shapes] Shapes {shape_str(a._shape)} and {shape_str(shape)} cannot be broadcast."
        )
    return _make(shape, a._dtype, S.BroadcastTo(shape), (a,), get_stream(stream))


def broadcast_arrays(*arrays, stream=None) -> tuple:
    """The inputs broadcast against each other."""
    xs = [as_array(x) for x in arrays]
    if not xs:
        return ()
    shape = _broadcast_shapes(*(x._shape for x in xs))
    return tuple(broadcast_to(x, shape, stream=stream) for x in xs)


# ================================================================ joining / splitting
def _promote_all(xs):
    dt = xs[0]._dtype
    for x in xs[1:]:
        dt = _dt.promote_types(dt, x._dtype)
    from kiln.ops.elementwise import astype

    return [x if x._dtype is dt else astype(x, dt) for x in xs], dt


def concatenate(arrays, axis: int | None = 0, *, stream=None) -> array:
    """Join arrays along ``axis`` (flattened first when ``axis`` is None).

    Args:
        arrays: the arrays; their dtypes are promoted together.
        axis: the axis to join along, or None.
        stream: stream or device.
    Returns:
        The joined array.
    """
    xs = [as_array(x) for x in arrays]
    if not xs:
        raise ValueError("[concatenate] No arrays provided for concatenation")
    if axis is None:
        xs = [reshape(x, (-1,), stream=stream) for x in xs]
        axis = 0
    nd = xs[0].ndim
    for x in xs[1:]:
        if x.ndim != nd:
            raise ValueError(
                "[concatenate] All the input arrays must have the same number of dimensions. "
                f"However, got arrays with dimensions {nd} and {x.ndim}."
            )
    if len(xs) == 1:
        return xs[0]
    ax = _axis(axis, nd, "concatenate")
    ref = xs[0]._shape
    for x in xs[1:]:
        if any(d != r for i, (d, r) in enumerate(zip(x._shape, ref)) if i != ax):
            shapes = ", ".join(shape_str(y._shape) for y in xs)
            raise ValueError(
                "[concatenate] All the input array dimensions must match exactly except for "
                f"the concatenation axis. However, the provided shapes are {shapes}, "
                f"and the concatenation axis is {axis}."
            )
    xs, dt = _promote_all(xs)
    prim = S.Concatenate(ax)
    return _make(prim.output_shapes(xs)[0], dt, prim, tuple(xs), get_stream(stream))


def concat(arrays, axis: int | None = 0, *, stream=None) -> array:
    """Alias of :func:`concatenate`."""
    return concatenate(arrays, axis, stream=stream)


def stack(arrays, axis: int = 0, *, stream=None) -> array:
    """Join arrays of one shape along a new axis ``axis``."""
    xs = [as_array(x) for x in arrays]
    if not xs:
        raise ValueError("[stack] No arrays provided for stacking")
    for x in xs[1:]:
        if x._shape != xs[0]._shape:
            raise ValueError("[stack] All arrays must have the same shape")
    ax = _axis(axis, xs[0].ndim + 1, "stack")
    xs = [expand_dims(x, ax, stream=stream) for x in xs]
    if len(xs) == 1:
        return xs[0]
    return concatenate(xs, ax, stream=stream)


def _slice_axis(x, axis, start, stop, step=1, stream=None):
    return _slice_axis_node(x, axis, start, stop, step, get_stream(stream) if stream is not None else None)


def unstack(x, /, *, axis: int = 0, stream=None) -> tuple:
    """The slices of ``x`` along ``axis``, with that axis removed."""
    x = as_array(x)
    ax = _axis(axis, x.ndim, "unstack")
    return tuple(
        squeeze(_slice_axis(x, ax, i, i + 1, stream=stream), ax, stream=stream) for i in range(x._shape[ax])
    )


def split(a, /, indices_or_sections, axis: int = 0, *, stream=None) -> list:
    """Split ``a`` along ``axis`` into equal sections or at the given indices.

    Args:
        a: the array.
        indices_or_sections: the number of equal sections, or the indices
            (in order; negative ones count from the end) to split at.
        axis: the axis to split along.
        stream: stream or device.
    Returns:
        A list of arrays.
    """
    a = as_array(a)
    ax = _axis(axis, a.ndim, "split")
    n = a._shape[ax]
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0:
            raise ValueError(f"[split] num_splits must be positive and non-zero but got {k}.")
        if n % k:
            raise ValueError(
                "Array split does not result in sub arrays with equal size: attempting "
                f"{k} splits along axis {axis} for shape {shape_str(a._shape)}."
            )
        bounds = [i * (n // k) for i in range(1, k)]
    else:
        bounds = [int(i) + n if i < 0 else int(i) for i in indices_or_sections]
    edges = [0] + [min(max(b, 0), n) for b in bounds] + [n]
    out = []
    for lo, hi in itertools.pairwise(edges):
        out.append(_slice_axis(a, ax, lo, max(lo, hi), stream=stream))
    return out


def tile(a, reps, /, *, stream=None) -> array:
    """Repeat the whole of ``a`` ``reps`` times along each axis."""
    a = as_array(a)
    reps = (int(reps),) if isinstance(reps, (int, np.integer)) else tuple(int(r) for r in reps)
    if any(r < 0 for r in reps):
        raise ValueError("[broadcast_to] Negative dimensions not allowed.")
    nd = max(a.ndim, len(reps))
    shape = (1,) * (nd - a.ndim) + a._shape
    reps = (1,) * (nd - len(reps)) + reps
    if all(r == 1 for r in reps):
        return reshape(a, shape, stream=stream)
    # (r0, d0, r1, d1, ...) by broadcasting, then merge each pair.
    x = reshape(a, tuple(v for d in shape for v in (1, d)), stream=stream)
    x = broadcast_to(x, tuple(v for r, d in zip(reps, shape) for v in (r, d)), stream=stream)
    return reshape(x, tuple(r * d for r, d in zip(reps, shape)), stream=stream)


def repeat(array, repeats: int, axis: int | None = None, *, stream=None) -> array:
    """Repeat each element ``repeats`` times along ``axis`` (flattened if None)."""
    a = as_array(array)
    repeats = int(repeats)
    if repeats < 0:
        raise ValueError("[repeat] Number of repeats cannot be negative")
    if axis is None:
        a = reshape(a, (-1,), stream=stream)
        axis = 0
    ax = _axis(axis, a.ndim, "repeat")
    x = expand_dims(a, ax + 1, stream=stream)
    shape = x._shape[: ax + 1] + (repeats,) + x._shape[ax + 2 :]
    x = broadcast_to(x, shape, stream=stream)
    return reshape(x, a._shape[:ax] + (a._shape[ax] * repeats,) + a._shape[ax + 1 :], stream=stream)


def roll(a, shift, axis=None, /, *, stream=None) -> array:
    """Shift elements cyclically by ``shift`` along ``axis`` (flattened if None)."""
    a = as_array(a)
    shifts = (shift,) if isinstance(shift, (int, np.integer)) else tuple(shift)
    if axis is None:
        flat = reshape(a, (-1,), stream=stream)
        return reshape(_roll_axis(flat, sum(int(s) for s in shifts), 0, stream), a._shape, stream=stream)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if len(shifts) == 1:
        shifts = shifts * len(axes)
    elif len(axes) == 1:
        axes = axes * len(shifts)
    elif len(shifts) != len(axes):
        raise ValueError(
            f"[roll] At least one shift value per axis is required, {len(shifts)} "
            f"provided for {len(axes)} axes."
        )
    out = a
    for s, ax in zip(shifts, axes):
        out = _roll_axis(out, int(s), norm_axis(ax, a.ndim, "roll"), stream)
    return out


def _roll_axis(x, s, ax, stream):
    n = x._shape[ax]
    if n == 0 or s % n == 0:
        return x
    s %= n
    return concatenate(
        [_slice_axis(x, ax, n - s, n, stream=stream), _slice_axis(x, ax, 0, n - s, stream=stream)],
        ax,
        stream=stream,
    )


# ================================================================ padding
def _pad_widths(pad_width, nd):
    if isinstance(pad_width, (int, np.integer)):
        pairs = [(int(pad_width), int(pad_width))] * nd
    else:
        pw = list(pad_width)
        if pw and all(isinstance(p, (int, np.integer)) for p in pw):
            if len(pw) == 1:
                pairs = [(int(pw[0]), int(pw[0]))] * nd
            elif len(pw) == 2:
                pairs = [(int(pw[0]), int(pw[1]))] * nd
            else:
                raise TypeError("[pad] pad_width must be an int, a (low, high) pair or a list of pairs.")
        else:
            pairs = []
            for p in pw:
                p = tuple(p)
                pairs.append((int(p[0]), int(p[-1])))
            if len(pairs) == 1:
                pairs = pairs * nd
    if len(pairs) != nd:
        raise ValueError(f"Invalid number of padding sizes passed to pad with axes of size {nd}")
    for i, (lo, hi) in enumerate(pairs):
        if lo < 0:
            raise ValueError(
                f"Invalid low padding size ({lo}) passed to pad for axis {i}. "
                "Padding sizes must be non-negative"
            )
        if hi < 0:
            raise ValueError(
                f"Invalid high padding size ({hi}) passed to pad for axis {i}. "
                "Padding sizes must be non-negative"
            )
    return tuple(pairs)


def pad(a, pad_width, mode: str = "constant", constant_values=0, *, stream=None) -> array:
    """Pad ``a`` with ``pad_width[i] = (low, high)`` elements on each axis.

    Args:
        a: the array.
        pad_width: an int (all sides), a ``(low, high)`` pair (all axes), or
            one pair per axis.
        mode: ``"constant"`` (fill with ``constant_values``), ``"edge"``
            (repeat the edge values), ``"reflect"`` (mirror without the edge)
            or ``"symmetric"`` (mirror with the edge).
        constant_values: the fill value, a scalar or an array (its gradient
            is the sum of the cotangent over the padding).
        stream: stream or device.
    Returns:
        The padded array.
    """
    a = as_array(a)
    if mode not in ("constant", "edge", "reflect", "symmetric"):
        raise ValueError(f"Invalid padding mode ({mode}) passed to pad")
    widths = _pad_widths(pad_width, a.ndim)
    if all(w == (0, 0) for w in widths):
        return a
    if mode == "constant":
        from kiln.ops.elementwise import astype

        v = as_array(constant_values)
        if v.ndim:
            v = reshape(_slice_axis(reshape(v, (-1,)), 0, 0, 1), ())
        v = astype(v, a._dtype)
        prim = S.Pad(widths)
        return _make(prim.output_shapes([a])[0], a._dtype, prim, (a, v), get_stream(stream))
    out = a
    for ax, (lo, hi) in enumerate(widths):
        if lo or hi:
            out = _pad_axis(out, ax, lo, hi, mode, stream)
    return out


def _pad_axis(x, ax, lo, hi, mode, stream):
    """Non-constant padding of one axis, composed of slices, flips and joins."""
    n = x._shape[ax]
    if n == 0:
        return pad(x, [(lo, hi) if i == ax else (0, 0) for i in range(x.ndim)], stream=stream)
    if mode == "edge" or (mode == "reflect" and n == 1):
        parts = []
        if lo:
            first = _slice_axis(x, ax, 0, 1, stream=stream)
            parts.append(broadcast_to(first, _with(x._shape, ax, lo), stream=stream))
        parts.append(x)
        if hi:
            last = _slice_axis(x, ax, n - 1, n, stream=stream)
            parts.append(broadcast_to(last, _with(x._shape, ax, hi), stream=stream))
        return concatenate(parts, ax, stream=stream)
    # Output position i (from -lo) reads period[i mod L] of the periodic extension.
    back = flip(x, ax, stream=stream)
    if mode == "reflect":
        period = concatenate([x, _slice_axis(back, ax, 1, n - 1, stream=stream)], ax, stream=stream)
    else:
        period = concatenate([x, back], ax, stream=stream)
    length = period._shape[ax]
    total = n + lo + hi
    start = (-lo) % length
    reps = -(-(start + total) // length)
    if reps > 1:
        period = tile(period, _with((1,) * x.ndim, ax, reps), stream=stream)
    return _slice_axis(period, ax, start, start + total, stream=stream)


def _with(shape, ax, v):
    return tuple(v if i == ax else s for i, s in enumerate(shape))


def atleast_1d(*arys, stream=None):
    """Inputs with at least one dimension (a list when given several)."""
    return _atleast(arys, 1, stream)


def atleast_2d(*arys, stream=None):
    """Inputs with at least two dimensions (a list when given several)."""
    return _atleast(arys, 2, stream)


def atleast_3d(*arys, stream=None):
    """Inputs with at least three dimensions: 1-D ``(n,)`` becomes ``(1, n, 1)``."""
    return _atleast(arys, 3, stream)


def _atleast(arys, k, stream):
    out = []
    for x in arys:
        x = as_array(x)
        s = x._shape
        if x.ndim < k:
            if k == 3 and x.ndim == 2:
                s = s + (1,)
            elif k == 3 and x.ndim == 1:
                s = (1,) + s + (1,)
            else:
                s = (1,) * (k - x.ndim) + s
            x = reshape(x, s, stream=stream)
        out.append(x)
    return out[0] if len(out) == 1 else out


# ================================================================ diagonals
def diagonal(a, offset: int = 0, axis1: int = 0, axis2: int = 1, stream=None) -> array:
    """The diagonal ``offset`` of the 2-D slices over ``axis1`` and ``axis2``.

    The two axes are removed and the diagonal becomes the last axis.
    """
    a = as_array(a)
    nd = a.ndim
    if nd < 2:
        raise ValueError(f"[diagonal] Array must have at least two dimensions, but got {nd} dimensions.")
    for name, ax in (("axis1", axis1), ("axis2", axis2)):
        if ax < -nd or ax >= nd:
            raise IndexError(f"[diagonal] Invalid {name} {ax} for array with {nd} dimensions.")
    i, j = axis1 % nd, axis2 % nd
    if i == j:
        raise ValueError("[diagonal] axis1 and axis2 cannot be the same axis")
    rest = [k for k in range(nd) if k not in (i, j)]
    x = transpose(a, rest + [i, j], stream=stream)
    n, m = a._shape[i], a._shape[j]
    k = int(offset)
    length = max(0, min(n, m - k)) if k >= 0 else max(0, min(n + k, m))
    # Element t of the diagonal sits at flat index t*(m+1) + start of each n*m slice.
    x = reshape(x, x._shape[:-2] + (n * m,), stream=stream)
    if length == 0:
        return _slice_axis(x, x.ndim - 1, 0, 0, stream=stream)
    start = k if k >= 0 else -k * m
    return _slice_axis(x, x.ndim - 1, start, start + (length - 1) * (m + 1) + 1, m + 1, stream=stream)


def diag(a, /, k: int = 0, *, stream=None) -> array:
    """The diagonal ``k`` of a 2-D array, or a 2-D array with 1-D ``a`` on diagonal ``k``."""
    a = as_array(a)
    if a.ndim == 2:
        return diagonal(a, k, 0, 1, stream=stream)
    if a.ndim != 1:
        raise ValueError(f"[diag] array must be 1-D or 2-D, got array with {a.ndim} dimensions.")
    n = a._shape[0]
    k = int(k)
    if n == 0:
        return zeros((abs(k), abs(k)), a._dtype, stream=stream)
    # [v | 0] of shape (n, n+1) read as n rows of n elements puts v on the diagonal.
    z = zeros((n, n), a._dtype, stream=stream)
    x = concatenate([reshape(a, (n, 1), stream=stream), z], 1, stream=stream)
    x = reshape(
        _slice_axis(reshape(x, (-1,), stream=stream), 0, 0, n * n, stream=stream), (n, n), stream=stream
    )
    if k > 0:
        return pad(x, [(0, k), (k, 0)], stream=stream)
    if k < 0:
        return pad(x, [(-k, 0), (0, -k)], stream=stream)
    return x


def trace(a, /, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype=None, *, stream=None) -> array:
    """The sum along a diagonal (see :func:`diagonal`), as ``dtype`` if given.

    Small integer types accumulate in 32 bits, as in ``sum``.
    """
    from kiln.ops.elementwise import astype
    from kiln.ops.reduce import sum as _sum

    a = as_array(a)
    d = diagonal(a, offset, axis1, axis2, stream=stream)
    if dtype is None:
        dt = a._dtype
        if dt is _dt.bool_ or (dt.kind == "i" and dt.size < 4):
            dtype = _dt.int32
        elif dt.kind == "u" and dt.size < 4:
            dtype = _dt.uint32
        else:
            dtype = dt
    d = astype(d, _dt.as_dtype(dtype))
    return _sum(d, axis=-1, stream=stream)


# ================================================================ memory layout
def as_strided(a, /, shape=None, strides=None, offset: int = 0, *, stream=None) -> array:
    """A strided view of the row-major elements of ``a``.

    Like MLX, nothing checks that the view stays inside ``a``'s elements.

    Args:
        a: the array (read as if contiguous, row-major).
        shape: the view's shape (default ``a.shape``).
        strides: element strides (default: row-major strides of ``shape``).
        offset: element offset of the first element.
        stream: stream or device.
    Returns:
        A new array with the viewed elements.
    """
    a = as_array(a)
    shape = a._shape if shape is None else tuple(int(s) for s in shape)
    if strides is None:
        strides, acc = [], 1
        for s in reversed(shape):
            strides.append(acc)
            acc *= s
        strides = tuple(reversed(strides))
    strides = tuple(int(s) for s in strides)
    if len(strides) != len(shape):
        raise ValueError("[as_strided] shape and strides must have the same length.")
    return _make(shape, a._dtype, S.AsStrided(shape, strides, int(offset)), (a,), get_stream(stream))


def flip(a, /, axis=None, *, stream=None) -> array:
    """Reverse the order of elements along ``axis`` (all axes by default)."""
    a = as_array(a)
    nd = a.ndim
    if axis is None:
        axes = tuple(range(nd))
    else:
        axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
        axes = tuple(sorted({_axis(x, nd, "flip") for x in axes}))
    if not axes:
        return a
    return _make(a._shape, a._dtype, S.Flip(axes), (a,), get_stream(stream))


def contiguous(a, /, allow_col_major: bool = False, *, stream=None) -> array:
    """``a`` with a row-major contiguous buffer (same values)."""
    a = as_array(a)
    return _make(a._shape, a._dtype, _CONTIGUOUS, (a,), get_stream(stream))


_CONTIGUOUS = S.Contiguous()


def view(a, dtype, stream=None) -> array:
    """The bytes of ``a`` read as ``dtype``; the last axis is rescaled by the size ratio."""
    a = as_array(a)
    dtype = _dt.as_dtype(dtype)
    isz, osz = a._dtype.size, dtype.size
    if a.ndim == 0:
        if isz != osz:
            raise ValueError(
                "[view] Changing the type of a scalar is only allowed for types with the same size."
            )
    elif isz != osz:
        nbytes = a._shape[-1] * isz
        if osz > isz and nbytes % osz:
            raise ValueError(
                "[view] When viewing as a larger dtype, the size in bytes of the last axis "
                "must be a multiple of the requested type size."
            )
    if dtype is a._dtype:
        return a
    prim = S.View(dtype)
    return _make(prim.output_shapes([a])[0], dtype, prim, (a,), get_stream(stream))


# ================================================================ dtypes
def result_type(*arrays_and_dtypes) -> _dt.Dtype:
    """The dtype that the given arrays and dtypes promote to."""
    out = None
    for x in arrays_and_dtypes:
        if isinstance(x, array):
            d = x._dtype
        elif isinstance(x, _dt.Dtype):
            d = x
        else:
            raise ValueError("[result_type] Inputs must be arrays or dtypes.")  # noqa: TRY004 (MLX raises ValueError)
        out = d if out is None else _dt.promote_types(out, d)
    if out is None:
        raise ValueError("[result_type] Inputs must be arrays or dtypes.")
    return out


def can_cast(from_, to) -> bool:
    """Whether ``from_`` (an array or dtype) promotes to ``to`` unchanged."""
    src = from_._dtype if isinstance(from_, array) else _dt.as_dtype(from_)
    to = _dt.as_dtype(to)
    return _dt.promote_types(src, to) is to


_KINDS = {
    "bool": lambda d: d is _dt.bool_,
    "signed integer": lambda d: d.kind == "i",
    "unsigned integer": lambda d: d.kind == "u",
    "integral": lambda d: d.kind in "iu",
    "real floating": lambda d: d.kind == "f",
    "complex floating": lambda d: d.kind == "c",
    "numeric": lambda d: d.kind in "iufc",
}


def isdtype(dtype, kind) -> bool:
    """Whether ``dtype`` is of ``kind``: a dtype, a kind name such as
    ``"real floating"`` or ``"integral"``, or a tuple of those."""
    dtype = _dt.as_dtype(dtype)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    for k in kinds:
        if isinstance(k, str):
            test = _KINDS.get(k)
            if test is None:
                raise ValueError(f"[isdtype] Unknown kind '{k}'.")
            if test(dtype):
                return True
        elif _dt.as_dtype(k) is dtype:
            return True
    return False
