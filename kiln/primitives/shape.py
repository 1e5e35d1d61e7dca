"""Shape primitives: reshape, transpose, broadcast and friends."""

from __future__ import annotations

from kiln.primitives.base import ops as mx

from kiln.primitives.base import Primitive, batch_size, primitive, to_front, unbroadcast
from kiln.primitives.indexing import Slice, slice_axis as _slice_axis  # noqa: F401


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


def _front(inputs, axes, batch):
    """Every input with its batch axis at 0; unbatched ones broadcast to ``batch``."""
    out = []
    for x, a in zip(inputs, axes):
        if a is None:
            x = mx.broadcast_to(mx.expand_dims(x, 0), (batch,) + x.shape)
        else:
            x = to_front(x, a)
        out.append(x)
    return out


# Slice lives in indexing.py beside SliceUpdate (one Slice primitive, one VJP); re-exported here.


@primitive
class Flip(Primitive):
    """Reverse the order of elements along ``axes``."""

    axes: tuple = ()

    def eval(self, xp, x):
        return xp.flip(x, axis=self.axes)

    def vjp(self, primals, cotangents, argnums, outputs):
        g = cotangents[0]
        return [self.apply([g], g.shape, g.dtype)]

    def jvp(self, primals, tangents, argnums, outputs):
        t = tangents[0]
        return [self.apply([t], t.shape, t.dtype)]

    def vmap(self, inputs, axes):
        x = to_front(inputs[0], axes[0])
        prim = Flip(tuple(a + 1 for a in self.axes))
        return [prim.apply([x], x.shape, x.dtype)], [0]

    def output_shapes(self, inputs):
        return [inputs[0].shape]


@primitive
class Concatenate(Primitive):
    """Join the inputs (same dtype, same shape but along ``axis``) along ``axis``."""

    axis: int = 0

    def eval(self, xp, *xs):
        return xp.concatenate(xs, axis=self.axis)

    def _bounds(self, primals):
        out, start = [], 0
        for p in primals:
            out.append((start, start + p.shape[self.axis]))
            start += p.shape[self.axis]
        return out

    def vjp(self, primals, cotangents, argnums, outputs):
        g = cotangents[0]
        bounds = self._bounds(primals)
        return [_slice_axis(g, self.axis, *bounds[i]) for i in argnums]

    def jvp(self, primals, tangents, argnums, outputs):
        ts = [mx.zeros(p.shape, p.dtype) for p in primals]
        for t, i in zip(tangents, argnums):
            ts[i] = t
        return [self.apply(ts, outputs[0].shape, outputs[0].dtype)]

    def vmap(self, inputs, axes):
        n = batch_size(inputs, axes)
        xs = _front(inputs, axes, n)
        prim = Concatenate(self.axis + 1)
        return [prim.apply(xs, prim.output_shapes(xs)[0], xs[0].dtype)], [0]

    def output_shapes(self, inputs):
        shape = list(inputs[0].shape)
        shape[self.axis] = sum(x.shape[self.axis] for x in inputs)
        return [tuple(shape)]


