"""Binary elementwise primitives (inputs of one dtype, NumPy-broadcastable)."""
from __future__ import annotations

from .base import BinaryElementwise, primitive


@primitive
class Add(BinaryElementwise):
    expr = "({0} + {1})"

    def eval(self, xp, x, y):
        return xp.add(x, y)

    def derivs(self, x, y, z):
        return 1, 1

    def vjp(self, primals, cotangents, argnums, outputs):
        from .base import unbroadcast

        g = cotangents[0]
        return [unbroadcast(g, primals[i].shape) for i in argnums]


@primitive
class Subtract(BinaryElementwise):
    expr = "({0} - {1})"

    def eval(self, xp, x, y):
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
        return xp.divide(x, y).astype(x.dtype, copy=False)

    def derivs(self, x, y, z):
        return 1 / y, -z / y
