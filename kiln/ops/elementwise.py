"""Elementwise ops (casts, unary, binary, selection): validate, promote, build nodes.

Every op ends in ``_make`` with inputs already converted, promoted and of
broadcast-compatible shapes, so primitives stay simple. Dtype rules and
error types follow MLX (checked against it in ``tests/test_ops_*.py``).
Composite ops (``clip``, ``isclose``...) are written with other ops, so their gradients
come free. Reductions, scans and sorts are in ``reduce.py``.
"""
from __future__ import annotations

import builtins

import numpy as np

from kiln import dtypes as _dt
from kiln.ops.normalize import as_array, binary_args, get_stream, norm_axes, scalar, shape_str
from kiln.graph.array import _make, _make_multi, array
from kiln.primitives import binary as B
from kiln.primitives import misc as M
from kiln.primitives import ternary as T
from kiln.primitives import unary as U
from kiln.primitives.base import broadcast_shapes

__all__ = [
    "astype", "stop_gradient", "abs", "negative", "positive", "sign", "square", "sqrt", "rsqrt",
    "reciprocal", "exp", "expm1", "log", "log2", "log10", "log1p", "sin", "cos", "tan", "arcsin",
    "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "sigmoid", "erf",
    "erfinv", "floor", "ceil", "round", "trunc", "degrees", "radians", "isnan", "isinf",
    "isfinite", "isposinf", "isneginf", "nan_to_num", "conj", "conjugate", "real", "imag",
    "logical_not", "bitwise_invert", "acos", "asin", "atan", "acosh", "asinh", "atanh", "add",
    "subtract", "multiply", "divide", "floor_divide", "remainder", "divmod", "power", "pow",
    "maximum", "minimum", "arctan2", "atan2", "logaddexp", "equal", "not_equal", "less",
    "less_equal", "greater", "greater_equal", "logical_and", "logical_or", "logical_xor",
    "bitwise_and", "bitwise_or", "bitwise_xor", "left_shift", "right_shift", "bitwise_left_shift",
    "bitwise_right_shift", "isclose", "_and_op", "_or_op", "_invert_op", "where", "clip",
]

_py_abs, _py_round, _py_sum, _py_min, _py_max = (builtins.abs, builtins.round, builtins.sum,
                                                 builtins.min, builtins.max)


def _st(a, stream):
    return a._stream if stream is None else get_stream(stream)


# ---------------------------------------------------------------- casts
def astype(a, dtype, stream=None) -> array:
    """``a`` cast to ``dtype``."""
    a = as_array(a)
    dtype = _dt.as_dtype(dtype)
    if a._dtype is dtype:
        return a
    return _make(a._shape, dtype, M.AsType(dtype), (a,), _st(a, stream))


def stop_gradient(a, stream=None) -> array:
    """The same values, with no gradient flowing through."""
    a = as_array(a)
    return _make(a._shape, a._dtype, _STOP_GRADIENT, (a,), _st(a, stream))


_STOP_GRADIENT = M.StopGradient()


# ---------------------------------------------------------------- unary
# ``kinds``: which input dtypes are cast to float32 first ("to_float": ints and
# bools, as MLX's float-valued functions), and which are refused.
def _unary(prim, name, doc, to_float=True, no_complex=False, no_bool=False):
    def op(a, /, *, stream=None) -> array:
        if type(a) is not array:
            a = as_array(a)
        kind = a._dtype.kind
        if kind == "c" and no_complex:
            raise ValueError(f"[{name}] Not supported for complex64.")
        if kind == "b" and no_bool:
            raise ValueError(f"[{name}] Not supported for bool, use logical_not instead.")
        if to_float and kind not in "fc":
            a = astype(a, _dt.float32)
        return _make(a._shape, prim.out_dtype(a._dtype), prim, (a,),
                     a._stream if stream is None else get_stream(stream))

    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc + "\n\n    Args:\n        a: input array.\n\n    Returns:\n        The result array.\n"
    return op


