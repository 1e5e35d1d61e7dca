"""Reductions."""
from __future__ import annotations

import kiln.core as mx

from .base import Reduction, primitive


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
