"""Reductions: sum, prod, max, min, all, any over axes, and argmax/argmin over one axis.

Each reduces the whole set of axes in one ``xp`` call. Ops pass sorted,
non-negative axes and inputs already in the accumulation dtype.
"""
from __future__ import annotations

import dataclasses

from kiln.primitives.base import ops as mx

from kiln.primitives.base import Primitive, Reduction, primitive, to_front


@primitive
class Sum(Reduction):
    axes: tuple = ()
    keepdims: bool = False

    def eval(self, xp, x):
        return xp.sum(x, axis=self.axes, keepdims=self.keepdims, dtype=x.dtype)

    def vjp(self, primals, cotangents, argnums, outputs):
        x = primals[0]
        return [mx.broadcast_to(self.expand_cotangent(cotangents[0], x.shape), x.shape)]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.sum(tangents[0], axis=self.axes, keepdims=self.keepdims)]


def _product_of_others(x, axes):
    """For each entry, the product of the other entries in its reduction group.

    Built from exclusive cumulative products from both sides, so it is exact
    when the group contains zeros (no division by ``x``).
    """
    nd = x.ndim
    rest = [i for i in range(nd) if i not in axes]
    perm = rest + list(axes)
    xt = mx.transpose(x, perm)
    lead = xt.shape[:len(rest)]
    n = 1
    for a in axes:
        n *= x.shape[a]
    flat = mx.reshape(xt, lead + (n,))
    left = mx.cumprod(flat, axis=-1, inclusive=False)
    right = mx.cumprod(flat, axis=-1, inclusive=False, reverse=True)
    others = mx.reshape(left * right, xt.shape)
    inv = [0] * nd
    for i, p in enumerate(perm):
        inv[p] = i
    return mx.transpose(others, inv)


@primitive
class Prod(Reduction):
    axes: tuple = ()
    keepdims: bool = False

    def eval(self, xp, x):
        return xp.prod(x, axis=self.axes, keepdims=self.keepdims, dtype=x.dtype)

    def vjp(self, primals, cotangents, argnums, outputs):
        x = primals[0]
        g = self.expand_cotangent(cotangents[0], x.shape)
        return [g * _product_of_others(x, self.axes)]

    def jvp(self, primals, tangents, argnums, outputs):
        x = primals[0]
        return [mx.sum(tangents[0] * _product_of_others(x, self.axes), axis=self.axes,
                       keepdims=self.keepdims)]


class _Extreme(Reduction):
    """max/min: the gradient is shared equally among the entries equal to the result."""

    def _weights(self, x, y):
        y = self.expand_cotangent(y, x.shape)
        hit = mx.astype(x == y, x.dtype)
        return hit / mx.sum(hit, axis=self.axes, keepdims=True)

    def vjp(self, primals, cotangents, argnums, outputs):
        x = primals[0]
        return [self.expand_cotangent(cotangents[0], x.shape) * self._weights(x, outputs[0])]

    def jvp(self, primals, tangents, argnums, outputs):
        x = primals[0]
        w = self._weights(x, outputs[0])
        return [mx.sum(tangents[0] * w, axis=self.axes, keepdims=self.keepdims)]


@primitive
class Max(_Extreme):
    axes: tuple = ()
    keepdims: bool = False

    def eval(self, xp, x):
        return xp.max(x, axis=self.axes, keepdims=self.keepdims)


@primitive
class Min(_Extreme):
    axes: tuple = ()
    keepdims: bool = False

    def eval(self, xp, x):
        return xp.min(x, axis=self.axes, keepdims=self.keepdims)


class _BoolReduction(Reduction):
    def out_dtype(self, dtype):
        return mx.bool_

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.zeros_like(primals[0])]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.zeros(outputs[0].shape, mx.bool_)]


@primitive
class All(_BoolReduction):
    axes: tuple = ()
    keepdims: bool = False

    def eval(self, xp, x):
        return xp.all(x, axis=self.axes, keepdims=self.keepdims)


@primitive
class Any(_BoolReduction):
    axes: tuple = ()
    keepdims: bool = False

    def eval(self, xp, x):
        return xp.any(x, axis=self.axes, keepdims=self.keepdims)


@primitive
class ArgReduce(Primitive):
    """Index (uint32) of the first maximum (``kind="max"``) or minimum along ``axis``."""

    axis: int = 0
    keepdims: bool = False
    kind: str = "max"

    def _out_shape(self, shape):
        if self.keepdims:
            return tuple(1 if i == self.axis else s for i, s in enumerate(shape))
        return tuple(s for i, s in enumerate(shape) if i != self.axis)

    def eval(self, xp, x):
        f = xp.argmax if self.kind == "max" else xp.argmin
        return f(x, axis=self.axis, keepdims=self.keepdims).astype(xp.uint32)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.zeros_like(primals[0])]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.zeros(outputs[0].shape, mx.uint32)]

    def vmap(self, inputs, axes):
        x = to_front(inputs[0], axes[0])
        prim = dataclasses.replace(self, axis=self.axis + 1)
        return [prim.apply([x], prim._out_shape(x.shape), mx.uint32)], [0]

    def output_shapes(self, inputs):
        return [self._out_shape(inputs[0].shape)]
