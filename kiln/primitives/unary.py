"""Unary elementwise primitives: math functions, rounding, predicates, complex parts.

Each class gives ``eval`` with the array namespace ``xp`` and, through
``UnaryElementwise``, its derivative ``deriv(x, y)`` built from public ops;
the family base class turns that into ``vjp``, ``jvp`` and ``vmap``.
``expr`` is a template for compile's fused kernels: NumPy function names and
Python operators over ``{0}`` (None where no kernel should compute it).
"""
from __future__ import annotations

import math

from kiln.primitives.base import ops as mx

from kiln.primitives.base import NonDifferentiableUnary, UnaryElementwise, primitive

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_SQRT_PI = math.sqrt(math.pi)


def _real_dtype(dtype):
    return mx.float32 if dtype == mx.complex64 else dtype


# ---------------------------------------------------------------- sign, abs, powers
@primitive
class Negative(UnaryElementwise):
    expr = "(-{0})"

    def eval(self, xp, x):
        return xp.negative(x)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [-cotangents[0]]

    def jvp(self, primals, tangents, argnums, outputs):
        return [-tangents[0]]


@primitive
class Abs(UnaryElementwise):
    expr = "abs({0})"

    def out_dtype(self, dtype):
        return _real_dtype(dtype)

    def eval(self, xp, x):
        return xp.abs(x)

    def deriv(self, x, y):
        return mx.sign(x)

    # For complex z, d|z| = Re(conj(s) dz) with s = z / |z|: a real tangent, and the adjoint
    # of that map sends a real cotangent g to g * s (not g * conj(s)).
    def vjp(self, primals, cotangents, argnums, outputs):
        x = primals[0]
        if x.dtype.kind == "c":
            return [cotangents[0] * mx.sign(x)]
        return super().vjp(primals, cotangents, argnums, outputs)

    def jvp(self, primals, tangents, argnums, outputs):
        x = primals[0]
        if x.dtype.kind == "c":
            return [mx.real(mx.conj(mx.sign(x)) * tangents[0])]
        return super().jvp(primals, tangents, argnums, outputs)


@primitive
class Sign(NonDifferentiableUnary):
    expr = "sign({0})"

    def eval(self, xp, x):
        if x.dtype == xp.bool_:
            return x
        return xp.sign(x)


@primitive
class Square(UnaryElementwise):
    expr = "({0} * {0})"

    def eval(self, xp, x):
        if x.dtype == xp.bool_:
            return x  # True * True is True, as MLX
        return xp.square(x)

    def deriv(self, x, y):
        return 2 * x


@primitive
class Sqrt(UnaryElementwise):
    expr = "sqrt({0})"

    def eval(self, xp, x):
        return xp.sqrt(x)

    def deriv(self, x, y):
        return 0.5 / y


@primitive
class Rsqrt(UnaryElementwise):
    expr = "(1 / sqrt({0}))"

    def eval(self, xp, x):
        return xp.reciprocal(xp.sqrt(x))

    def deriv(self, x, y):
        return -0.5 * y / x


@primitive
class Reciprocal(UnaryElementwise):
    expr = "(1 / {0})"

    def eval(self, xp, x):
        return xp.reciprocal(x)

    def deriv(self, x, y):
        return -(y * y)


# ---------------------------------------------------------------- exp and log
@primitive
class Exp(UnaryElementwise):
    expr = "exp({0})"

    def eval(self, xp, x):
        return xp.exp(x)

    def deriv(self, x, y):
        return y


@primitive
class Expm1(UnaryElementwise):
    expr = "expm1({0})"

    def eval(self, xp, x):
        return xp.expm1(x)

    def deriv(self, x, y):
        return y + 1


@primitive
class Log(UnaryElementwise):
    expr = "log({0})"

    def eval(self, xp, x):
        return xp.log(x)

    def deriv(self, x, y):
        return 1 / x