abs = _unary(U.Abs(), "abs", "Elementwise absolute value (complex inputs give float32).", to_float=False)
negative = _unary(U.Negative(), "negative", "Elementwise negation.", to_float=False, no_bool=True)
sign = _unary(U.Sign(), "sign", "Elementwise sign (-1, 0 or 1; z/|z| for complex).", to_float=False)
square = _unary(U.Square(), "square", "Elementwise square.", to_float=False)
sqrt = _unary(U.Sqrt(), "sqrt", "Elementwise square root.")
rsqrt = _unary(U.Rsqrt(), "rsqrt", "Elementwise reciprocal square root.")
reciprocal = _unary(U.Reciprocal(), "reciprocal", "Elementwise reciprocal.")
exp = _unary(U.Exp(), "exp", "Elementwise exponential.")
expm1 = _unary(U.Expm1(), "expm1", "Elementwise ``exp(x) - 1``, accurate near 0.", no_complex=True)
log = _unary(U.Log(), "log", "Elementwise natural logarithm.")
log2 = _unary(U.Log2(), "log2", "Elementwise base-2 logarithm.")
log10 = _unary(U.Log10(), "log10", "Elementwise base-10 logarithm.")
log1p = _unary(U.Log1p(), "log1p", "Elementwise ``log(1 + x)``, accurate near 0.")
sin = _unary(U.Sin(), "sin", "Elementwise sine.")
cos = _unary(U.Cos(), "cos", "Elementwise cosine.")
tan = _unary(U.Tan(), "tan", "Elementwise tangent.")
arcsin = _unary(U.ArcSin(), "arcsin", "Elementwise inverse sine.")
arccos = _unary(U.ArcCos(), "arccos", "Elementwise inverse cosine.")
arctan = _unary(U.ArcTan(), "arctan", "Elementwise inverse tangent.")
sinh = _unary(U.Sinh(), "sinh", "Elementwise hyperbolic sine.")
cosh = _unary(U.Cosh(), "cosh", "Elementwise hyperbolic cosine.")
tanh = _unary(U.Tanh(), "tanh", "Elementwise hyperbolic tangent.")
arcsinh = _unary(U.ArcSinh(), "arcsinh", "Elementwise inverse hyperbolic sine.")
arccosh = _unary(U.ArcCosh(), "arccosh", "Elementwise inverse hyperbolic cosine.")
arctanh = _unary(U.ArcTanh(), "arctanh", "Elementwise inverse hyperbolic tangent.")
sigmoid = _unary(U.Sigmoid(), "sigmoid", "Elementwise logistic sigmoid ``1 / (1 + exp(-x))``.",
                 no_complex=True)
erf = _unary(U.Erf(), "erf", "Elementwise error function.", no_complex=True)
erfinv = _unary(U.ErfInv(), "erfinv", "Elementwise inverse of the error function.", no_complex=True)
floor = _unary(U.Floor(), "floor", "Elementwise floor.", to_float=False, no_complex=True)
ceil = _unary(U.Ceil(), "ceil", "Elementwise ceiling.", to_float=False, no_complex=True)
trunc = _unary(U.Trunc(), "trunc", "Elementwise rounding toward zero.", to_float=False, no_complex=True)
degrees = _unary(U.Degrees(), "degrees", "Radians to degrees.")
radians = _unary(U.Radians(), "radians", "Degrees to radians.")
isnan = _unary(U.IsNan(), "isnan", "Elementwise NaN test.", to_float=False)
isinf = _unary(U.IsInf(), "isinf", "Elementwise infinity test.", to_float=False)
isfinite = _unary(U.IsFinite(), "isfinite", "Elementwise finiteness test.", to_float=False)
isposinf = _unary(U.IsPosInf(), "isposinf", "Elementwise test for positive infinity.", to_float=False)
isneginf = _unary(U.IsNegInf(), "isneginf", "Elementwise test for negative infinity.", to_float=False)
logical_not = _unary(U.LogicalNot(), "logical_not", "Elementwise logical not (nonzero is True).",
                     to_float=False)
