"""Argument normalisation shared by the ops: conversion, weak scalars,
promotion, axes, streams. Everything here runs before a node is built."""
from __future__ import annotations

import numpy as np

from kiln import dtypes as _dt
from kiln.graph.array import _leaf, array
from kiln.device import current_stream, resolve_stream

_scalar_cache: dict = {}


def get_stream(stream):
    """The stream an op runs on."""
    return current_stream() if stream is None else resolve_stream(stream)


def scalar(value, dtype) -> array:
    """A 0-d constant of ``dtype`` (cached: constants are immutable)."""
    key = (type(value), value, dtype)
    a = _scalar_cache.get(key)
    if a is None:
        a = _leaf(np.array(value, dtype=dtype.np), dtype)
        a._nb = 0  # cached constants are not user memory
        if len(_scalar_cache) < 4096:
            _scalar_cache[key] = a
    return a


def as_array(x, dtype=None) -> array:
    """``x`` as an array (arrays pass through untouched unless ``dtype`` is given)."""
    if type(x) is array:
        return x if dtype is None or x._dtype is dtype else astype(x, dtype)
    if isinstance(x, array):
        return x
    if dtype is not None and isinstance(x, (bool, int, float, complex)):
        return scalar(x, dtype)
    return array(x, dtype)


def _scalar_dtype(v, other):
    """Dtype a Python scalar takes next to an array of dtype ``other`` (weak typing)."""
    if isinstance(v, bool):
        return other
    if isinstance(v, int):
        return _dt.int32 if other is _dt.bool_ else other
    if isinstance(v, float):
        return other if other.kind in "fc" else _dt.float32
    if isinstance(v, complex):
        return _dt.complex64
    return None


def _is_scalar(v) -> bool:
    return isinstance(v, (bool, int, float, complex)) and not isinstance(v, array)


def binary_args(a, b, op: str):
    """Convert, promote and cast the two operands of a binary op.

    Python scalars are weak: they take the array operand's dtype where it
    can hold them. Returns ``(a, b, dtype)`` with both arrays of ``dtype``.
    """
    ta, tb = type(a), type(b)
    if ta is array and tb is array:
        da, db = a._dtype, b._dtype
        if da is db:
            return a, b, da
        dt = _dt._PROMOTE[(da, db)]
        return (a if da is dt else astype(a, dt)), (b if db is dt else astype(b, dt)), dt
    if ta is array and _is_scalar(b):
        dt = _scalar_dtype(b, a._dtype)
        return (a if a._dtype is dt else astype(a, dt)), scalar(b, dt), dt
    if tb is array and _is_scalar(a):
        dt = _scalar_dtype(a, b._dtype)
        return scalar(a, dt), (b if b._dtype is dt else astype(b, dt)), dt
    if a is None or b is None:
        raise TypeError(f"[{op}] Cannot use None as an operand.")
    if not isinstance(a, array):
        a = _convert_operand(a, op)
    if not isinstance(b, array):
        b = _convert_operand(b, op)
    return binary_args(a, b, op)


def _convert_operand(x, op):
    if isinstance(x, (bool, int, float, complex)):
        return array(x)
    try:
        return array(x)
    except (TypeError, ValueError) as e:
        raise TypeError(f"[{op}] Cannot convert an operand of type {type(x).__name__} to an array: {e}") from None


def norm_axis(axis: int, ndim: int, op: str) -> int:
    """A non-negative axis, or IndexError naming the op."""
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"[{op}] Axis must be an integer, got {type(axis).__name__}.")
    if axis < -ndim or axis >= ndim:
        raise IndexError(f"[{op}] Invalid axis {axis} for array with {ndim} dimensions.")
    return int(axis) % ndim if ndim else 0


def norm_axes(axis, ndim: int, op: str) -> tuple:
    """Sorted, de-duplicated non-negative axes (None means all)."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    out = set()
    for a in axis:
        if a < -ndim or a >= ndim:
            raise IndexError(f"[{op}] Invalid axis {a} for array with {ndim} dimensions.")
        n = a % ndim
        if n in out:
            raise ValueError(f"[{op}] Received duplicate axis {a}.")
        out.add(n)
    return tuple(sorted(out))


def shape_str(s) -> str:
    """A shape as MLX prints it in messages: ``(2,3)``."""
    return "(" + ",".join(str(v) for v in s) + ")"


def astype(x, dtype, stream=None):
    from kiln.ops.elementwise import astype as _astype

    return _astype(x, dtype, stream=stream)
