"""Indexing primitives: static slices, gathers and scatters.

* ``Slice`` / ``SliceUpdate``: a strided box of the input (basic indexing).
* ``Gather`` / ``Scatter``: NumPy advanced indexing over ``axes`` with index
  arrays of one common shape. The output (and the update of a scatter) uses
  NumPy's layout for ``x[i0, :, i1]``-style tuples: the index dimensions
  replace the indexed axes in place when ``axes`` are consecutive, and go
  first otherwise.
* ``GatherAxis`` / ``ScatterAxis``: ``take_along_axis`` / ``put_along_axis``.

The ``gather``/``scatter``/... functions at the bottom build nodes of these
primitives without validation; ops and rules use them.
"""
from __future__ import annotations

from kiln.primitives.base import ops as mx

from kiln.primitives.base import Primitive, batch_size, broadcast_shapes, primitive, to_front

SCATTER_MODES = ("set", "add", "prod", "max", "min")


# ---------------------------------------------------------------- layout helpers
def consecutive(axes: tuple) -> bool:
    """Whether sorted ``axes`` form one run (NumPy keeps the index dims in place)."""
    return axes[-1] - axes[0] == len(axes) - 1


def gather_shape(xshape: tuple, axes: tuple, ishape: tuple) -> tuple:
    """Output shape of ``Gather(axes)`` on ``xshape`` with indices of ``ishape``."""
    rest = tuple(s for d, s in enumerate(xshape) if d not in axes)
    if consecutive(axes):
        p = axes[0]
        return rest[:p] + tuple(ishape) + rest[p:]
    return tuple(ishape) + rest


def gather_pos(axes: tuple) -> int:
    """Where the index dimensions start in a gather's output."""
    return axes[0] if consecutive(axes) else 0


def _index_tuple(axes, idx, ndim):
    it = iter(idx)
    return tuple(next(it) if d in axes else slice(None) for d in range(ndim))


def _slice_tuple(start, stop, strides):
    # A negative stop with a negative stride means "run to the beginning".
    return tuple(slice(b, None if e < 0 else e, s) for b, e, s in zip(start, stop, strides))


def slice_shape(start, stop, strides) -> tuple:
    return tuple(len(range(b, e, s)) for b, e, s in zip(start, stop, strides))


def _idx_batch(idx, bi, B):
    """Index arrays with the batch at the front, broadcast to one shape."""
    fronted = [to_front(i, b) for i, b in zip(idx, bi)]
    shape = (B,) + tuple(broadcast_shapes(*[
        f.shape[1:] if b is not None else f.shape for f, b in zip(fronted, bi)]))
    out = []
    for f, b in zip(fronted, bi):
        if b is None:
            f = mx.reshape(f, (1,) + f.shape)
        out.append(mx.broadcast_to(f, shape))
    return out


def _front_or_broadcast(x, b, B):
    if b is not None:
        return to_front(x, b)
    return mx.broadcast_to(mx.reshape(x, (1,) + x.shape), (B,) + x.shape)


def _batch_index(B, ishape):
    """``arange(B)`` shaped to broadcast over ``(B,) + ishape``."""
    r = mx.reshape(mx.arange(B, dtype=mx.int32), (B,) + (1,) * len(ishape))
    return mx.broadcast_to(r, (B,) + tuple(ishape))


def _tangent(tangents, argnums, k, like):
    """The tangent of input ``k`` (zeros where it has none)."""
    for t, i in zip(tangents, argnums):
        if i == k:
            return t
    return mx.zeros(like.shape, like.dtype)


# ---------------------------------------------------------------- slices
@primitive
class Slice(Primitive):
    """``x[b0:e0:s0, b1:e1:s1, ...]`` with bounds normalised by ``slice.indices``."""

    start: tuple = ()
    stop: tuple = ()
    strides: tuple = ()

    def eval(self, xp, x):
        return x[_slice_tuple(self.start, self.stop, self.strides)]

    def vjp(self, primals, cotangents, argnums, outputs):
        x = primals[0]
        return [slice_update(mx.zeros(x.shape, cotangents[0].dtype), cotangents[0], self)]

    def jvp(self, primals, tangents, argnums, outputs):
        return [slice_(tangents[0], self)]

    def vmap(self, inputs, axes):
        x = to_front(inputs[0], axes[0])
        prim = Slice((0,) + self.start, (x.shape[0],) + self.stop, (1,) + self.strides)
        return [slice_(x, prim)], [0]

    def output_shapes(self, inputs):
        return [slice_shape(self.start, self.stop, self.strides)]