@primitive
class Log2(UnaryElementwise):
    expr = "log2({0})"

    def eval(self, xp, x):
        return xp.log2(x)

    def deriv(self, x, y):
        return 1 / (x * _LN2)


@primitive
class Log10(UnaryElementwise):
    expr = "log10({0})"

    def eval(self, xp, x):
        return xp.log10(x)

    def deriv(self, x, y):
        return 1 / (x * _LN10)


@primitive
class Log1p(UnaryElementwise):
    expr = "log1p({0})"

    def eval(self, xp, x):
        return xp.log1p(x)

    def deriv(self, x, y):
        return 1 / (1 + x)


@primitive
class Sigmoid(UnaryElementwise):
    expr = "(1 / (1 + exp(-{0})))"

    def eval(self, xp, x):
        # 1/(1+exp(-x)) overflows harmlessly to 0 for very negative x.
        # Half types compute in float32 and round once, as MLX (1 + exp(-8) is 1 in float16).
        wide = x.astype(xp.float32) if x.dtype.itemsize < 4 and x.dtype.kind != "c" else x
        one = xp.asarray(1, dtype=wide.dtype)
        with _quiet(xp):
            return (one / (one + xp.exp(-wide))).astype(x.dtype, copy=False)

    def deriv(self, x, y):
        return y * (1 - y)


# ---------------------------------------------------------------- trigonometric
@primitive
class Sin(UnaryElementwise):
    expr = "sin({0})"

    def eval(self, xp, x):
        return xp.sin(x)

    def deriv(self, x, y):
        return mx.cos(x)


@primitive
class Cos(UnaryElementwise):
    expr = "cos({0})"

    def eval(self, xp, x):
        return xp.cos(x)

    def deriv(self, x, y):
        return -mx.sin(x)


@primitive
class Tan(UnaryElementwise):
    expr = "tan({0})"

    def eval(self, xp, x):
        return xp.tan(x)

    def deriv(self, x, y):
        return 1 + y * y


@primitive
class ArcSin(UnaryElementwise):
    expr = "arcsin({0})"

    def eval(self, xp, x):
        return xp.arcsin(x)

    def deriv(self, x, y):
        return mx.rsqrt(1 - x * x)


@primitive
class ArcCos(UnaryElementwise):
    expr = "arccos({0})"

    def eval(self, xp, x):
        return xp.arccos(x)

    def deriv(self, x, y):
        return -mx.rsqrt(1 - x * x)


@primitive
class ArcTan(UnaryElementwise):
    expr = "arctan({0})"

    def eval(self, xp, x):
        return xp.arctan(x)

    def deriv(self, x, y):
        return 1 / (1 + x * x)


@primitive
class Sinh(UnaryElementwise):
    expr = "sinh({0})"

    def eval(self, xp, x):
        return xp.sinh(x)

    def deriv(self, x, y):
        return mx.cosh(x)


@primitive
class Cosh(UnaryElementwise):
    expr = "cosh({0})"

    def eval(self, xp, x):
        return xp.cosh(x)

    def deriv(self, x, y):
        return mx.sinh(x)


@primitive
class Tanh(UnaryElementwise):
    expr = "tanh({0})"

    def eval(self, xp, x):
        return xp.tanh(x)

    def deriv(self, x, y):
        return 1 - y * y


@primitive
class ArcSinh(UnaryElementwise):
    expr = "arcsinh({0})"

    def eval(self, xp, x):
        return xp.arcsinh(x)

    def deriv(self, x, y):
        return mx.rsqrt(x * x + 1)


@primitive
class ArcCosh(UnaryElementwise):
    expr = "arccosh({0})"

    def eval(self, xp, x):
        return xp.arccosh(x)

    def deriv(self, x, y):
        return mx.rsqrt(x * x - 1)


@primitive
class ArcTanh(UnaryElementwise):
    expr = "arctanh({0})"

    def eval(self, xp, x):
        return xp.arctanh(x)

    def deriv(self, x, y):
        return 1 / (1 - x * x)