_conj = _unary(U.Conjugate(), "conj", "", to_float=False)
_real = _unary(U.Real(), "real", "", to_float=False)
_imag = _unary(U.Imag(), "imag", "", to_float=False)
_bitwise_invert = _unary(U.BitwiseInvert(), "bitwise_invert", "", to_float=False)

acos, asin, atan = arccos, arcsin, arctan
acosh, asinh, atanh = arccosh, arcsinh, arctanh


def positive(a, /, *, stream=None) -> array:
    """Elementwise ``+a`` (the input itself).

    Args:
        a: input array.

    Returns:
        ``a``.
    """
    return as_array(a)


def conj(a, *, stream=None) -> array:
    """Elementwise complex conjugate (real inputs are returned as they are).

    Args:
        a: input array.

    Returns:
        The conjugate.
    """
    a = as_array(a)
    return _conj(a, stream=stream) if a._dtype.kind == "c" else a


conjugate = conj


def real(a, /, *, stream=None) -> array:
    """The real part (complex64 gives float32; real inputs are returned as they are).

    Args:
        a: input array.

    Returns:
        The real part.
    """
    a = as_array(a)
    return _real(a, stream=stream) if a._dtype.kind == "c" else a


def imag(a, /, *, stream=None) -> array:
    """The imaginary part (complex64 gives float32; zeros for real inputs).

    Args:
        a: input array.

    Returns:
        The imaginary part.
    """
    a = as_array(a)
    if a._dtype.kind == "c":
        return _imag(a, stream=stream)
    return _make(a._shape, a._dtype, U.Imag(), (a,), _st(a, stream))


def bitwise_invert(a, stream=None) -> array:
    """Elementwise bitwise inversion of an integer or boolean array.

    Args:
        a: input array (or Python scalar).

    Returns:
        ``~a``.
    """
    a = as_array(a)
    if a._dtype.kind in "fc":
        raise ValueError("[bitwise_invert] Bitwise inverse only allowed on integer types.")
    return _bitwise_invert(a, stream=stream)


def _invert_op(a) -> array:
    """``~a``: logical not for bools, bitwise inversion for integers."""
    a = as_array(a)
    if a._dtype.kind in "fc":
        raise ValueError("Floating point types not allowed with bitwise inversion.")
    return _bitwise_invert(a)


def round(a, /, decimals: int = 0, stream=None) -> array:
    """Round half to even to ``decimals`` decimal places.

    Args:
        a: input array.
        decimals: number of decimals (negative rounds to tens, hundreds, ...).

    Returns:
        The rounded array, of ``a``'s dtype.
    """
    if not isinstance(decimals, (int, np.integer)) or isinstance(decimals, bool):
        raise TypeError(f"[round] decimals must be an int, got {type(decimals).__name__}.")
    a = as_array(a)
    prim = U.Round(int(decimals))
    return _make(a._shape, a._dtype, prim, (a,), _st(a, stream))


def nan_to_num(a, nan: float = 0, posinf=None, neginf=None, *, stream=None) -> array:
    """Replace NaN by ``nan`` and infinities by ``posinf``/``neginf``.

    Args:
        a: input array.
        nan: replacement for NaN.
        posinf: replacement for +inf (default: the dtype's largest finite value).
        neginf: replacement for -inf (default: the dtype's lowest finite value).

    Returns:
        The array with non-finite values replaced (non-float inputs unchanged).
    """
    a = as_array(a)
    dt = a._dtype
    if dt.kind == "c":
        raise ValueError(f"[nan_to_num] Does not yet support given type: {dt.name}.")
    if dt.kind != "f":
        return a
    info = _dt.finfo(dt)
    prim = U.NanToNum(float(nan), float(info.max if posinf is None else posinf),
                      float(info.min if neginf is None else neginf))
    return _make(a._shape, dt, prim, (a,), _st(a, stream))


