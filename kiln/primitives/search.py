"""``SearchSorted``: insertion indices of values into a sorted 1-D sequence."""
from __future__ import annotations

import kiln.core as mx
from kiln.core.primitives.base import Primitive, primitive, to_front


@primitive
class SearchSorted(Primitive):
    """Inputs ``(sorted_sequence, values)`` of one dtype; output uint32 of ``values``' shape.

    ``right`` selects ``side="right"`` (count of elements <= value) over
    ``"left"`` (count of elements < value). NaNs sort last, as in NumPy and MLX.
    """

    right: bool = False

    def eval(self, xp, a, v):
        side = "right" if self.right else "left"
        return xp.searchsorted(a, v.reshape(-1), side=side).reshape(v.shape).astype(xp.uint32)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.zeros_like(primals[i]) for i in argnums]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.zeros(outputs[0].shape, mx.uint32)]

    def vmap(self, inputs, axes):
        a, v = inputs
        ax_a, ax_v = axes
        if ax_a is None:
            return [self.apply([a, v], v.shape, mx.uint32)], [ax_v]
        # A batch of sequences: count by comparison (each row has its own sequence).
        a = to_front(a, ax_a)
        v = to_front(v, ax_v) if ax_v is not None else mx.broadcast_to(v, (a.shape[0],) + v.shape)
        rows = mx.reshape(a, (a.shape[0],) + (1,) * (v.ndim - 1) + (a.shape[1],))
        cmp = mx.less_equal if self.right else mx.less
        # NaN in the sequence sorts last: it is never "less than" a value.
        return [mx.sum(cmp(rows, mx.expand_dims(v, -1)), axis=-1).astype(mx.uint32)], [0]

    def output_shapes(self, inputs):
        return [inputs[1].shape]
