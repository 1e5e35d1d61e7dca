"""Scans along one axis: cumsum, cumprod, cummax, cummin, logcumsumexp.

Every scan has ``axis`` (non-negative), ``reverse`` and ``inclusive``. The
rules are written for the inclusive scan; an exclusive scan is the inclusive
one shifted by one step (``Shift``), so its rules are the inclusive rules
composed with a shift.

``LinearRecurrence`` (``h_i = a_i * h_{i-1} + b_i``) is the private helper
that makes the cumprod and logcumsumexp derivatives exact even with zeros
(no division by the input) and numerically stable; its own rules are again
linear recurrences, so every order of differentiation works.
"""
from __future__ import annotations

import dataclasses

from kiln.primitives.base import ops as mx

from kiln.primitives.base import Primitive, primitive, to_front
from kiln.primitives.sort import scatter_add_along, take_along


# ---------------------------------------------------------------- buffer helpers (xp)
def _shift_buf(xp, x, axis: int, offset: int, fill):
    """``out[i] = x[i - offset]`` along ``axis``, ``fill`` where that is out of range."""
    n = x.shape[axis]
    k = min(abs(offset), n)
    pad_shape = list(x.shape)
    pad_shape[axis] = k
    pad = xp.full(pad_shape, fill, dtype=x.dtype)
    sl = [slice(None)] * x.ndim
    if offset >= 0:
        sl[axis] = slice(0, n - k)
        return xp.concatenate([pad, x[tuple(sl)]], axis=axis)
    sl[axis] = slice(k, n)
    return xp.concatenate([x[tuple(sl)], pad], axis=axis)


def _flip(xp, x, axis):
    return xp.flip(x, axis=axis)


def _identity(xp, dtype, kind: str):
    """The value an exclusive scan starts from (as MLX: -inf / dtype min for cummax...)."""
    if kind == "sum":
        return 0
    if kind == "prod":
        return 1
    if kind == "logaddexp":
        return -float("inf")
    if dtype == xp.bool_:
        return kind == "min"
    if dtype.kind in "iu":
        info = xp.iinfo(dtype)
        return info.min if kind == "max" else info.max
    return -float("inf") if kind == "max" else float("inf")


def _scan_buf(xp, x, axis, reverse, inclusive, accumulate, kind):
    if reverse:
        x = _flip(xp, x, axis)
    y = accumulate(x)
    if not inclusive:
        y = _shift_buf(xp, y, axis, 1, _identity(xp, x.dtype, kind))
    if reverse:
        y = _flip(xp, y, axis)
    return y


# ---------------------------------------------------------------- graph helpers
def _shift(x, axis: int, offset: int, fill=0):
    return Shift(axis, offset, fill).apply([x], x.shape, x.dtype)


def _prev(x, axis, reverse, fill=0):
    """The previous element in scan order (``fill`` at the start)."""
    return _shift(x, axis, -1 if reverse else 1, fill)


def _next(x, axis, reverse, fill=0):
    """The next element in scan order (``fill`` at the end)."""
    return _shift(x, axis, 1 if reverse else -1, fill)


def linear_recurrence(a, b, axis: int, reverse: bool):
    """``h_i = a_i h_{i-1} + b_i`` in scan order, ``h_first = b_first`` (``a_first`` unused)."""
    return LinearRecurrence(axis, reverse).apply([a, b], b.shape, b.dtype)


@primitive
class Shift(Primitive):
    """``out[i] = x[i - offset]`` along ``axis``, ``fill`` where out of range."""

    axis: int = 0
    offset: int = 1
    fill: object = 0

    expr = None

    def eval(self, xp, x):
        return _shift_buf(xp, x, self.axis, self.offset, self.fill)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [_shift(cotangents[0], self.axis, -self.offset, 0)]

    def jvp(self, primals, tangents, argnums, outputs):
        return [_shift(tangents[0], self.axis, self.offset, 0)]

    def vmap(self, inputs, axes):
        x = to_front(inputs[0], axes[0])
        return [_shift(x, self.axis + 1, self.offset, self.fill)], [0]

    def output_shapes(self, inputs):
        return [inputs[0].shape]


