"""Three-input elementwise primitives: ``where`` (select)."""
from __future__ import annotations

from kiln.primitives.base import ops as mx

from kiln.primitives.base import Primitive, align_batched, broadcast_shapes, primitive, unbroadcast


@primitive
class Where(Primitive):
    """``where(c, x, y)``: ``x`` where the boolean ``c`` holds, else ``y``.

    The op passes ``x`` and ``y`` of one dtype and shapes that broadcast
    with ``c``; gradients flow to the selected branch only.
    """

    expr = "where({0}, {1}, {2})"

    def eval(self, xp, c, x, y):
        return xp.where(c, x, y)

    def vjp(self, primals, cotangents, argnums, outputs):
        c, x, y = primals
        g = cotangents[0]
        zero = mx.zeros_like(g)
        out = []
        for i in argnums:
            if i == 0:
                out.append(mx.zeros_like(c))
            elif i == 1:
                out.append(unbroadcast(mx.where(c, g, zero), x.shape))
            else:
                out.append(unbroadcast(mx.where(c, zero, g), y.shape))
        return out

    def jvp(self, primals, tangents, argnums, outputs):
        c, x, y = primals
        z = outputs[0]
        tx = ty = None
        for t, i in zip(tangents, argnums):
            if i == 1:
                tx = t
            elif i == 2:
                ty = t
        if tx is None and ty is None:
            return [mx.zeros(z.shape, z.dtype)]
        zero = mx.zeros((), z.dtype)
        return [mx.broadcast_to(mx.where(c, zero if tx is None else tx, zero if ty is None else ty), z.shape)]

    def vmap(self, inputs, axes):
        xs = align_batched(inputs, axes)
        shape = broadcast_shapes(*(x.shape for x in xs))
        return [self.apply(xs, shape, xs[1].dtype)], [0]

    def output_shapes(self, inputs):
        return [broadcast_shapes(*(x.shape for x in inputs))]