@primitive
class Degrees(UnaryElementwise):
    expr = "({0} * 57.29577951308232)"

    def eval(self, xp, x):
        return xp.degrees(x)

    def deriv(self, x, y):
        return 180.0 / math.pi


@primitive
class Radians(UnaryElementwise):
    expr = "({0} * 0.017453292519943295)"

    def eval(self, xp, x):
        return xp.radians(x)

    def deriv(self, x, y):
        return math.pi / 180.0


# ---------------------------------------------------------------- erf and erfinv
def _quiet(xp):
    """Silence floating-point warnings where the backend can (NumPy)."""
    errstate = getattr(xp, "errstate", None)
    return errstate(all="ignore") if errstate is not None else _NullContext()


class _NullContext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _erf_erfc(xp, x):
    """``(erf(x), erfc(x))`` to nearly full precision of ``x``'s float dtype.

    Small ``|x|`` uses the everywhere-positive series
    ``erf(a) = 2/sqrt(pi) exp(-a^2) sum_n (2a^2)^n a / (2n+1)!!`` (no
    cancellation); large ``|x|`` uses the continued fraction of ``erfc``
    evaluated backwards from a fixed depth. Term counts were chosen against
    ``scipy.special`` (see tests): ~1e-15 relative in float64.
    """
    double = x.dtype == xp.float64
    n_series, n_frac = (30, 40) if double else (22, 24)
    split = 2.0
    a = xp.abs(x)
    small = a < split
    s = xp.where(small, a, 0)
    s2 = 2 * s * s
    term = s
    total = s
    for n in range(1, n_series):
        term = term * s2 / (2 * n + 1)
        total = total + term
    erf_small = _TWO_OVER_SQRT_PI * xp.exp(-s * s) * total
    b = xp.where(small, split, a)
    f = b
    for k in range(n_frac, 0, -1):
        f = b + (k / 2) / f
    with _quiet(xp):
        erfc_large = xp.exp(-b * b) / (_SQRT_PI * f)
    erf_abs = xp.where(small, erf_small, 1 - erfc_large)
    erfc_abs = xp.where(small, 1 - erf_small, erfc_large)
    erf = xp.where(xp.isnan(x), x, xp.where(x < 0, -erf_abs, erf_abs))
    erfc = xp.where(x < 0, 2 - erfc_abs, erfc_abs)
    return erf, erfc


# erf(x) = x P(x^2) / Q(x^2) on |x| <= 3.925 (beyond it float32 erf is +-1): a rational fit made
# for kiln (iteratively reweighted least squares against scipy.special.erf in float64), P of
# degree 6 and Q of degree 5 in x^2. P is scaled by 1 + 1.8e-7 so that the clamp point rounds to
# exactly 1 (the output is clipped to [-1, 1]). Max relative error in float32: ~4.7e-7, in about
# 27 in-place passes (the erfc-fit path it replaces took ~42 allocating passes, ~4x slower).
_ERF_CLAMP = 3.925
_ERF_P = tuple(c * (1 + 1.8e-7) for c in (
    1.1283791692002862, 0.1851198852377924, 0.05425946347123445, 0.0038402666532851167,
    0.0003775140749064479, 4.629847356575337e-06, -1.290603373069464e-08))
_ERF_Q = (1.0, 0.4973916363014614, 0.11388290947677739, 0.015435964983352903,
          0.0013028734664880558, 6.259404930719958e-05)


def _erf_single(xp, x):
    """erf for float32 inputs (computed in float32, in place), ~5e-7 relative; NaN propagates."""
    if x.ndim == 0:  # ufuncs give scalars for 0-d inputs, and scalars take no ``out=``
        return _erf_single(xp, x.reshape(1)).reshape(())
    f = x.dtype.type
    a = xp.clip(x, f(-_ERF_CLAMP), f(_ERF_CLAMP))
    z = a * a
    p = z * f(_ERF_P[-1])
    for c in _ERF_P[-2:0:-1]:
        p += f(c)
        p *= z
    p += f(_ERF_P[0])
    p *= a
    q = z * f(_ERF_Q[-1])
    for c in _ERF_Q[-2:0:-1]:
        q += f(c)
        q *= z
    q += f(1)
    p /= q
    return xp.clip(p, f(-1), f(1), out=p)


