"""``SearchSorted``: insertion indices of values into a sorted 1-D sequence."""
from __future__ import annotations

from kiln.primitives.base import Primitive, primitive
from kiln.primitives.base import ops as mx


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
        if ax_a is not None:
            # As MLX: a batch of sequences is refused (each row would need its own search).
            raise ValueError("[searchsorted] Cannot vmap over the sorted sequence, only over the values "
                             "being searched for.")
        return [self.apply([a, v], v.shape, mx.uint32)], [ax_v]

    def output_shapes(self, inputs):
        return [inputs[1].shape]
