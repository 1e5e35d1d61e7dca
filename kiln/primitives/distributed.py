"""Communication primitives: all-reduce, all-gather, sum-scatter, send, recv.

Each holds the group it talks on. Equality is identity, so ``compile`` never
merges two communications into one (every application is its own message).
The rules follow from the whole program being the sum over ranks: the VJP of
``all_sum`` is ``all_sum`` of the cotangent, that of ``all_gather`` is this
rank's slice of a ``sum_scatter`` and the other way round; ``all_max`` and
``all_min`` route the summed cotangent to the ranks holding the extreme
(shared equally on ties). ``send``'s output is its input; ``recv`` brings a
constant (no gradient flows between processes).
"""
from __future__ import annotations

import dataclasses

from kiln.primitives.base import Primitive, to_front
from kiln.primitives.base import ops as mx  # the ops floor, looked up at rule time

__all__ = ["AllReduce", "AllGather", "SumScatter", "Send", "Recv"]


def _collective(cls):
    return dataclasses.dataclass(eq=False, repr=True)(cls)


def _node(prim, x):
    # Rules build the collective's node directly: the validating ops (kiln/distributed/ops.py)
    # sit on a floor above, and a rule's group is already resolved and larger than one.
    return prim.apply([x], prim.output_shapes([x])[0], x.dtype)


@_collective
class AllReduce(Primitive):
    op: str  # "sum", "max" or "min"
    group: object

    def eval(self, xp, x):
        return self.group._comm.all_reduce(xp, x, self.op)

    def _share(self, x, y):
        """Per-element weight of this rank in the extreme (1/ties where it holds it)."""
        hit = (x == y).astype(x.dtype)
        return hit / _node(AllReduce("sum", self.group), hit)

    def vjp(self, primals, cotangents, argnums, outputs):
        g = _node(AllReduce("sum", self.group), cotangents[0])
        if self.op == "sum":
            return [g]
        return [g * self._share(primals[0], outputs[0])]

    def jvp(self, primals, tangents, argnums, outputs):
        t = tangents[0]
        if self.op == "sum":
            return [_node(AllReduce("sum", self.group), t)]
        return [_node(AllReduce("sum", self.group), t * self._share(primals[0], outputs[0]))]

    def vmap(self, inputs, axes):
        x = inputs[0]
        return [self.apply([x], x.shape, x.dtype)], [axes[0]]

    def output_shapes(self, inputs):
        return [inputs[0].shape]


def _gathered_shape(shape, n):
    return (n * shape[0],) + tuple(shape[1:]) if shape else (n,)


@_collective
class AllGather(Primitive):
    group: object

    def eval(self, xp, x):
        return self.group._comm.all_gather(xp, x)

    def vjp(self, primals, cotangents, argnums, outputs):
        g = _node(SumScatter(self.group), cotangents[0])
        return [mx.reshape(g, primals[0].shape)]

    def jvp(self, primals, tangents, argnums, outputs):
        return [_node(AllGather(self.group), tangents[0])]

    def vmap(self, inputs, axes):
        # Gather along the first per-example axis: put the batch behind it.
        x = to_front(inputs[0], axes[0])
        if x.ndim == 1:
            x = mx.reshape(x, (1,) + x.shape)
        else:
            x = mx.swapaxes(x, 0, 1)
        return [_node(AllGather(self.group), x)], [1]

    def output_shapes(self, inputs):
        return [_gathered_shape(inputs[0].shape, self.group.size())]


@_collective
class SumScatter(Primitive):
    group: object

    def eval(self, xp, x):
        return self.group._comm.sum_scatter(xp, x)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [_node(AllGather(self.group), cotangents[0])]

    def jvp(self, primals, tangents, argnums, outputs):
        return [_node(SumScatter(self.group), tangents[0])]

    def vmap(self, inputs, axes):
        x = mx.swapaxes(to_front(inputs[0], axes[0]), 0, 1)
        return [_node(SumScatter(self.group), x)], [1]

    def output_shapes(self, inputs):
        s = inputs[0].shape
        return [(s[0] // self.group.size(),) + tuple(s[1:])]


@_collective
class Send(Primitive):
    dst: int
    group: object

    def eval(self, xp, x):
        self.group._comm.send(xp, x, self.dst)
        return x.view()  # the output is the input (a view: its bytes are not counted twice)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [cotangents[0]]

    def jvp(self, primals, tangents, argnums, outputs):
        return [tangents[0]]

    def vmap(self, inputs, axes):
        # The batch goes first so that a vmapped recv_like on the other side
        # receives the same layout.
        x = to_front(inputs[0], axes[0])
        return [Send(self.dst, self.group).apply([x], x.shape, x.dtype)], [0]

    def output_shapes(self, inputs):
        return [inputs[0].shape]


@_collective
class Recv(Primitive):
    shape: tuple
    dtype: object
    src: int
    group: object

    # Inputs, if any, only order the receive after them (recv_like's array),
    # so that under compile it runs on every call rather than once.
    def eval(self, xp, *deps):
        return self.group._comm.recv(xp, self.shape, self.dtype.np, self.src)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.zeros_like(primals[i]) for i in argnums]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.zeros(self.shape, self.dtype)]

    def vmap(self, inputs, axes):
        n = next(x.shape[a] for x, a in zip(inputs, axes) if a is not None)
        prim = Recv((n,) + tuple(self.shape), self.dtype, self.src, self.group)
        return [prim.apply(inputs, prim.shape, self.dtype)], [0]

    def output_shapes(self, inputs):
        return [self.shape]