def _compute_dtype(xp, x):
    # Half precision inputs are computed in float32 and rounded once.
    return x if x.dtype in (xp.float32, xp.float64) else x.astype(xp.float32)


@primitive
class Erf(UnaryElementwise):
    expr = "erf({0})"

    def eval(self, xp, x):
        c = _compute_dtype(xp, x)
        y = _erf_single(xp, c) if c.dtype == xp.float32 else _erf_erfc(xp, c)[0]
        return y.astype(x.dtype, copy=False)

    def deriv(self, x, y):
        return _TWO_OVER_SQRT_PI * mx.exp(-(x * x))


def _scipy_erfinv():
    """scipy.special.erfinv, or None without SciPy (looked up once)."""
    if "f" not in _SCIPY_ERFINV:
        try:
            from scipy.special import erfinv
        except Exception:  # pragma: no cover
            erfinv = None
        _SCIPY_ERFINV["f"] = erfinv
    return _SCIPY_ERFINV["f"]


_SCIPY_ERFINV: dict = {}


@primitive
class ErfInv(UnaryElementwise):
    expr = None

    def eval(self, xp, x):
        if xp.__name__ == "numpy" and _scipy_erfinv() is not None:
            # SciPy's erfinv is accurate and ~50x cheaper than the Newton
            # loop below (random.normal on millions of values calls this).
            with _quiet(xp):
                return _scipy_erfinv()(x.astype(xp.float64)).astype(x.dtype, copy=False)
        # Newton's residual needs more precision than the result: work in float64.
        y = x.astype(xp.float64)
        with _quiet(xp):
            # Winitzki's closed form (relative error ~2e-3) as the start ...
            w = xp.log((1 - y) * (1 + y))
            c = 2 / (math.pi * 0.147) + w / 2
            r = xp.sqrt(xp.sqrt(c * c - w / 0.147) - c)
            r = xp.where(y < 0, -r, r)
            r = xp.where(xp.isfinite(r), r, 0)
            # ... then Newton steps on erf(r) = y, or on erfc(|r|) = 1 - |y|
            # in the tails where 1 - y would cancel.
            tail = xp.abs(y) > 0.5
            one_minus = 1 - xp.abs(y)
            sign_y = xp.where(y < 0, -1, 1).astype(y.dtype)
            for _ in range(4):
                e, ec = _erf_erfc(xp, xp.abs(r))
                resid = xp.where(tail, sign_y * (one_minus - ec), xp.where(r < 0, -e, e) - y)
                r = r - resid / (_TWO_OVER_SQRT_PI * xp.exp(-r * r))
            r = xp.where(y == 1, xp.inf, xp.where(y == -1, -xp.inf, r))
            r = xp.where(xp.abs(y) > 1, xp.nan, r)
        return r.astype(x.dtype, copy=False)

    def deriv(self, x, y):
        return (_SQRT_PI / 2) * mx.exp(y * y)


# ---------------------------------------------------------------- rounding (zero derivative)
@primitive
class Floor(NonDifferentiableUnary):
    expr = "floor({0})"

    def eval(self, xp, x):
        return xp.floor(x) if x.dtype.kind == "f" else x


@primitive
class Ceil(NonDifferentiableUnary):
    expr = "ceil({0})"

    def eval(self, xp, x):
        return xp.ceil(x) if x.dtype.kind == "f" else x


@primitive
class Trunc(NonDifferentiableUnary):
    expr = "trunc({0})"

    def eval(self, xp, x):
        return xp.trunc(x) if x.dtype.kind == "f" else x


