"""Control primitives: ``Depends`` (ordering without data) and ``CustomTransforms`` (user rules).

``CustomTransforms`` carries a rules object given by the transform that builds it
(``kiln/transforms/custom.py``): its rules differentiate or vectorise the user's function, which
is transform work, so this floor delegates instead of importing a transform. ``Compiled`` (the
node of ``mx.compile``) still lives in ``kiln/transforms/compile.py``, which the compiler issue
splits.
"""
from __future__ import annotations

from kiln.primitives.base import Primitive
from kiln.primitives.base import ops as mx


class CustomTransforms(Primitive):
    """Outputs = the plain function's outputs; rules from a ``custom_function``.

    Inputs are the flattened arguments followed by the plain function's outputs. ``rules`` has
    ``vjp(prim, ...)``, ``jvp(prim, ...)`` and ``vmap(prim, ...)`` with this class's signatures.
    """

    def __init__(self, cf, n_args: int, unflatten_args, n_out: int, out_unflatten, rules=None):
        self.cf = cf
        self.n_args = n_args
        self.unflatten_args = unflatten_args
        self.n_outputs = n_out
        self.out_unflatten = out_unflatten
        self.rules = rules

    def __eq__(self, other):
        return self is other

    def __hash__(self):
        return id(self)

    def eval(self, xp, *bufs):
        return tuple(bufs[self.n_args:])

    def _args(self, leaves):
        return self.unflatten_args(list(leaves))

    def vjp(self, primals, cotangents, argnums, outputs):
        return self.rules.vjp(self, primals, cotangents, argnums, outputs)

    def jvp(self, primals, tangents, argnums, outputs):
        return self.rules.jvp(self, primals, tangents, argnums, outputs)

    def vmap(self, inputs, axes):
        return self.rules.vmap(self, inputs, axes)


class Depends(Primitive):
    """Outputs its first ``n`` inputs unchanged; the rest are dependencies only."""

    def __init__(self, n: int):
        self.n = n
        self.n_outputs = n

    def __eq__(self, other):
        return isinstance(other, Depends) and other.n == self.n

    def __hash__(self):
        return hash(("Depends", self.n))

    def eval(self, xp, *bufs):
        return tuple(bufs[: self.n])

    def vjp(self, primals, cotangents, argnums, outputs):
        return [cotangents[i] if i < self.n else mx.zeros_like(primals[i]) for i in argnums]

    def jvp(self, primals, tangents, argnums, outputs):
        t = {i: tg for i, tg in zip(argnums, tangents)}
        return [t[i] if i in t else mx.zeros_like(primals[i]) for i in range(self.n)]

    def vmap(self, inputs, axes):
        n = self.n
        outs = self.apply_multi(list(inputs), [i.shape for i in inputs[:n]], [i.dtype for i in inputs[:n]])
        return outs, list(axes[:n])

    def output_shapes(self, inputs):
        return [i.shape for i in inputs[: self.n]]