# ---------------------------------------------------------------- binary
def _binary(prim, name, doc, to_float=False, no_complex=None, check=None):
    def op(a, b, /, *, stream=None) -> array:
        a, b, dt = binary_args(a, b, name)
        if check is not None:
            dt = check(name, dt)
            if a._dtype is not dt:
                a, b = astype(a, dt), astype(b, dt)
        elif dt.kind not in "fc":
            if to_float:
                a, b, dt = astype(a, _dt.float32), astype(b, _dt.float32), _dt.float32
        elif dt.kind == "c" and no_complex:
            raise ValueError(no_complex.format(name=name))
        sa, sb = a._shape, b._shape
        shape = sa if sa == sb else broadcast_shapes(sa, sb)
        return _make(shape, prim.out_dtype(dt), prim, (a, b),
                     a._stream if stream is None else get_stream(stream))

    op.__name__ = op.__qualname__ = name
    op.__doc__ = (doc + "\n\n    Args:\n        a: first operand (array or scalar).\n"
                  "        b: second operand (array or scalar).\n\n    Returns:\n        The result array.\n")
    return op


def _integral(name, dt):
    if dt.kind in "fc":
        raise RuntimeError(f"[{name}] Only allowed on integer or boolean types but got types "
                           f"{dt.name} and {dt.name}.")
    return dt


def _integral_shift(name, dt):
    # MLX shifts booleans as uint8.
    return _dt.uint8 if _integral(name, dt) is _dt.bool_ else dt


def _to_bool(name, dt):
    return _dt.bool_


add = _binary(B.Add(), "add", "Elementwise addition with broadcasting.")
subtract = _binary(B.Subtract(), "subtract", "Elementwise subtraction with broadcasting.")
multiply = _binary(B.Multiply(), "multiply", "Elementwise multiplication with broadcasting.")
divide = _binary(B.Divide(), "divide", "Elementwise true division (integers give float32).", to_float=True)
floor_divide = _binary(B.FloorDivide(), "floor_divide", "Elementwise floor division.")
remainder = _binary(B.Remainder(), "remainder",
                    "Elementwise remainder with the sign of the divisor (Python's ``%``).",
                    no_complex="[{name}] Complex type not supported.")
power = _binary(B.Power(), "power", "Elementwise power ``a ** b`` (integers to negative powers give 0).")
maximum = _binary(B.Maximum(), "maximum", "Elementwise maximum (NaN propagates; ties split the gradient).")
minimum = _binary(B.Minimum(), "minimum", "Elementwise minimum (NaN propagates; ties split the gradient).")
arctan2 = _binary(B.ArcTan2(), "arctan2", "Elementwise ``arctan(a / b)`` in the correct quadrant.",
                  to_float=True, no_complex="[{name}] Not supported for complex64.")
logaddexp = _binary(B.LogAddExp(), "logaddexp", "Elementwise ``log(exp(a) + exp(b))``, computed stably.",
                    to_float=True)
equal = _binary(B.Equal(), "equal", "Elementwise ``a == b``.")
not_equal = _binary(B.NotEqual(), "not_equal", "Elementwise ``a != b``.")
less = _binary(B.Less(), "less", "Elementwise ``a < b``.")
less_equal = _binary(B.LessEqual(), "less_equal", "Elementwise ``a <= b``.")
greater = _binary(B.Greater(), "greater", "Elementwise ``a > b``.")
greater_equal = _binary(B.GreaterEqual(), "greater_equal", "Elementwise ``a >= b``.")
logical_and = _binary(B.LogicalAnd(), "logical_and", "Elementwise logical and (nonzero is True).",
                      check=_to_bool)
logical_or = _binary(B.LogicalOr(), "logical_or", "Elementwise logical or (nonzero is True).",
                     check=_to_bool)
logical_xor = _binary(B.LogicalXor(), "logical_xor", "Elementwise logical xor (nonzero is True).",
                      check=_to_bool)
bitwise_and = _binary(B.BitwiseAnd(), "bitwise_and", "Elementwise bitwise and.", check=_integral)
bitwise_or = _binary(B.BitwiseOr(), "bitwise_or", "Elementwise bitwise or.", check=_integral)
bitwise_xor = _binary(B.BitwiseXor(), "bitwise_xor", "Elementwise bitwise xor.", check=_integral)
left_shift = _binary(B.LeftShift(), "left_shift", "Elementwise ``a << b``.", check=_integral_shift)
right_shift = _binary(B.RightShift(), "right_shift", "Elementwise ``a >> b``.", check=_integral_shift)
_equal_nan = _binary(B.EqualNan(), "array_equal", "")

