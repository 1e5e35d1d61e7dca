"""Sorting and selection primitives: sort, argsort, partition, top-k, and the
gather/scatter pair their gradients are routed through.

``TakeAlongAxis`` and ``ScatterAddAlongAxis`` are private here (the public
``take_along_axis``/``put_along_axis`` belong to the indexing ops); they are
each other's transpose, so the gradients of sort, partition, top-k and
cummax/cummin are exact to any order. Ties: the gradient goes to the element
a stable sort (or NumPy's selection) puts in that position.
"""
from __future__ import annotations

import dataclasses

from kiln.primitives.base import ops as mx

from kiln.primitives.base import Primitive, primitive, to_front


def _index_dtype():
    return mx.uint32


def _batched_pair(inputs, axes):
    """Both inputs with the batch at axis 0; an unbatched one is broadcast."""
    x, idx = inputs
    ax, ai = axes
    n = x.shape[ax] if ax is not None else idx.shape[ai]
    x = to_front(x, ax) if ax is not None else mx.broadcast_to(mx.expand_dims(x, 0), (n,) + x.shape)
    idx = to_front(idx, ai) if ai is not None else mx.broadcast_to(mx.expand_dims(idx, 0), (n,) + idx.shape)
    return x, idx


def take_along(x, idx, axis: int):
    """``x`` gathered at integer ``idx`` along ``axis`` (shapes equal except on ``axis``)."""
    return TakeAlongAxis(axis).apply([x, idx], idx.shape, x.dtype)


def scatter_add_along(updates, idx, axis: int, shape: tuple):
    """Zeros of ``shape`` with ``updates`` added at ``idx`` along ``axis``."""
    return ScatterAddAlongAxis(axis, tuple(shape)).apply([updates, idx], shape, updates.dtype)


@primitive
class TakeAlongAxis(Primitive):
    axis: int = 0

    def eval(self, xp, x, idx):
        return xp.take_along_axis(x, idx.astype(xp.intp, copy=False), axis=self.axis)

    def vjp(self, primals, cotangents, argnums, outputs):
        x, idx = primals
        out = []
        for i in argnums:
            if i == 0:
                out.append(scatter_add_along(cotangents[0], idx, self.axis, x.shape))
            else:
                out.append(mx.zeros_like(idx))
        return out

    def jvp(self, primals, tangents, argnums, outputs):
        for t, i in zip(tangents, argnums):
            if i == 0:
                return [take_along(t, primals[1], self.axis)]
        return [mx.zeros(outputs[0].shape, outputs[0].dtype)]

    def vmap(self, inputs, axes):
        x, idx = _batched_pair(inputs, axes)
        return [take_along(x, idx, self.axis + 1)], [0]

    def output_shapes(self, inputs):
        return [inputs[1].shape]


@primitive
class ScatterAddAlongAxis(Primitive):
    """Zeros of ``shape`` plus ``updates`` accumulated at ``idx`` along ``axis``."""

    axis: int = 0
    shape: tuple = ()

    def eval(self, xp, updates, idx):
        out = xp.zeros(self.shape, dtype=updates.dtype)
        # Index grids for every axis but ``axis``, which takes ``idx``.
        nd = idx.ndim
        where = []
        for d in range(nd):
            if d == self.axis:
                where.append(idx.astype(xp.intp, copy=False))
            else:
                shp = [1] * nd
                shp[d] = idx.shape[d]
                where.append(xp.arange(idx.shape[d]).reshape(shp))
        xp.add.at(out, tuple(where), updates)
        return out

    def vjp(self, primals, cotangents, argnums, outputs):
        u, idx = primals
        out = []
        for i in argnums:
            out.append(take_along(cotangents[0], idx, self.axis) if i == 0 else mx.zeros_like(idx))
        return out

    def jvp(self, primals, tangents, argnums, outputs):
        for t, i in zip(tangents, argnums):
            if i == 0:
                return [scatter_add_along(t, primals[1], self.axis, self.shape)]
        return [mx.zeros(outputs[0].shape, outputs[0].dtype)]

    def vmap(self, inputs, axes):
        u, idx = _batched_pair(inputs, axes)
        shape = (u.shape[0],) + self.shape
        return [scatter_add_along(u, idx, self.axis + 1, shape)], [0]

    def output_shapes(self, inputs):
        return [self.shape]


