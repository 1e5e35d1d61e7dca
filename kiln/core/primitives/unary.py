"""Unary elementwise primitives."""
from __future__ import annotations

import kiln.core as mx

from .base import UnaryElementwise, primitive


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
class Exp(UnaryElementwise):
    expr = "exp({0})"

    def eval(self, xp, x):
        return xp.exp(x)

    def deriv(self, x, y):
        return y


@primitive
class Log(UnaryElementwise):
    expr = "log({0})"

    def eval(self, xp, x):
        return xp.log(x)

    def deriv(self, x, y):
        return 1 / x


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
class Tanh(UnaryElementwise):
    expr = "tanh({0})"

    def eval(self, xp, x):
        return xp.tanh(x)

    def deriv(self, x, y):
        return 1 - y * y