@primitive
class Pad(Primitive):
    """Constant padding: inputs ``(x, value)`` with ``value`` 0-d of x's dtype;
    ``widths`` is one ``(low, high)`` pair per axis of ``x``."""

    widths: tuple = ()

    def eval(self, xp, x, v):
        out = xp.full(self.output_shapes([x])[0], v, dtype=x.dtype)
        out[tuple(slice(lo, lo + n) for (lo, _), n in zip(self.widths, x.shape))] = x
        return out

    def vjp(self, primals, cotangents, argnums, outputs):
        x, v = primals
        g = cotangents[0]
        out = []
        for i in argnums:
            if i == 0:
                out.append(_slice_all(g, [lo for lo, _ in self.widths], x.shape))
            else:
                # The value sits exactly where the mask of padding is one.
                mask = self.apply([mx.zeros(x.shape, g.dtype), mx.ones((), g.dtype)], g.shape, g.dtype)
                out.append(mx.sum(g * mask).astype(v.dtype))
        return out

    def jvp(self, primals, tangents, argnums, outputs):
        x = primals[0]
        tx, tv = mx.zeros(x.shape, x.dtype), mx.zeros((), x.dtype)
        for t, i in zip(tangents, argnums):
            if i == 0:
                tx = t
            else:
                tv = t
        return [self.apply([tx, tv], outputs[0].shape, outputs[0].dtype)]

    def vmap(self, inputs, axes):
        x, v = inputs
        ax, av = axes
        widths = ((0, 0),) + self.widths
        if ax is None:
            x = mx.expand_dims(x, 0)
        else:
            x = to_front(x, ax)
        prim = Pad(widths)
        if av is None:  # then x is batched
            return [prim.apply([x, v], prim.output_shapes([x])[0], x.dtype)], [0]
        # A value per batch element: pad with zeros, then add value * mask.
        v = to_front(v, av)
        n = v.shape[0]
        if x.shape[0] != n:
            x = mx.broadcast_to(x, (n,) + x.shape[1:])
        zero = mx.zeros((), x.dtype)
        shape = prim.output_shapes([x])[0]
        body = prim.apply([x, zero], shape, x.dtype)
        mask = prim.apply([mx.zeros(x.shape, x.dtype), mx.ones((), x.dtype)], shape, x.dtype)
        vb = mx.reshape(v, (n,) + (1,) * (len(shape) - 1))
        return [body + mask * vb], [0]

    def output_shapes(self, inputs):
        return [tuple(n + lo + hi for n, (lo, hi) in zip(inputs[0].shape, self.widths))]


def _slice_all(x, starts, sizes):
    """``x[starts[i]:starts[i]+sizes[i]]`` on every axis."""
    stops = tuple(a + n for a, n in zip(starts, sizes))
    if tuple(starts) == (0,) * x.ndim and stops == x.shape:
        return x
    prim = Slice(tuple(starts), stops, (1,) * x.ndim)
    return prim.apply([x], tuple(sizes), x.dtype)


@primitive
class Triangle(Primitive):
    """Keep the lower (``upper=False``) or upper triangle of the last two axes,
    relative to diagonal ``k``; zero the rest."""

    k: int = 0
    upper: bool = False

    def eval(self, xp, x):
        return xp.triu(x, self.k) if self.upper else xp.tril(x, self.k)

    def vjp(self, primals, cotangents, argnums, outputs):
        g = cotangents[0]
        return [self.apply([g], g.shape, g.dtype)]

    def jvp(self, primals, tangents, argnums, outputs):
        t = tangents[0]
        return [self.apply([t], t.shape, t.dtype)]

    def vmap(self, inputs, axes):
        x = inputs[0]
        ax = axes[0]
        if ax >= x.ndim - 2:
            x, ax = to_front(x, ax), 0
        return [self.apply([x], x.shape, x.dtype)], [ax]

    def output_shapes(self, inputs):
        return [inputs[0].shape]


def _strided_indices(xp, size, shape, strides, offset):
    """Flat indices into a contiguous array of ``size`` elements picked by ``as_strided``."""
    base = xp.arange(size, dtype=xp.int64)
    item = base.itemsize
    return xp.lib.stride_tricks.as_strided(base[offset:], shape, tuple(s * item for s in strides))