@primitive
class SliceUpdate(Primitive):
    """``x`` with the box ``x[start:stop:strides]`` replaced by ``update``."""

    start: tuple = ()
    stop: tuple = ()
    strides: tuple = ()

    def eval(self, xp, x, u):
        out = x.copy()
        out[_slice_tuple(self.start, self.stop, self.strides)] = u
        return out

    def _box(self):
        return Slice(self.start, self.stop, self.strides)

    def vjp(self, primals, cotangents, argnums, outputs):
        g = cotangents[0]
        u = primals[1]
        out = []
        for i in argnums:
            if i == 0:
                out.append(slice_update(g, mx.zeros(u.shape, g.dtype), self._box()))
            else:
                out.append(slice_(g, self._box()))
        return out

    def jvp(self, primals, tangents, argnums, outputs):
        x, u = primals
        tx = _tangent(tangents, argnums, 0, x)
        tu = _tangent(tangents, argnums, 1, u)
        return [slice_update(tx, tu, self._box())]

    def vmap(self, inputs, axes):
        B = batch_size(inputs, axes)
        x = _front_or_broadcast(inputs[0], axes[0], B)
        u = _front_or_broadcast(inputs[1], axes[1], B)
        box = Slice((0,) + self.start, (B,) + self.stop, (1,) + self.strides)
        return [slice_update(x, u, box)], [0]

    def output_shapes(self, inputs):
        return [inputs[0].shape]


# ---------------------------------------------------------------- gather / scatter
@primitive
class Gather(Primitive):
    """``x[..., i0, ..., i1, ...]``: inputs ``(x, *indices)``, one index per axis in ``axes``."""

    axes: tuple = ()

    def eval(self, xp, x, *idx):
        if len(idx) == 1:
            a = self.axes[0]
            return xp.take(x, idx[0], axis=a)
        return x[_index_tuple(self.axes, idx, x.ndim)]

    def vjp(self, primals, cotangents, argnums, outputs):
        x, *idx = primals
        out = []
        for i in argnums:
            if i == 0:
                g = cotangents[0]
                out.append(scatter(mx.zeros(x.shape, g.dtype), g, idx, self.axes, "add"))
            else:
                out.append(mx.zeros_like(primals[i]))
        return out

    def jvp(self, primals, tangents, argnums, outputs):
        return [gather(tangents[0], primals[1:], self.axes)]

    def vmap(self, inputs, axes):
        x, *idx = inputs
        bx, *bi = axes
        if all(b is None for b in bi):
            x = to_front(x, bx)
            out = gather(x, idx, tuple(a + 1 for a in self.axes))
            return [out], [0 if consecutive(self.axes) else idx[0].ndim]
        B = batch_size(inputs, axes)
        idx = _idx_batch(idx, bi, B)
        if bx is None:
            return [gather(x, idx, self.axes)], [gather_pos(self.axes)]
        x = to_front(x, bx)
        ishape = idx[0].shape[1:]
        out = gather(x, [_batch_index(B, ishape)] + idx, (0,) + tuple(a + 1 for a in self.axes))
        # ``out`` is (B, index dims, other dims); put the index dims back in place.
        p = gather_pos(self.axes)
        if p:
            m = len(ishape)
            rest = out.ndim - 1 - m
            perm = ([0] + [1 + m + j for j in range(p)] + [1 + j for j in range(m)]
                    + [1 + m + j for j in range(p, rest)])
            out = mx.transpose(out, perm)
        return [out], [0]

    def output_shapes(self, inputs):
        return [gather_shape(inputs[0].shape, self.axes, inputs[1].shape)]