@primitive
class LinearRecurrence(Primitive):
    axis: int = 0
    reverse: bool = False

    def eval(self, xp, a, b):
        a = xp.moveaxis(xp.broadcast_to(a, b.shape), self.axis, 0)
        b = xp.moveaxis(b, self.axis, 0)
        h = xp.empty_like(b)  # a fresh buffer: filled in place, never an input
        n = b.shape[0]
        order = range(n - 1, -1, -1) if self.reverse else range(n)
        prev = None
        for i in order:
            prev = b[i] if prev is None else a[i] * prev + b[i]
            h[i] = prev
        return xp.moveaxis(h, 0, self.axis)

    def vjp(self, primals, cotangents, argnums, outputs):
        a, b = primals
        h = outputs[0]
        u = linear_recurrence(_next(a, self.axis, self.reverse), cotangents[0], self.axis, not self.reverse)
        out = []
        for i in argnums:
            out.append(u * _prev(h, self.axis, self.reverse) if i == 0 else u)
        return out

    def jvp(self, primals, tangents, argnums, outputs):
        a, b = primals
        h = outputs[0]
        drive = None
        for t, i in zip(tangents, argnums):
            term = t * _prev(h, self.axis, self.reverse) if i == 0 else t
            drive = term if drive is None else drive + term
        return [linear_recurrence(a, drive, self.axis, self.reverse)]

    def vmap(self, inputs, axes):
        a, b = inputs
        aa, ab = axes
        n = a.shape[aa] if aa is not None else b.shape[ab]
        a = to_front(a, aa) if aa is not None else mx.broadcast_to(mx.expand_dims(a, 0), (n,) + a.shape)
        b = to_front(b, ab) if ab is not None else mx.broadcast_to(mx.expand_dims(b, 0), (n,) + b.shape)
        return [linear_recurrence(a, b, self.axis + 1, self.reverse)], [0]

    def output_shapes(self, inputs):
        return [inputs[1].shape]


# ---------------------------------------------------------------- scans
class _Scan(Primitive):
    """Shared vmap/output_shapes and the exclusive-scan wrapping of rules."""

    def vmap(self, inputs, axes):
        x = to_front(inputs[0], axes[0])
        prim = dataclasses.replace(self, axis=self.axis + 1)
        return [prim.apply([x], x.shape, x.dtype)], [0]

    def output_shapes(self, inputs):
        return [inputs[0].shape]

    def _inclusive(self, x):
        prim = dataclasses.replace(self, inclusive=True)
        return prim.apply([x], x.shape, x.dtype)

    # Subclasses give the inclusive rules; these wrap them for exclusive scans.
    def vjp(self, primals, cotangents, argnums, outputs):
        x = primals[0]
        g = cotangents[0]
        if self.inclusive:
            return [self._vjp_incl(x, outputs[0], g)]
        g = _next(g, self.axis, self.reverse, 0)  # transpose of the exclusive shift
        return [self._vjp_incl(x, self._inclusive(x), g)]

    def jvp(self, primals, tangents, argnums, outputs):
        x = primals[0]
        if self.inclusive:
            return [self._jvp_incl(x, outputs[0], tangents[0])]
        t = self._jvp_incl(x, self._inclusive(x), tangents[0])
        return [_prev(t, self.axis, self.reverse, 0)]


@primitive
class CumSum(_Scan):
    axis: int = 0
    reverse: bool = False
    inclusive: bool = True

    def eval(self, xp, x):
        return _scan_buf(xp, x, self.axis, self.reverse, self.inclusive,
                         lambda v: xp.cumsum(v, axis=self.axis, dtype=v.dtype), "sum")

    # Linear: both rules are scans themselves, exclusive or not.
    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.cumsum(cotangents[0], axis=self.axis, reverse=not self.reverse, inclusive=self.inclusive)]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.cumsum(tangents[0], axis=self.axis, reverse=self.reverse, inclusive=self.inclusive)]


@primitive
class CumProd(_Scan):
    axis: int = 0
    reverse: bool = False
    inclusive: bool = True

    def eval(self, xp, x):
        return _scan_buf(xp, x, self.axis, self.reverse, self.inclusive,
                         lambda v: xp.cumprod(v, axis=self.axis, dtype=v.dtype), "prod")

    # y_i = y_{i-1} x_i, so dy_i = x_i dy_{i-1} + y_{i-1} t_i: a linear recurrence
    # driven by the exclusive products E (exact with zeros in x).
    def _jvp_incl(self, x, y, t):
        e = _prev(y, self.axis, self.reverse, 1)
        return linear_recurrence(x, e * t, self.axis, self.reverse)

    def _vjp_incl(self, x, y, g):
        e = _prev(y, self.axis, self.reverse, 1)
        u = linear_recurrence(_next(x, self.axis, self.reverse, 0), g, self.axis, not self.reverse)
        return e * u


