"""Creation and shape ops: zeros/ones/full, reshape, transpose, broadcast..."""
from __future__ import annotations

import numpy as np

from . import dtypes as _dt
from ._common import as_array, get_stream, norm_axes, norm_axis, shape_str
from .array import _leaf, _make, array
from .primitives import shape as S

__all__ = [
    "zeros", "ones", "full", "zeros_like", "ones_like", "reshape", "transpose",
    "moveaxis", "swapaxes", "expand_dims", "squeeze", "broadcast_to",
]


def _shape_arg(shape, op):
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    shape = tuple(int(s) for s in shape)
    for s in shape:
        if s < 0:
            raise ValueError(f"[{op}] Negative dimensions are not allowed: {shape_str(shape)}.")
    return shape


def full(shape, vals, dtype=None, *, stream=None) -> array:
    """An array of ``shape`` filled with ``vals`` (broadcast)."""
    shape = _shape_arg(shape, "full")
    v = as_array(vals)
    if dtype is not None:
        dtype = _dt.as_dtype(dtype)
        if v._dtype is not dtype:
            from .ops import astype

            v = astype(v, dtype)
    return broadcast_to(v, shape, stream=stream)


def zeros(shape, dtype=_dt.float32, *, stream=None) -> array:
    """An array of zeros."""
    shape = _shape_arg(shape, "zeros")
    dtype = _dt.as_dtype(dtype) if dtype is not None else _dt.float32
    s = get_stream(stream)
    return _leaf(_backend_xp(s).zeros(shape, dtype.np), dtype, s)


def ones(shape, dtype=_dt.float32, *, stream=None) -> array:
    """An array of ones."""
    shape = _shape_arg(shape, "ones")
    dtype = _dt.as_dtype(dtype) if dtype is not None else _dt.float32
    s = get_stream(stream)
    return _leaf(_backend_xp(s).ones(shape, dtype.np), dtype, s)


def zeros_like(a, /, *, stream=None) -> array:
    """Zeros of ``a``'s shape and dtype."""
    a = as_array(a)
    return zeros(a._shape, a._dtype, stream=stream)


def ones_like(a, /, *, stream=None) -> array:
    """Ones of ``a``'s shape and dtype."""
    a = as_array(a)
    return ones(a._shape, a._dtype, stream=stream)


def _backend_xp(stream):
    from ..backend import get_backend

    return get_backend(stream.device.type).xp


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
        known = 1
        for s in shape:
            if s != -1:
                known *= s
        if known == 0 or size % known:
            raise ValueError(f"[reshape] Cannot infer the shape of an array of size {size} into shape {shape_str(shape)}.")
        shape = tuple(size // known if s == -1 else s for s in shape)
    n = 1
    for s in shape:
        n *= s
    if n != size:
        raise ValueError(f"[reshape] Cannot reshape array of size {size} into shape {shape_str(shape)}.")
    if shape == a._shape:
        return a
    return _make(shape, a._dtype, S.Reshape(shape), (a,), get_stream(stream))


def transpose(a, /, axes=None, *, stream=None) -> array:
    """Permute the axes of ``a`` (reverse them by default)."""
    a = as_array(a)
    nd = a.ndim
    if axes is None:
        axes = tuple(range(nd - 1, -1, -1))
    else:
        axes = tuple(axes)
        if len(axes) != nd:
            raise ValueError(f"[transpose] Recived {len(axes)} axes for array with {nd} dimensions.")
        axes = tuple(norm_axis(x, nd, "transpose") for x in axes)
        if len(set(axes)) != nd:
            raise ValueError("[transpose] Repeat axes not allowed.")
    if axes == tuple(range(nd)):
        return a
    shape = tuple(a._shape[i] for i in axes)
    return _make(shape, a._dtype, S.Transpose(axes), (a,), get_stream(stream))


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


def expand_dims(a, /, axis, *, stream=None) -> array:
    """Insert size-1 axes at ``axis`` (an int or a sequence)."""
    a = as_array(a)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out_nd = a.ndim + len(axes)
    norm = set()
    for ax in axes:
        if ax < -out_nd or ax >= out_nd:
            raise ValueError(f"[expand_dims] Invalid axis {ax} for output array with {out_nd} dimensions.")
        n = ax % out_nd
        if n in norm:
            raise ValueError("[expand_dims] Received duplicate axes.")
        norm.add(n)
    it = iter(a._shape)
    shape = tuple(1 if i in norm else next(it) for i in range(out_nd))
    return reshape(a, shape, stream=stream)


def squeeze(a, /, axis=None, *, stream=None) -> array:
    """Remove size-1 axes (all of them, or those in ``axis``)."""
    a = as_array(a)
    if axis is None:
        axes = tuple(i for i, s in enumerate(a._shape) if s == 1)
    else:
        axes = norm_axes(axis, a.ndim, "squeeze")
        for i in axes:
            if a._shape[i] != 1:
                raise ValueError(f"[squeeze] Cannot squeeze axis {i} with size {a._shape[i]} which is not equal to 1.")
    shape = tuple(s for i, s in enumerate(a._shape) if i not in axes)
    return reshape(a, shape, stream=stream)


def broadcast_to(a, /, shape, *, stream=None) -> array:
    """Broadcast ``a`` to ``shape``."""
    a = as_array(a)
    shape = tuple(int(s) for s in shape)
    if shape == a._shape:
        return a
    from .primitives.base import broadcast_shapes

    if len(shape) < a.ndim or broadcast_shapes(a._shape, shape) != shape:
        raise ValueError(f"[broadcast_shapes] Shapes {shape_str(a._shape)} and {shape_str(shape)} cannot be broadcast.")
    return _make(shape, a._dtype, S.BroadcastTo(shape), (a,), get_stream(stream))