@primitive
class AsStrided(Primitive):
    """A strided view of the row-major data of ``x`` (element strides and offset)."""

    shape: tuple = ()
    strides: tuple = ()
    offset: int = 0

    def eval(self, xp, x):
        flat = xp.ascontiguousarray(x).reshape(-1)
        item = flat.itemsize
        view = xp.lib.stride_tricks.as_strided(
            flat[self.offset :], self.shape, tuple(s * item for s in self.strides)
        )
        return xp.array(view, copy=True)  # a plain buffer: views of views are fragile

    def vjp(self, primals, cotangents, argnums, outputs):
        x = primals[0]
        g = cotangents[0]
        prim = AsStridedScatter(x.shape, self.shape, self.strides, self.offset)
        return [prim.apply([g], x.shape, g.dtype)]

    def jvp(self, primals, tangents, argnums, outputs):
        t = tangents[0]
        return [self.apply([t], self.shape, t.dtype)]

    def vmap(self, inputs, axes):
        x = to_front(inputs[0], axes[0])
        size = 1
        for s in x.shape[1:]:
            size *= s
        prim = AsStrided((x.shape[0],) + self.shape, (size,) + self.strides, self.offset)
        return [prim.apply([x], prim.shape, x.dtype)], [0]

    def output_shapes(self, inputs):
        return [self.shape]


@primitive
class AsStridedScatter(Primitive):
    """The transpose of ``AsStrided``: add ``g`` into zeros of ``in_shape`` at the
    positions the strided view reads (positions read twice accumulate)."""

    in_shape: tuple = ()
    shape: tuple = ()
    strides: tuple = ()
    offset: int = 0

    def eval(self, xp, g):
        size = 1
        for s in self.in_shape:
            size *= s
        idx = _strided_indices(xp, size, self.shape, self.strides, self.offset)
        out = xp.zeros(size, dtype=g.dtype)
        xp.add.at(out, idx.reshape(-1), g.reshape(-1))
        return out.reshape(self.in_shape)

    def vjp(self, primals, cotangents, argnums, outputs):
        g = cotangents[0]
        prim = AsStrided(self.shape, self.strides, self.offset)
        return [prim.apply([g], self.shape, g.dtype)]

    def jvp(self, primals, tangents, argnums, outputs):
        t = tangents[0]
        return [self.apply([t], self.in_shape, t.dtype)]

    def vmap(self, inputs, axes):
        g = to_front(inputs[0], axes[0])
        n = g.shape[0]
        size = 1
        for s in self.in_shape:
            size *= s
        prim = AsStridedScatter((n,) + self.in_shape, (n,) + self.shape, (size,) + self.strides, self.offset)
        return [prim.apply([g], prim.in_shape, g.dtype)], [0]

    def output_shapes(self, inputs):
        return [self.in_shape]


@primitive
class Contiguous(Primitive):
    """The identity on values; the buffer is made row-major contiguous."""

    def eval(self, xp, x):
        return xp.ascontiguousarray(x)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [cotangents[0]]

    def jvp(self, primals, tangents, argnums, outputs):
        return [tangents[0]]

    def vmap(self, inputs, axes):
        x = inputs[0]
        return [self.apply([x], x.shape, x.dtype)], [axes[0]]

    def output_shapes(self, inputs):
        return [inputs[0].shape]


@primitive
class View(Primitive):
    """The bytes of ``x`` reinterpreted as ``dtype`` (the last axis rescales)."""

    dtype: object = None

    def _shape(self, shape, in_size):
        if not shape:
            return shape
        return shape[:-1] + (shape[-1] * in_size // self.dtype.size,)

    def eval(self, xp, x):
        return xp.ascontiguousarray(x).view(self.dtype.np)

    def vjp(self, primals, cotangents, argnums, outputs):
        # Reinterpreting bits has no meaningful derivative.
        return [mx.zeros(primals[0].shape, primals[0].dtype)]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.zeros(outputs[0].shape, self.dtype)]

    def vmap(self, inputs, axes):
        x, ax = inputs[0], axes[0]
        if x.ndim > 1 and ax == x.ndim - 1:
            # The batch axis must not be the last one, whose length changes.
            x, ax = to_front(x, ax), 0
        return [self.apply([x], self._shape(x.shape, x.dtype.size), self.dtype)], [ax]

    def output_shapes(self, inputs):
        return [self._shape(inputs[0].shape, inputs[0].dtype.size)]