@primitive
class Scatter(Primitive):
    """``x`` with ``x[..., i0, ..., i1, ...]`` combined with ``update`` by ``mode``.

    Inputs are ``(x, update, *indices)``; ``update`` has the shape a
    ``Gather(axes)`` would return. ``mode`` is one of ``set`` (the last of
    repeated indices wins), ``add``, ``prod``, ``max``, ``min`` (repeated
    indices accumulate).
    """

    axes: tuple = ()
    mode: str = "set"

    def index_tuple(self, idx, ndim: int) -> tuple:
        """The indexing tuple for ``x[...]`` from the index buffers (used by backend kernels)."""
        return _index_tuple(self.axes, idx, ndim)

    def eval(self, xp, x, u, *idx):
        out = x.copy()
        if self.mode == "set":
            out[_index_tuple(self.axes, idx, x.ndim)] = u
            return out
        ufunc = {"add": xp.add, "prod": xp.multiply, "max": xp.maximum, "min": xp.minimum}[self.mode]
        ufunc.at(out, _index_tuple(self.axes, idx, x.ndim), u)
        return out

    def vjp(self, primals, cotangents, argnums, outputs):
        x, u, *idx = primals
        g = cotangents[0]
        out = outputs[0]
        ax = self.axes
        mode = self.mode
        gx = gu = None
        if mode == "set":
            if 0 in argnums:
                gx = scatter(g, mx.zeros(u.shape, g.dtype), idx, ax, "set")
            if 1 in argnums:
                # Only the update that landed (the last of repeated indices) gets a gradient.
                ids = mx.reshape(mx.arange(u.size, dtype=mx.int32), u.shape)
                landed = scatter(mx.full(x.shape, -1, mx.int32), ids, idx, ax, "set")
                hit = mx.equal(gather(landed, idx, ax), ids)
                gu = mx.where(hit, gather(g, idx, ax), mx.zeros((), g.dtype))
        elif mode == "add":
            gx = g
            gu = gather(g, idx, ax)
        elif mode == "prod":
            prod = scatter(mx.ones(x.shape, u.dtype), u, idx, ax, "prod")
            gx = g * prod
            # d out / d u_j = out / u_j (undefined where an update is 0).
            gu = gather(g * out, idx, ax) / u
        else:
            # Ties share the gradient evenly (a valid subgradient).
            hx, hu, count = self._winners(x, u, idx, out)
            gx = g * hx / count
            gu = gather(g / count, idx, ax) * hu
        res = []
        for i in argnums:
            res.append(gx if i == 0 else gu if i == 1 else mx.zeros_like(primals[i]))
        return res

    def _winners(self, x, u, idx, out):
        dt = x.dtype
        hx = mx.astype(mx.equal(x, out), dt)
        hu = mx.astype(mx.equal(u, gather(out, idx, self.axes)), dt)
        count = hx + scatter(mx.zeros(x.shape, dt), hu, idx, self.axes, "add")
        return hx, hu, count

    def jvp(self, primals, tangents, argnums, outputs):
        x, u, *idx = primals
        tx = _tangent(tangents, argnums, 0, x)
        tu = _tangent(tangents, argnums, 1, u)
        ax = self.axes
        if self.mode in ("set", "add"):
            return [scatter(tx, tu, idx, ax, self.mode)]
        out = outputs[0]
        if self.mode == "prod":
            prod = scatter(mx.ones(x.shape, u.dtype), u, idx, ax, "prod")
            return [tx * prod + out * scatter(mx.zeros(x.shape, u.dtype), tu / u, idx, ax, "add")]
        hx, hu, count = self._winners(x, u, idx, out)
        return [(tx * hx + scatter(mx.zeros(x.shape, x.dtype), tu * hu, idx, ax, "add")) / count]

    def vmap(self, inputs, axes):
        x, u, *idx = inputs
        bx, bu, *bi = axes
        B = batch_size(inputs, axes)
        x = _front_or_broadcast(x, bx, B)
        u = _front_or_broadcast(u, bu, B)
        if all(b is None for b in bi):
            pos = 0 if consecutive(self.axes) else idx[0].ndim
            u = mx.moveaxis(u, 0, pos)
            return [scatter(x, u, idx, tuple(a + 1 for a in self.axes), self.mode)], [0]
        idx = _idx_batch(idx, bi, B)
        ishape = idx[0].shape[1:]
        p = gather_pos(self.axes)
        if p:
            # The update is (B, dims before, index dims, dims after); the batched
            # scatter wants (B, index dims, other dims).
            m = len(ishape)
            perm = ([0] + [1 + p + j for j in range(m)] + [1 + j for j in range(p)]
                    + list(range(1 + p + m, u.ndim)))
            u = mx.transpose(u, perm)
        out = scatter(x, u, [_batch_index(B, ishape)] + idx, (0,) + tuple(a + 1 for a in self.axes),
                      self.mode)
        return [out], [0]

    def output_shapes(self, inputs):
        return [inputs[0].shape]


# ---------------------------------------------------------------- along an axis
@primitive
class GatherAxis(Primitive):
    """``take_along_axis(x, idx, axis)``; ``idx`` matches ``x`` except along ``axis``."""

    axis: int = 0

    def eval(self, xp, x, idx):
        return xp.take_along_axis(x, idx, axis=self.axis)

    def vjp(self, primals, cotangents, argnums, outputs):
        x, idx = primals
        g = cotangents[0]
        return [scatter_axis(mx.zeros(x.shape, g.dtype), g, idx, self.axis, "add") if i == 0
                else mx.zeros_like(idx) for i in argnums]

    def jvp(self, primals, tangents, argnums, outputs):
        return [gather_axis(tangents[0], primals[1], self.axis)]

    def vmap(self, inputs, axes):
        B = batch_size(inputs, axes)
        x = _front_or_broadcast(inputs[0], axes[0], B)
        idx = _front_or_broadcast(inputs[1], axes[1], B)
        return [gather_axis(x, idx, self.axis + 1)], [0]

    def output_shapes(self, inputs):
        return [inputs[1].shape]


