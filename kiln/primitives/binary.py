"""Binary elementwise primitives (inputs of one dtype, NumPy-broadcastable).

Ops promote both operands to one dtype before building a node, so every
``eval`` here sees equal dtypes. ``derivs(x, y, z)`` gives the two partial
derivatives as arrays (or Python numbers) built from public ops; the
``BinaryElementwise`` base turns them into ``vjp``/``jvp`` with
un-broadcasting, and its ``vmap`` aligns batched and unbatched operands.
"""
from __future__ import annotations

from kiln.primitives.base import ops as mx

from kiln.primitives.base import (BinaryElementwise, NonDifferentiableBinary, Primitive, align_batched,
                   broadcast_shapes, primitive, unbroadcast)
from kiln.primitives.unary import _quiet


def _as(mask, dtype):
    """A boolean mask as 0/1 of ``dtype`` (keeps cotangents in the primal dtype)."""
    return mx.astype(mask, dtype)


# ---------------------------------------------------------------- arithmetic
@primitive
class Add(BinaryElementwise):
    expr = "({0} + {1})"

    def eval(self, xp, x, y):
        return xp.add(x, y)

    def derivs(self, x, y, z):
        return 1, 1

    def vjp(self, primals, cotangents, argnums, outputs):
        g = cotangents[0]
        return [unbroadcast(g, primals[i].shape) for i in argnums]

    def jvp(self, primals, tangents, argnums, outputs):
        out = tangents[0] if len(tangents) == 1 else tangents[0] + tangents[1]
        return [mx.broadcast_to(out, outputs[0].shape)]


@primitive
class Subtract(BinaryElementwise):
    expr = "({0} - {1})"

    def eval(self, xp, x, y):
        if x.dtype == xp.bool_:
            return xp.logical_xor(x, y)  # NumPy refuses bool subtraction; MLX gives x != y
        return xp.subtract(x, y)

    def derivs(self, x, y, z):
        return 1, -1


@primitive
class Multiply(BinaryElementwise):
    expr = "({0} * {1})"

    def eval(self, xp, x, y):
        return xp.multiply(x, y)

    def derivs(self, x, y, z):
        return y, x


@primitive
class Divide(BinaryElementwise):
    expr = "({0} / {1})"

    def eval(self, xp, x, y):
        with _quiet(xp):
            return xp.divide(x, y).astype(x.dtype, copy=False)

    def derivs(self, x, y, z):
        return 1 / y, -z / y


@primitive
class FloorDivide(NonDifferentiableBinary):
    expr = None

    def eval(self, xp, x, y):
        return _floor_divide(xp, x, y)


def _floor_divide(xp, x, y):
    with _quiet(xp):
        if x.dtype == xp.bool_:
            return xp.logical_and(x, y)
        if x.dtype.kind in "fc":
            return xp.floor(x / y).astype(x.dtype, copy=False)
        return xp.floor_divide(x, y)


def _remainder(xp, x, y):
    if x.dtype == xp.bool_:
        return xp.logical_and(x, xp.logical_not(y))
    with _quiet(xp):
        r = xp.remainder(x, y)
    if x.dtype.kind in "iu":
        r = xp.where(y == 0, x, r)  # MLX leaves x where the divisor is 0
    return r


@primitive
class Remainder(BinaryElementwise):
    expr = None

    def eval(self, xp, x, y):
        return _remainder(xp, x, y)

    def derivs(self, x, y, z):
        return 1, -mx.floor_divide(x, y)


@primitive
class DivMod(Primitive):
    """Two outputs: ``floor_divide(x, y)`` and ``remainder(x, y)``."""

    n_outputs = 2

    def eval(self, xp, x, y):
        return _floor_divide(xp, x, y), _remainder(xp, x, y)

    def vjp(self, primals, cotangents, argnums, outputs):
        # The quotient is piecewise constant; only the remainder carries gradient.
        x, y = primals
        g = cotangents[1]
        out = []
        for i in argnums:
            d = g if i == 0 else -g * outputs[0]
            out.append(unbroadcast(d, primals[i].shape))
        return out

    def jvp(self, primals, tangents, argnums, outputs):
        q, r = outputs
        t = None
        for ti, i in zip(tangents, argnums):
            term = ti if i == 0 else -ti * q
            t = term if t is None else t + term
        return [mx.zeros(q.shape, q.dtype), mx.broadcast_to(t, r.shape)]

    def vmap(self, inputs, axes):
        xs = align_batched(inputs, axes)
        shape = broadcast_shapes(*(x.shape for x in xs))
        outs = self.apply_multi(xs, [shape, shape], [xs[0].dtype] * 2)
        return outs, [0, 0]

    def output_shapes(self, inputs):
        s = broadcast_shapes(inputs[0].shape, inputs[1].shape)
        return [s, s]


