"""Elementwise, reduction, scan and sort ops: validate, promote, build nodes.

Every op ends in ``_make`` with inputs already converted, promoted and of
broadcast-compatible shapes, so primitives stay simple.
"""
from __future__ import annotations

from . import dtypes as _dt
from ._common import as_array, binary_args, get_stream, norm_axes, scalar
from .array import _make, array
from .primitives import binary as B
from .primitives import misc as M
from .primitives import reduce as R
from .primitives import unary as U
from .primitives.base import broadcast_shapes

__all__ = [
    "astype", "stop_gradient", "add", "subtract", "multiply", "divide", "negative",
    "exp", "log", "sin", "cos", "tanh", "sum",
]


# ---------------------------------------------------------------- casts
def astype(a, dtype, stream=None) -> array:
    """``a`` cast to ``dtype``."""
    a = as_array(a)
    dtype = _dt.as_dtype(dtype)
    if a._dtype is dtype:
        return a
    return _make(a._shape, dtype, M.AsType(dtype), (a,), get_stream(stream))


def stop_gradient(a, stream=None) -> array:
    """The same values, with no gradient flowing through."""
    a = as_array(a)
    return _make(a._shape, a._dtype, _STOP_GRADIENT, (a,), get_stream(stream))


_STOP_GRADIENT = M.StopGradient()


# ---------------------------------------------------------------- unary
def _to_float(a):
    """Integer and bool inputs of float-valued ops become float32, as in MLX."""
    return a if a._dtype.kind in "fc" else astype(a, _dt.float32)


def _unary(prim, name, doc, to_float=True):
    def op(a, /, *, stream=None) -> array:
        a = as_array(a)
        if to_float and a._dtype.kind not in "fc":
            a = astype(a, _dt.float32)
        return _make(a._shape, prim.out_dtype(a._dtype), prim, (a,),
                     a._stream if stream is None else get_stream(stream))

    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return op


negative = _unary(U.Negative(), "negative", "Elementwise negation.", to_float=False)
exp = _unary(U.Exp(), "exp", "Elementwise exponential.")
log = _unary(U.Log(), "log", "Elementwise natural logarithm.")
sin = _unary(U.Sin(), "sin", "Elementwise sine.")
cos = _unary(U.Cos(), "cos", "Elementwise cosine.")
tanh = _unary(U.Tanh(), "tanh", "Elementwise hyperbolic tangent.")


# ---------------------------------------------------------------- binary
def _binary(prim, name, doc, to_float=False):
    def op(a, b, /, *, stream=None) -> array:
        a, b, dt = binary_args(a, b, name)
        if to_float and dt.kind not in "fc":
            a, b, dt = astype(a, _dt.float32), astype(b, _dt.float32), _dt.float32
        sa, sb = a._shape, b._shape
        shape = sa if sa == sb else broadcast_shapes(sa, sb)
        return _make(shape, prim.out_dtype(dt), prim, (a, b),
                     a._stream if stream is None else get_stream(stream))

    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return op


add = _binary(B.Add(), "add", "Elementwise addition with broadcasting.")
subtract = _binary(B.Subtract(), "subtract", "Elementwise subtraction with broadcasting.")
multiply = _binary(B.Multiply(), "multiply", "Elementwise multiplication with broadcasting.")
divide = _binary(B.Divide(), "divide", "Elementwise true division with broadcasting.", to_float=True)


# ---------------------------------------------------------------- reductions
def sum(a, /, axis=None, keepdims=False, *, stream=None) -> array:
    """Sum over ``axis`` (all axes by default)."""
    a = as_array(a)
    axes = norm_axes(axis, a.ndim, "sum")
    dt = a._dtype
    if dt is _dt.bool_:
        a, dt = astype(a, _dt.int32), _dt.int32
    prim = R.Sum(axes, bool(keepdims))
    return _make(prim._out_shape(a._shape, axes, keepdims), dt, prim, (a,), get_stream(stream))


del scalar