@primitive
class ScatterAxis(Primitive):
    """``put_along_axis``: inputs ``(x, update, idx)`` with ``update.shape == idx.shape``.

    ``mode`` is ``set`` (the last of repeated indices wins) or ``add``.
    """

    axis: int = 0
    mode: str = "set"

    def eval(self, xp, x, u, idx):
        out = x.copy()
        if self.mode == "set":
            xp.put_along_axis(out, idx, u, axis=self.axis)
            return out
        nd = x.ndim
        tup = tuple(idx if d == self.axis else
                    xp.arange(idx.shape[d]).reshape((1,) * d + (-1,) + (1,) * (nd - d - 1))
                    for d in range(nd))
        xp.add.at(out, tup, u)
        return out

    def vjp(self, primals, cotangents, argnums, outputs):
        x, u, idx = primals
        g = cotangents[0]
        ax = self.axis
        res = []
        for i in argnums:
            if i == 0:
                res.append(g if self.mode == "add" else
                           scatter_axis(g, mx.zeros(u.shape, g.dtype), idx, ax, "set"))
            elif i == 1:
                gu = gather_axis(g, idx, ax)
                if self.mode == "set":
                    ids = mx.reshape(mx.arange(u.size, dtype=mx.int32), u.shape)
                    landed = scatter_axis(mx.full(x.shape, -1, mx.int32), ids, idx, ax, "set")
                    hit = mx.equal(gather_axis(landed, idx, ax), ids)
                    gu = mx.where(hit, gu, mx.zeros((), gu.dtype))
                res.append(gu)
            else:
                res.append(mx.zeros_like(idx))
        return res

    def jvp(self, primals, tangents, argnums, outputs):
        x, u, idx = primals
        tx = _tangent(tangents, argnums, 0, x)
        tu = _tangent(tangents, argnums, 1, u)
        return [scatter_axis(tx, tu, idx, self.axis, self.mode)]

    def vmap(self, inputs, axes):
        B = batch_size(inputs, axes)
        x, u, idx = (_front_or_broadcast(a, b, B) for a, b in zip(inputs, axes))
        return [scatter_axis(x, u, idx, self.axis + 1, self.mode)], [0]

    def output_shapes(self, inputs):
        return [inputs[0].shape]


# ---------------------------------------------------------------- node builders
def slice_(x, box: Slice):
    """A ``Slice`` node (``box`` holds normalised bounds)."""
    return box.apply([x], slice_shape(box.start, box.stop, box.strides), x.dtype)


def slice_axis(x, axis: int, start: int, stop: int, step: int = 1, stream=None):
    """``x`` sliced along one axis: a ``Slice`` node, or ``x`` itself when the slice is whole."""
    n = x.shape[axis]
    if start == 0 and stop == n and step == 1:
        return x
    starts = tuple(start if i == axis else 0 for i in range(x.ndim))
    stops = tuple(stop if i == axis else d for i, d in enumerate(x.shape))
    steps = tuple(step if i == axis else 1 for i in range(x.ndim))
    box = Slice(starts, stops, steps)
    return box.apply([x], slice_shape(starts, stops, steps), x.dtype, stream)


def slice_update(x, u, box: Slice):
    """A ``SliceUpdate`` node writing ``u`` (of the box's shape, ``x``'s dtype) into ``x``."""
    if u.dtype != x.dtype:
        u = mx.astype(u, x.dtype)
    prim = SliceUpdate(box.start, box.stop, box.strides)
    return prim.apply([x, u], x.shape, x.dtype)


def gather(x, idx, axes: tuple):
    """A ``Gather`` node; ``idx`` are integer arrays of one shape, ``axes`` sorted."""
    idx = list(idx)
    return Gather(tuple(axes)).apply([x] + idx, gather_shape(x.shape, axes, idx[0].shape), x.dtype)


def scatter(x, u, idx, axes: tuple, mode: str):
    """A ``Scatter`` node; ``u`` has the gather layout's shape."""
    if u.dtype != x.dtype:
        u = mx.astype(u, x.dtype)
    return Scatter(tuple(axes), mode).apply([x, u] + list(idx), x.shape, x.dtype)


def gather_axis(x, idx, axis: int):
    return GatherAxis(axis).apply([x, idx], idx.shape, x.dtype)


def scatter_axis(x, u, idx, axis: int, mode: str):
    if u.dtype != x.dtype:
        u = mx.astype(u, x.dtype)
    return ScatterAxis(axis, mode).apply([x, u, idx], x.shape, x.dtype)