class _AlongAxis(Primitive):
    """Single-axis primitives: vmap moves the batch to the front and shifts ``axis``."""

    def vmap(self, inputs, axes):
        x = to_front(inputs[0], axes[0])
        prim = dataclasses.replace(self, axis=self.axis + 1)
        shape = prim.output_shapes([x])[0]
        return [prim.apply([x], shape, self._out_dtype(x.dtype))], [0]

    def _out_dtype(self, dtype):
        return dtype

    def output_shapes(self, inputs):
        return [inputs[0].shape]


class _IndexOutput(_AlongAxis):
    """Integer outputs: no gradient."""

    def _out_dtype(self, dtype):
        return _index_dtype()

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.zeros_like(primals[0])]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.zeros(outputs[0].shape, outputs[0].dtype)]


def _stable_argsort(xp, x, axis):
    return xp.argsort(x, axis=axis, kind="stable")


@primitive
class ArgSort(_IndexOutput):
    axis: int = 0

    def eval(self, xp, x):
        return _stable_argsort(xp, x, self.axis).astype(xp.uint32)


@primitive
class Sort(_AlongAxis):
    axis: int = 0

    def eval(self, xp, x):
        return xp.sort(x, axis=self.axis, kind="stable")

    def _perm(self, x):
        return ArgSort(self.axis).apply([x], x.shape, _index_dtype())

    def vjp(self, primals, cotangents, argnums, outputs):
        x = primals[0]
        return [scatter_add_along(cotangents[0], self._perm(x), self.axis, x.shape)]

    def jvp(self, primals, tangents, argnums, outputs):
        return [take_along(tangents[0], self._perm(primals[0]), self.axis)]


@primitive
class ArgPartition(_IndexOutput):
    kth: int = 0
    axis: int = 0

    def eval(self, xp, x):
        return xp.argpartition(x, self.kth, axis=self.axis).astype(xp.uint32)


@primitive
class Partition(_AlongAxis):
    """Values of ``x`` reordered by ``argpartition`` (so the gradient's permutation
    is exactly the one the forward used)."""

    kth: int = 0
    axis: int = 0

    def eval(self, xp, x):
        return xp.take_along_axis(x, xp.argpartition(x, self.kth, axis=self.axis), axis=self.axis)

    def _perm(self, x):
        return ArgPartition(self.kth, self.axis).apply([x], x.shape, _index_dtype())

    def vjp(self, primals, cotangents, argnums, outputs):
        x = primals[0]
        return [scatter_add_along(cotangents[0], self._perm(x), self.axis, x.shape)]

    def jvp(self, primals, tangents, argnums, outputs):
        return [take_along(tangents[0], self._perm(primals[0]), self.axis)]


def _topk_indices(xp, x, k, axis):
    n = x.shape[axis]
    idx = xp.argpartition(x, n - k, axis=axis) if 0 < k < n else xp.argsort(x, axis=axis, kind="stable")
    sl = [slice(None)] * x.ndim
    sl[axis] = slice(n - k, n)
    return idx[tuple(sl)]


def _topk_shape(shape, k, axis):
    return tuple(k if d == axis else s for d, s in enumerate(shape))


@primitive
class ArgTopK(_IndexOutput):
    """Indices of the ``k`` largest entries along ``axis`` (in selection order)."""

    k: int = 1
    axis: int = 0

    def eval(self, xp, x):
        return _topk_indices(xp, x, self.k, self.axis).astype(xp.uint32)

    def output_shapes(self, inputs):
        return [_topk_shape(inputs[0].shape, self.k, self.axis)]


@primitive
class TopK(_AlongAxis):
    k: int = 1
    axis: int = 0

    def eval(self, xp, x):
        return xp.take_along_axis(x, _topk_indices(xp, x, self.k, self.axis), axis=self.axis)

    def _idx(self, x):
        return ArgTopK(self.k, self.axis).apply([x], _topk_shape(x.shape, self.k, self.axis), _index_dtype())

    def vjp(self, primals, cotangents, argnums, outputs):
        x = primals[0]
        return [scatter_add_along(cotangents[0], self._idx(x), self.axis, x.shape)]

    def jvp(self, primals, tangents, argnums, outputs):
        return [take_along(tangents[0], self._idx(primals[0]), self.axis)]

    def output_shapes(self, inputs):
        return [_topk_shape(inputs[0].shape, self.k, self.axis)]
