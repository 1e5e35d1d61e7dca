"""``Compiled``: the one primitive a compiled call builds, with rules that replay the traced graph."""
from __future__ import annotations

from kiln.primitives.base import Primitive


class Compiled(Primitive):
    """One call of a compiled function: many outputs, computed by a replay plan.

    Equality is identity (one instance per plan, or per call where the call
    donates state buffers). The transformation rules
    replay the traced graph with ordinary ops and transform that.
    """

    def __init__(self, plan):
        self.plan = plan
        self.n_outputs = len(plan.outputs)
        self.donated = frozenset()  # per call: state inputs whose buffers kernels may overwrite

    def __repr__(self) -> str:
        return f"Compiled({self.plan.name})"

    def eval(self, xp, *bufs):
        return self.plan.run(xp, bufs, self.donated)

    def _partial(self, primals, argnums):
        plan = self.plan

        def fun(*diff):
            full = list(primals)
            for i, d in zip(argnums, diff):
                full[i] = d
            return plan.graph(full)

        return fun

    def vjp(self, primals, cotangents, argnums, outputs):
        import kiln.ops as ops  # zeros for missing cotangents
        import kiln.transforms as mx  # vjp/jvp/vmap, siblings on this floor

        cots = [ops.zeros(o.shape, o.dtype) if c is None else c for c, o in zip(cotangents, outputs)]
        _, grads = mx.vjp(self._partial(primals, argnums), [primals[i] for i in argnums], cots)
        return list(grads)

    def jvp(self, primals, tangents, argnums, outputs):
        import kiln.transforms as mx  # vjp/jvp/vmap, siblings on this floor

        _, tans = mx.jvp(self._partial(primals, argnums), [primals[i] for i in argnums], list(tangents))
        return list(tans)

    def vmap(self, inputs, axes):
        import kiln.transforms as mx  # vjp/jvp/vmap, siblings on this floor

        plan = self.plan
        outs = mx.vmap(lambda *xs: plan.graph(list(xs)), in_axes=tuple(axes))(*inputs)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        return outs, [0] * len(outs)

    def output_shapes(self, inputs):
        return [o.shape for o in self.plan.graph(list(inputs))]