@primitive
class Power(BinaryElementwise):
    expr = None  # numexpr's integer power differs from MLX for negative exponents

    def eval(self, xp, x, y):
        if x.dtype == xp.bool_:
            return xp.logical_or(x, xp.logical_not(y))
        if x.dtype.kind in "iu":
            # MLX: integers to negative powers give 0 (NumPy raises).
            neg = y < 0
            return xp.where(neg, 0, xp.power(x, xp.where(neg, 0, y))).astype(x.dtype, copy=False)
        with _quiet(xp):
            return xp.power(x, y)

    def derivs(self, x, y, z):
        dx = mx.where(y == 0, mx.zeros_like(x), y * mx.power(x, y - 1))
        dy = mx.where(x == 0, mx.zeros_like(x), z * mx.log(mx.where(x == 0, mx.ones_like(x), x)))
        return dx, dy


@primitive
class Maximum(BinaryElementwise):
    """Ties split the gradient equally between the operands (0.5 each)."""

    expr = "where(({0} > {1}) | ({0} != {0}), {0}, {1})"

    def eval(self, xp, x, y):
        return xp.maximum(x, y)

    def derivs(self, x, y, z):
        half = 0.5 * _as(x == y, x.dtype)
        return _as(x > y, x.dtype) + half, _as(y > x, x.dtype) + half


@primitive
class Minimum(BinaryElementwise):
    """Ties split the gradient equally between the operands (0.5 each)."""

    expr = "where(({0} < {1}) | ({0} != {0}), {0}, {1})"

    def eval(self, xp, x, y):
        return xp.minimum(x, y)

    def derivs(self, x, y, z):
        half = 0.5 * _as(x == y, x.dtype)
        return _as(x < y, x.dtype) + half, _as(y < x, x.dtype) + half


@primitive
class ArcTan2(BinaryElementwise):
    expr = "arctan2({0}, {1})"

    def eval(self, xp, x, y):
        return xp.arctan2(x, y)

    def derivs(self, x, y, z):
        r = x * x + y * y
        return y / r, -x / r


@primitive
class LogAddExp(BinaryElementwise):
    expr = None

    def eval(self, xp, x, y):
        with _quiet(xp):
            return xp.logaddexp(x, y)

    def derivs(self, x, y, z):
        return mx.exp(x - z), mx.exp(y - z)


# ---------------------------------------------------------------- comparisons
class _Compare(NonDifferentiableBinary):
    def out_dtype(self, dtype):
        return mx.bool_


@primitive
class Equal(_Compare):
    expr = "({0} == {1})"

    def eval(self, xp, x, y):
        return xp.equal(x, y)


@primitive
class NotEqual(_Compare):
    expr = "({0} != {1})"

    def eval(self, xp, x, y):
        return xp.not_equal(x, y)


@primitive
class Less(_Compare):
    expr = "({0} < {1})"

    def eval(self, xp, x, y):
        return xp.less(x, y)


@primitive
class LessEqual(_Compare):
    expr = "({0} <= {1})"

    def eval(self, xp, x, y):
        return xp.less_equal(x, y)


@primitive
class Greater(_Compare):
    expr = "({0} > {1})"

    def eval(self, xp, x, y):
        return xp.greater(x, y)


@primitive
class GreaterEqual(_Compare):
    expr = "({0} >= {1})"

    def eval(self, xp, x, y):
        return xp.greater_equal(x, y)


@primitive
class EqualNan(_Compare):
    """``x == y`` where two NaNs also count as equal (``array_equal(equal_nan=True)``)."""

    expr = "(({0} == {1}) | (({0} != {0}) & ({1} != {1})))"

    def eval(self, xp, x, y):
        eq = xp.equal(x, y)
        if x.dtype.kind in "fc":
            eq = eq | (xp.isnan(x) & xp.isnan(y))
        return eq


# ---------------------------------------------------------------- logical and bitwise
@primitive
class LogicalAnd(_Compare):
    expr = "({0} & {1})"

    def eval(self, xp, x, y):
        return xp.logical_and(x, y)


@primitive
class LogicalOr(_Compare):
    expr = "({0} | {1})"

    def eval(self, xp, x, y):
        return xp.logical_or(x, y)


@primitive
class LogicalXor(_Compare):
    expr = "({0} != {1})"  # inputs are bools

    def eval(self, xp, x, y):
        return xp.logical_xor(x, y)


@primitive
class BitwiseAnd(NonDifferentiableBinary):
    def eval(self, xp, x, y):
        return xp.bitwise_and(x, y)


@primitive
class BitwiseOr(NonDifferentiableBinary):
    def eval(self, xp, x, y):
        return xp.bitwise_or(x, y)


@primitive
class BitwiseXor(NonDifferentiableBinary):
    def eval(self, xp, x, y):
        return xp.bitwise_xor(x, y)


@primitive
class LeftShift(NonDifferentiableBinary):
    def eval(self, xp, x, y):
        return xp.left_shift(x, y)


@primitive
class RightShift(NonDifferentiableBinary):
    def eval(self, xp, x, y):
        return xp.right_shift(x, y)