@primitive
class Round(NonDifferentiableUnary):
    """Round half to even at ``decimals`` digits (negative: tens, hundreds...)."""

    decimals: int = 0

    def eval(self, xp, x):
        if x.dtype == xp.bool_ or (x.dtype.kind in "iu" and self.decimals >= 0):
            return x
        return xp.round(x, self.decimals).astype(x.dtype, copy=False)


# ---------------------------------------------------------------- predicates
class _Predicate(NonDifferentiableUnary):
    def out_dtype(self, dtype):
        return mx.bool_


@primitive
class IsNan(_Predicate):
    expr = "({0} != {0})"

    def eval(self, xp, x):
        return xp.isnan(x)


@primitive
class IsInf(_Predicate):
    expr = "isinf({0})"

    def eval(self, xp, x):
        return xp.isinf(x)


@primitive
class IsFinite(_Predicate):
    expr = "isfinite({0})"

    def eval(self, xp, x):
        return xp.isfinite(x)


@primitive
class IsPosInf(_Predicate):
    def eval(self, xp, x):
        # isinf and a sign test: also right for bfloat16, whose NumPy kind is "V".
        return xp.isinf(x) & (x > 0) if x.dtype.kind not in "biu" else xp.zeros(x.shape, dtype=xp.bool_)


@primitive
class IsNegInf(_Predicate):
    def eval(self, xp, x):
        return xp.isinf(x) & (x < 0) if x.dtype.kind not in "biu" else xp.zeros(x.shape, dtype=xp.bool_)


@primitive
class LogicalNot(_Predicate):
    expr = "(not {0})"

    def eval(self, xp, x):
        return xp.logical_not(x)


@primitive
class BitwiseInvert(NonDifferentiableUnary):
    expr = None  # fused kernels take floats and bools only

    def eval(self, xp, x):
        return xp.invert(x)


# ---------------------------------------------------------------- misc
@primitive
class NanToNum(UnaryElementwise):
    """Replace NaN and infinities by finite values (parameters are Python floats)."""

    nan: float = 0.0
    posinf: float = 0.0
    neginf: float = 0.0

    def eval(self, xp, x):
        if x.dtype.kind == "f":
            return xp.nan_to_num(x, nan=self.nan, posinf=self.posinf, neginf=self.neginf)
        # bfloat16 (NumPy kind "V"): nan_to_num does not know it; the same with where.
        def c(v):
            return xp.asarray(v, dtype=x.dtype)
        inf = xp.isinf(x)
        out = xp.where(xp.isnan(x), c(self.nan), x)
        out = xp.where(inf & (x > 0), c(self.posinf), out)
        return xp.where(inf & (x < 0), c(self.neginf), out)

    def deriv(self, x, y):
        return mx.astype(mx.isfinite(x), x.dtype)


@primitive
class Conjugate(UnaryElementwise):
    expr = "conj({0})"

    def eval(self, xp, x):
        return xp.conj(x)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.conj(cotangents[0])]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.conj(tangents[0])]


@primitive
class Real(UnaryElementwise):
    expr = "real({0})"

    def out_dtype(self, dtype):
        return _real_dtype(dtype)

    def eval(self, xp, x):
        return xp.real(x)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.astype(cotangents[0], primals[0].dtype)]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.real(tangents[0])]


@primitive
class Imag(UnaryElementwise):
    expr = "imag({0})"

    def out_dtype(self, dtype):
        return _real_dtype(dtype)

    def eval(self, xp, x):
        if x.dtype.kind != "c":
            return xp.zeros(x.shape, dtype=x.dtype)
        return xp.imag(x)

    def vjp(self, primals, cotangents, argnums, outputs):
        x = primals[0]
        if x.dtype != mx.complex64:
            return [mx.zeros_like(x)]
        # d imag(z) pairs with the imaginary direction: the cotangent is -i * g.
        return [mx.astype(cotangents[0], x.dtype) * complex(0, 1)]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.imag(tangents[0])]
