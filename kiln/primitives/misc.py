"""Primitives that are not arithmetic: casts, copies, stop_gradient, placeholders."""
from __future__ import annotations

from kiln.primitives.base import ops as mx

from kiln.primitives.base import Primitive, UnaryElementwise, primitive


@primitive
class AsType(UnaryElementwise):
    """Cast to ``dtype``. Gradients flow to inexact inputs only."""

    dtype: object = None

    def out_dtype(self, dtype):
        return self.dtype

    @property
    def expr(self):
        return "{0}"  # codegen casts by the node's dtype

    def eval(self, xp, x):
        return x.astype(self.dtype.np)

    def vjp(self, primals, cotangents, argnums, outputs):
        x = primals[0]
        if not x.dtype.is_inexact:
            return [mx.zeros_like(x)]
        return [mx.astype(cotangents[0], x.dtype)]

    def jvp(self, primals, tangents, argnums, outputs):
        if not self.dtype.is_inexact:
            return [mx.zeros(outputs[0].shape, self.dtype)]
        return [mx.astype(tangents[0], self.dtype)]


@primitive
class Copy(UnaryElementwise):
    """The identity. Transformations use it to give an input a fresh node."""

    expr = "{0}"

    def eval(self, xp, x):
        return x

    def vjp(self, primals, cotangents, argnums, outputs):
        return [cotangents[0]]

    def jvp(self, primals, tangents, argnums, outputs):
        return [tangents[0]]


@primitive
class StopGradient(UnaryElementwise):
    """The identity for values; blocks gradients (zero cotangents and tangents)."""

    expr = "{0}"

    def eval(self, xp, x):
        return x

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.zeros_like(primals[0])]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.zeros_like(primals[0])]


@primitive
class Placeholder(Primitive):
    """A data-less input that a transformation traces a function on."""

    transform: str = "vmap"

    def eval(self, xp):
        if self.transform == "vmap":
            raise ValueError(
                "[vmap] Cannot evaluate an array inside a vmapped function: vmap traces the "
                "function on placeholders without data. Return the value from the function "
                "and evaluate it outside vmap instead (no .item(), print or mx.eval inside)."
            )
        raise ValueError(
            f"[{self.transform}] Attempting to eval an array during function transformations like "
            "compile or vmap is not allowed. Return the value from the function and evaluate it "
            "outside, or use mx.disable_compile() while debugging."
        )
