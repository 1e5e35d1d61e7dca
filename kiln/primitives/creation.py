"""Primitives whose values come from another array's shape alone: fills shaped like an input and
the element count of a reduction. They keep shapeless ``compile`` exact, because their output
follows the input's shape on every replay instead of a shape frozen while tracing."""
from __future__ import annotations

from kiln.primitives.base import ops as mx

from kiln.primitives.base import Primitive, primitive


@primitive
class FullLike(Primitive):
    """An array of the input's shape filled with the scalar ``value`` as ``dtype``.

    The input's values are never read; only its shape. Derivatives are zero.
    """

    value: object = 0
    dtype: object = None

    def eval(self, xp, x):
        return xp.full(x.shape, self.value, dtype=self.dtype.np)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.zeros_like(primals[0])]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.zeros_like(outputs[0])]

    def vmap(self, inputs, axes):
        x = inputs[0]
        return [self.apply([x], x.shape, self.dtype)], [axes[0]]

    def output_shapes(self, inputs):
        return [inputs[0].shape]


@primitive
class NumberOfElements(Primitive):
    """The product of the input's sizes over ``axes`` (or its reciprocal), a 0-d ``dtype`` array.

    ``mean`` and ``var`` divide by it so that the divisor follows the input's shape.
    """

    axes: tuple = ()
    inverted: bool = False
    dtype: object = None

    def _count(self, shape) -> int:
        n = 1
        for ax in self.axes:
            n *= shape[ax]
        return n

    def eval(self, xp, x):
        n = self._count(x.shape)
        v = (1.0 / n if n else float("inf")) if self.inverted else n
        return xp.asarray(v, dtype=self.dtype.np)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.zeros_like(primals[0])]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.zeros_like(outputs[0])]

    def vmap(self, inputs, axes):
        x = inputs[0]
        ax = axes[0]
        # The batch axis is not counted: shift the counted axes past it.
        shifted = tuple(a + 1 if a >= ax else a for a in self.axes)
        out = NumberOfElements(shifted, self.inverted, self.dtype).apply([x], (), self.dtype)
        return [out], [None]

    def output_shapes(self, inputs):
        return [()]