pow = power
atan2 = arctan2
bitwise_left_shift = left_shift
bitwise_right_shift = right_shift

_DIVMOD = B.DivMod()


def divmod(a, b, stream=None) -> list:
    """Elementwise ``(floor_divide(a, b), remainder(a, b))`` in one pass.

    Args:
        a: dividend (array or scalar).
        b: divisor (array or scalar).

    Returns:
        A list of two arrays: the quotients and the remainders.
    """
    a, b, dt = binary_args(a, b, "divmod")
    if dt.kind == "c":
        raise ValueError("[divmod] Complex type not supported.")
    shape = a._shape if a._shape == b._shape else broadcast_shapes(a._shape, b._shape)
    return _make_multi([shape, shape], [dt, dt], _DIVMOD, (a, b), _st(a, stream))


def _and_op(a, b) -> array:
    """``a & b``: logical and for booleans, bitwise and for integers."""
    a, b, dt = binary_args(a, b, "bitwise_and")
    if dt.kind in "fc":
        raise ValueError("Floating point types not allowed with bitwise and.")
    return bitwise_and(a, b)


def _or_op(a, b) -> array:
    """``a | b``: logical or for booleans, bitwise or for integers."""
    a, b, dt = binary_args(a, b, "bitwise_or")
    if dt.kind in "fc":
        raise ValueError("Floating point types not allowed with bitwise or.")
    return bitwise_or(a, b)


def isclose(a, b, /, rtol: float = 1e-05, atol: float = 1e-08, *, equal_nan: bool = False,
            stream=None) -> array:
    """Elementwise ``|a - b| <= atol + rtol * |b|`` (infinities close only to themselves).

    Args:
        a: first array.
        b: second array.
        rtol: relative tolerance.
        atol: absolute tolerance.
        equal_nan: whether two NaNs count as close.

    Returns:
        A boolean array of the broadcast shape.
    """
    a, b, dt = binary_args(a, b, "isclose")
    if dt.kind not in "fc":
        a, b = astype(a, _dt.float32), astype(b, _dt.float32)
    finite = logical_and(isfinite(a), isfinite(b))
    near = less_equal(abs(subtract(a, b)), add(atol, multiply(rtol, abs(b))))
    out = where(finite, near, equal(a, b))
    if equal_nan:
        out = logical_or(out, logical_and(isnan(a), isnan(b)))
    return out


# ---------------------------------------------------------------- selection
_WHERE = T.Where()


def where(condition, x, y, /, *, stream=None) -> array:
    """Elementwise ``x`` where ``condition`` is true, else ``y`` (all three broadcast).

    Args:
        condition: the selector (nonzero is True).
        x: values where the condition holds.
        y: values where it does not.

    Returns:
        An array of the promoted dtype of ``x`` and ``y``.
    """
    c = as_array(condition)
    if c._dtype is not _dt.bool_:
        c = astype(c, _dt.bool_)
    x, y, dt = binary_args(x, y, "where")
    shape = broadcast_shapes(c._shape, x._shape, y._shape)
    return _make(shape, dt, _WHERE, (c, x, y), _st(x, stream))


def clip(a, /, a_min, a_max, *, stream=None) -> array:
    """Values of ``a`` limited to ``[a_min, a_max]``.

    At a value exactly equal to a bound the gradient is split equally
    between ``a`` and the bound (the ``maximum``/``minimum`` convention).

    Args:
        a: input array.
        a_min: lower bound (scalar, array or None).
        a_max: upper bound (scalar, array or None).

    Returns:
        The clipped array.
    """
    if a_min is None and a_max is None:
        raise ValueError("[clip] At most one of a_min and a_max may be None")
    a = as_array(a)
    if a_min is not None:
        a = maximum(a, a_min, stream=stream)
    if a_max is not None:
        a = minimum(a, a_max, stream=stream)
    return a
