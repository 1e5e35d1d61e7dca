"""Shape primitives: reshape, transpose, broadcast and friends."""
from __future__ import annotations

import kiln.core as mx

from .base import Primitive, primitive, to_front, unbroadcast


@primitive
class Reshape(Primitive):
    shape: tuple = ()

    def eval(self, xp, x):
        return xp.reshape(x, self.shape)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.reshape(cotangents[0], primals[0].shape)]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.reshape(tangents[0], self.shape)]

    def vmap(self, inputs, axes):
        x = to_front(inputs[0], axes[0])
        return [mx.reshape(x, (x.shape[0],) + self.shape)], [0]

    def output_shapes(self, inputs):
        return [self.shape]


@primitive
class Transpose(Primitive):
    axes: tuple = ()

    def eval(self, xp, x):
        return xp.transpose(x, self.axes)

    def vjp(self, primals, cotangents, argnums, outputs):
        inv = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inv[a] = i
        return [mx.transpose(cotangents[0], inv)]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.transpose(tangents[0], self.axes)]

    def vmap(self, inputs, axes):
        x = to_front(inputs[0], axes[0])
        return [mx.transpose(x, (0,) + tuple(a + 1 for a in self.axes))], [0]

    def output_shapes(self, inputs):
        s = inputs[0].shape
        return [tuple(s[a] for a in self.axes)]


@primitive
class BroadcastTo(Primitive):
    shape: tuple = ()

    def eval(self, xp, x):
        return xp.broadcast_to(x, self.shape)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [unbroadcast(cotangents[0], primals[0].shape)]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.broadcast_to(tangents[0], self.shape)]

    def vmap(self, inputs, axes):
        x = to_front(inputs[0], axes[0])
        n = len(self.shape) - (x.ndim - 1)
        if n > 0:
            x = mx.reshape(x, (x.shape[0],) + (1,) * n + x.shape[1:])
        return [mx.broadcast_to(x, (x.shape[0],) + self.shape)], [0]

    def output_shapes(self, inputs):
        return [self.shape]