@primitive
class CumArgExtreme(Primitive):
    """Index (along ``axis``) of the element each inclusive cummax/cummin takes.

    Ties go to the element that first reached the running extreme.
    """

    axis: int = 0
    reverse: bool = False
    kind: str = "max"

    def eval(self, xp, x):
        axis = self.axis
        if self.reverse:
            x = _flip(xp, x, axis)
        acc = xp.maximum if self.kind == "max" else xp.minimum
        run = acc.accumulate(x, axis=axis)
        before = _shift_buf(xp, run, axis, 1, _identity(xp, x.dtype, self.kind))
        # a new extreme is set where x beats everything before it (or at the start)
        better = (x > before) if self.kind == "max" else (x < before)
        better = better | xp.isnan(x) if x.dtype.kind == "f" else better
        shp = [1] * x.ndim
        shp[axis] = x.shape[axis]
        pos = xp.broadcast_to(xp.arange(x.shape[axis]).reshape(shp), x.shape)
        start = pos == 0
        k = xp.maximum.accumulate(xp.where(better | start, pos, 0), axis=axis)
        if self.reverse:
            k = _flip(xp, x.shape[axis] - 1 - k, axis)
        return k.astype(xp.uint32)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.zeros_like(primals[0])]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.zeros(outputs[0].shape, outputs[0].dtype)]

    def vmap(self, inputs, axes):
        x = to_front(inputs[0], axes[0])
        prim = dataclasses.replace(self, axis=self.axis + 1)
        return [prim.apply([x], x.shape, mx.uint32)], [0]

    def output_shapes(self, inputs):
        return [inputs[0].shape]


class _CumExtreme(_Scan):
    kind = "max"

    def _source(self, x):
        return CumArgExtreme(self.axis, self.reverse, self.kind).apply([x], x.shape, mx.uint32)

    def _jvp_incl(self, x, y, t):
        return take_along(t, self._source(x), self.axis)

    def _vjp_incl(self, x, y, g):
        return scatter_add_along(g, self._source(x), self.axis, x.shape)


@primitive
class CumMax(_CumExtreme):
    axis: int = 0
    reverse: bool = False
    inclusive: bool = True

    kind = "max"

    def eval(self, xp, x):
        return _scan_buf(xp, x, self.axis, self.reverse, self.inclusive,
                         lambda v: xp.maximum.accumulate(v, axis=self.axis), "max")


@primitive
class CumMin(_CumExtreme):
    axis: int = 0
    reverse: bool = False
    inclusive: bool = True

    kind = "min"

    def eval(self, xp, x):
        return _scan_buf(xp, x, self.axis, self.reverse, self.inclusive,
                         lambda v: xp.minimum.accumulate(v, axis=self.axis), "min")


@primitive
class LogCumSumExp(_Scan):
    axis: int = 0
    reverse: bool = False
    inclusive: bool = True

    def eval(self, xp, x):
        with _quiet(xp):
            return _scan_buf(xp, x, self.axis, self.reverse, self.inclusive,
                             lambda v: xp.logaddexp.accumulate(v, axis=self.axis), "logaddexp")

    # dy_i = exp(y_{i-1} - y_i) dy_{i-1} + exp(x_i - y_i) t_i; all weights are <= 1,
    # so the recurrences are stable (the minimum guards the unused first weight).
    def _jvp_incl(self, x, y, t):
        a = mx.exp(mx.minimum(_prev(y, self.axis, self.reverse, 0) - y, 0))
        return linear_recurrence(a, mx.exp(x - y) * t, self.axis, self.reverse)

    def _vjp_incl(self, x, y, g):
        a = mx.exp(mx.minimum(y - _next(y, self.axis, self.reverse, 0), 0))
        u = linear_recurrence(a, g, self.axis, not self.reverse)
        return mx.exp(x - y) * u


from kiln.primitives.unary import _quiet  # noqa: E402
