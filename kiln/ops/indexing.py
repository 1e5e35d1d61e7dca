"""Indexing ops: ``x[idx]``, ``x[idx] = v``, ``x.at[idx].add(v)``, take, put and slices.

An index tuple is turned into a ``_Plan`` once: a ``Slice`` box for the basic
part (ints, slices), a ``Gather``/``Scatter`` over the advanced part
(integer arrays, and ints next to them), a transpose for NumPy's placement of
the index dimensions, and a reshape for ``None`` and dropped int axes.
Reading runs the plan forwards; writing runs it backwards on the update.
Boolean masks are turned into integer arrays eagerly (their result shape
depends on the data), so they need concrete values.
"""
from __future__ import annotations

import numpy as np

from kiln import dtypes as _dt
from kiln.ops.normalize import as_array, scalar, shape_str
from kiln.graph.array import _make, array
from kiln.graph.eval import toposort
from kiln.primitives import indexing as P
from kiln.primitives.base import broadcast_shapes
from kiln.primitives.misc import Placeholder
from kiln.primitives.shape import Reshape
from kiln.ops.elementwise import add, astype, multiply, negative
from kiln.ops.shape import broadcast_to, reshape, transpose
from kiln.ops import elementwise as _ew
from kiln.ops import shape as _sh


__all__ = [
    "take", "take_along_axis", "put_along_axis", "slice", "slice_update",
    "_getitem", "_setitem", "_AtIndexer",
]

_pyslice = slice  # ``slice`` below is the op


# ---------------------------------------------------------------- index conversion
def _index_array(item, op: str):
    """A list/ndarray/array index as a kiln array (bool for masks, else integer)."""
    if isinstance(item, array):
        a = item
    else:
        h = np.asarray(item)
        if h.size == 0 and h.dtype.kind == "f":
            h = h.astype(np.int32)  # ``[]`` is an empty integer index, as in NumPy
        elif h.dtype.kind in "iu" and not isinstance(item, np.ndarray):
            h = h.astype(np.int32)  # Python lists become int32, as in MLX
        if h.dtype.kind not in "biu":
            raise ValueError(f"[{op}] Got indices with invalid dtype. Indices must be integral.")
        a = array(h)
    if a.dtype is not _dt.bool_ and not a.dtype.is_integer:
        raise ValueError(f"[{op}] Got indices with invalid dtype. Indices must be integral.")
    return a


def _mask_indices(mask: array, op: str) -> list:
    """The integer index arrays equivalent to a boolean mask (evaluated now)."""
    if mask._buf is None:
        try:
            mask._data()
        except Exception as e:
            if any(type(n._prim) is Placeholder for n in toposort([mask])):
                raise ValueError(
                    f"[{op}] Boolean mask indices need concrete values (the result's shape depends "
                    "on them), so they are not allowed inside vmap or compile. Use mx.where "
                    "instead.") from e
            raise
    h = np.asarray(mask)
    return [array(i.astype(np.int32)) for i in np.nonzero(h)]


def _normalize(x: array, idx, op: str) -> list:
    """Entries per the index tuple: None, int, slice or an integer array, Ellipsis expanded."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    entries = []
    n_real = 0
    ellipsis_at = -1
    for item in idx:
        if item is None:
            entries.append(None)
        elif item is Ellipsis:
            if ellipsis_at >= 0:
                raise ValueError(f"[{op}] An index can only have a single ellipsis (...).")
            ellipsis_at = len(entries)
            entries.append(Ellipsis)
        elif isinstance(item, (bool, np.bool_)):
            raise ValueError(f"[{op}] Cannot index an array with a boolean scalar.")
        elif isinstance(item, (int, np.integer)):
            entries.append(int(item))
            n_real += 1
        elif isinstance(item, _pyslice):
            entries.append(item)
            n_real += 1
        elif isinstance(item, (array, list, np.ndarray)):
            a = _index_array(item, op)
            if a.dtype is _dt.bool_:
                if a.ndim == 0:
                    raise ValueError(f"[{op}] 0-d boolean indices are not supported.")
                entries.append(("mask", a))
                n_real += a.ndim
            else:
                entries.append(a)
                n_real += 1
        else:
            raise ValueError(f"[{op}] Cannot index an array with an index of type {type(item).__name__}.")
    ndim = x.ndim
    if n_real > ndim:
        raise ValueError(f"[{op}] Too many indices for array with {ndim} dimensions.")
    fill = [_pyslice(None)] * (ndim - n_real)
    if ellipsis_at >= 0:
        entries[ellipsis_at:ellipsis_at + 1] = fill
    else:
        entries.extend(fill)
    if any(type(e) is tuple for e in entries):
        entries = _expand_masks(x, entries, op)
    return entries


def _expand_masks(x, entries, op):
    out = []
    d = 0
    for e in entries:
        if type(e) is tuple:
            mask = e[1]
            want = x.shape[d:d + mask.ndim]
            if mask.shape != want:
                raise IndexError(
                    f"[{op}] Boolean index of shape {shape_str(mask.shape)} does not match the "
                    f"indexed dimensions {shape_str(want)} of an array of shape {shape_str(x.shape)}.")
            out.extend(_mask_indices(mask, op))
            d += mask.ndim
        else:
            out.append(e)
            if e is not None:
                d += 1
    return out


# ---------------------------------------------------------------- the plan
class _Plan:
    """How an index tuple maps ``x`` to ``x[idx]`` (and back, for updates)."""

    __slots__ = ("box", "idx", "axes", "perm", "pre_shape", "final_shape")

    def __init__(self, x: array, idx, op: str):
        entries = _normalize(x, idx, op)
        shape = x.shape
        ndim = len(shape)
        adv = any(type(e) is array for e in entries)
        start = [0] * ndim
        stop = list(shape)
        strides = [1] * ndim
        trivial = True
        adv_axes, adv_idx, adv_pos = [], [], []
        items = []  # output dims in tuple order: ints, or "adv" for the index block
        d = 0
        for k, e in enumerate(entries):
            if e is None:
                items.append(1)
                continue
            t = type(e)
            if t is int:
                n = shape[d]
                if e < -n or e >= n:
                    raise IndexError(f"[{op}] Index {e} is out of bounds for axis {d} with size {n}.")
                e %= n
                if adv:
                    adv_axes.append(d)
                    adv_idx.append(scalar(e, _dt.int32))
                    adv_pos.append(k)
                    if len(adv_pos) == 1:
                        items.append("adv")
                else:
                    start[d], stop[d] = e, e + 1
                    trivial = False
            elif t is _pyslice:
                if e.step == 0:
                    raise ValueError(f"[{op}] Slice step cannot be zero.")
                b, s_, st = e.indices(shape[d])
                if st < 0 and s_ < 0:
                    s_ = -1
                start[d], stop[d], strides[d] = b, s_, st
                size = len(range(b, s_, st))
                if b != 0 or st != 1 or size != shape[d]:
                    trivial = False
                items.append(size)
            else:
                adv_axes.append(d)
                adv_idx.append(e)
                adv_pos.append(k)
                if len(adv_pos) == 1:
                    items.append("adv")
            d += 1
        self.box = None if trivial else P.Slice(tuple(start), tuple(stop), tuple(strides))
        ybox = P.slice_shape(start, stop, strides)
        self.perm = None
        if not adv:
            self.idx = None
            self.axes = ()
            self.pre_shape = ybox
            self.final_shape = tuple(items)
            return
        ishape = broadcast_shapes(*[i.shape for i in adv_idx]) if len(adv_idx) > 1 else adv_idx[0].shape
        self.idx = [i if i.shape == ishape else _broadcast(i, ishape) for i in adv_idx]
        self.axes = axes = tuple(adv_axes)
        pre = P.gather_shape(ybox, axes, ishape)
        if adv_pos[-1] - adv_pos[0] == len(adv_pos) - 1:
            # Adjacent in the tuple: the index dims replace the block in place.
            final = []
            for it in items:
                final.extend(ishape if it == "adv" else (it,))
        else:
            # Separated (by a slice or None): NumPy puts the index dims first.
            if P.consecutive(axes):
                p, m = axes[0], len(ishape)
                self.perm = tuple(range(p, p + m)) + tuple(range(p)) + tuple(range(p + m, len(pre)))
                pre = tuple(pre[i] for i in self.perm)
            final = list(ishape) + [it for it in items if it != "adv"]
        self.pre_shape = pre
        self.final_shape = tuple(final)

    def get(self, x: array) -> array:
        y = x if self.box is None else P.slice_(x, self.box)
        if self.idx is not None:
            y = P.gather(y, self.idx, self.axes)
            if self.perm is not None:
                y = _transpose(y, self.perm)
        if y.shape != self.final_shape:
            y = _reshape(y, self.final_shape)
        return y

    def update(self, x: array, v: array, combine) -> array:
        """``x`` with ``x[idx]`` replaced by ``combine(x[idx], v)`` (``combine`` None: set).

        For advanced indices ``combine`` is a scatter mode string instead.
        """
        u = _fit_update(v, self.final_shape)
        if u.shape != self.pre_shape:
            u = _reshape(u, self.pre_shape)
        if self.perm is not None:
            inv = [0] * len(self.perm)
            for i, p in enumerate(self.perm):
                inv[p] = i
            u = _transpose(u, inv)
        if self.idx is None and combine is None:
            new = u
        else:
            y = x if self.box is None else P.slice_(x, self.box)
            if self.idx is not None:
                new = P.scatter(y, u, self.idx, self.axes, combine or "set")
            else:
                new = combine(y, u)
        if self.box is None:
            return new
        return P.slice_update(x, new, self.box)


def _broadcast(a, shape):
    return broadcast_to(a, shape)


def _reshape(a, shape):
    shape = tuple(shape)
    return _make(shape, a._dtype, Reshape(shape), (a,), a._stream)


def _transpose(a, perm):
    return transpose(a, perm)


def _fit_update(v: array, shape: tuple) -> array:
    """``v`` broadcast to ``shape`` (leading size-1 dims of ``v`` may be dropped)."""
    vs = v.shape
    if vs == shape:
        return v
    k = 0
    while len(vs) - k > len(shape) and vs[k] == 1:
        k += 1
    if len(vs) - k > len(shape):
        raise ValueError(f"[setitem] Cannot broadcast array of shape {shape_str(vs)} into shape {shape_str(shape)}.")
    if k:
        v = _reshape(v, vs[k:])
    return _broadcast(v, shape)


def _update_value(x: array, v) -> array:
    """The update as an array of ``x``'s dtype."""
    if isinstance(v, (bool, int, float, complex)) and not isinstance(v, array):
        return scalar(v, x._dtype)
    v = as_array(v)
    if v._dtype is not x._dtype:
        v = astype(v, x._dtype)
    return v


# ---------------------------------------------------------------- __getitem__ / __setitem__
def _getitem(x: array, idx) -> array:
    """``x[idx]`` with NumPy's rules (ints, slices, None, Ellipsis, integer/boolean arrays)."""
    t = type(idx)
    if t is int and x._shape:
        # The hot path: x[i] is a one-row box and a reshape.
        shape = x._shape
        n = shape[0]
        if idx < -n or idx >= n:
            raise IndexError(f"[getitem] Index {idx} is out of bounds for axis 0 with size {n}.")
        idx %= n
        nd = len(shape)
        box = P.Slice((idx,) + (0,) * (nd - 1), (idx + 1,) + shape[1:], (1,) * nd)
        y = _make((1,) + shape[1:], x._dtype, box, (x,), x._stream)
        return _reshape(y, shape[1:])
    if t is _pyslice or t is tuple:
        y = _basic(x, (idx,) if t is _pyslice else idx)
        if y is not None:
            return y
    elif t is array and idx._dtype.is_integer and x._shape:
        return P.gather(x, (idx,), (0,))
    return _Plan(x, idx, "getitem").get(x)


def _basic(x: array, items: tuple):
    """``x[items]`` for tuples of ints, slices, None and Ellipsis (else None: use a plan)."""
    shape = x._shape
    ndim = len(shape)
    n_real = 0
    seen_ellipsis = False
    for it in items:
        t = type(it)
        if t is int or t is _pyslice:
            n_real += 1
        elif it is Ellipsis:
            if seen_ellipsis:
                return None
            seen_ellipsis = True
        elif it is not None:
            return None
    if n_real > ndim:
        return None
    start, stop, strides, box_shape, out = [], [], [], [], []
    trivial = True
    d = 0
    for it in items:
        if it is None:
            out.append(1)
            continue
        if it is Ellipsis:
            for _ in range(ndim - n_real):
                n = shape[d]
                start.append(0)
                stop.append(n)
                strides.append(1)
                box_shape.append(n)
                out.append(n)
                d += 1
            continue
        n = shape[d]
        if type(it) is int:
            if it < -n or it >= n:
                raise IndexError(f"[getitem] Index {it} is out of bounds for axis {d} with size {n}.")
            it %= n
            start.append(it)
            stop.append(it + 1)
            strides.append(1)
            box_shape.append(1)
            trivial = False
        else:
            if it.step == 0:
                return None
            b, e, st = it.indices(n)
            if st < 0 and e < 0:
                e = -1
            size = len(range(b, e, st))
            if b != 0 or st != 1 or size != n:
                trivial = False
            start.append(b)
            stop.append(e)
            strides.append(st)
            box_shape.append(size)
            out.append(size)
        d += 1
    for k in range(d, ndim):
        n = shape[k]
        start.append(0)
        stop.append(n)
        strides.append(1)
        box_shape.append(n)
        out.append(n)
    y = x
    if not trivial:
        box = P.Slice(tuple(start), tuple(stop), tuple(strides))
        y = _make(tuple(box_shape), x._dtype, box, (x,), x._stream)
    out = tuple(out)
    return y if out == y._shape else _reshape(y, out)


def _setitem(x: array, idx, value) -> array:
    """The array ``x`` with ``x[idx] = value`` applied (returned; ``x`` is unchanged).

    ``value`` is broadcast to ``x[idx]``'s shape and cast to ``x``'s dtype;
    with repeated indices the last update wins.
    """
    return _Plan(x, idx, "setitem").update(x, _update_value(x, value), None)


class _ArrayAt:
    """``x.at[idx]``: updates that accumulate over repeated indices."""

    __slots__ = ("_x", "_idx")

    def __init__(self, x: array, idx):
        self._x = x
        self._idx = idx

    def _apply(self, v, mode: str, combine):
        x = self._x
        plan = _Plan(x, self._idx, "at")
        v = _update_value(x, v)
        return plan.update(x, v, mode if plan.idx is not None else combine)

    def add(self, values) -> array:
        """``x`` with ``values`` added at the indices (repeats accumulate)."""
        return self._apply(values, "add", add)

    def subtract(self, values) -> array:
        """``x`` with ``values`` subtracted at the indices (repeats accumulate)."""
        return self._apply(negative(_update_value(self._x, values)), "add", add)

    def multiply(self, values) -> array:
        """``x`` multiplied by ``values`` at the indices (repeats accumulate)."""
        return self._apply(values, "prod", multiply)

    def divide(self, values) -> array:
        """``x`` divided by ``values`` at the indices (repeats accumulate).

        Integer arrays are divided by the product of their updates and
        truncated, as ``(x / v).astype(x.dtype)`` would.
        """
        x = self._x
        v = _update_value(x, values)
        if x.dtype.is_inexact:
            return self._apply(_ew.divide(_sh.ones((), v.dtype), v), "prod", _ew.multiply)
        total = _ArrayAt(_sh.ones(x.shape, x.dtype), self._idx).multiply(v)
        return _ew.astype(_ew.divide(x, total), x.dtype)

    def maximum(self, values) -> array:
        """Elementwise maximum of ``x`` and ``values`` at the indices."""
        return self._apply(values, "max", _ew.maximum)

    def minimum(self, values) -> array:
        """Elementwise minimum of ``x`` and ``values`` at the indices."""
        return self._apply(values, "min", _ew.minimum)


class _AtIndexer:
    """The object behind ``x.at``: ``x.at[idx]`` gives the update methods."""

    __slots__ = ("_x",)

    def __init__(self, x: array):
        self._x = x

    def __getitem__(self, idx) -> _ArrayAt:
        return _ArrayAt(self._x, idx)


# ---------------------------------------------------------------- take / put
def _int_indices(indices, op: str) -> array:
    idx = as_array(indices)
    if not idx.dtype.is_integer:
        raise ValueError(f"[{op}] Got indices with invalid dtype. Indices must be integral.")
    return idx


def take(a, /, indices, axis=None, *, stream=None) -> array:
    """Elements of ``a`` at ``indices`` along ``axis`` (of the flattened array if None).

    Args:
        a: input array.
        indices: an int or an integer array.
        axis: the axis to take along; None flattens ``a`` first.

    Returns:
        ``a.shape[:axis] + indices.shape + a.shape[axis + 1:]`` elements.
    """
    a = as_array(a)
    if axis is None:
        a = reshape(a, (-1,))
        axis = 0
    else:
        if a.ndim == 0 or not -a.ndim <= axis < a.ndim:
            raise IndexError(f"[take] Received invalid axis {axis} for array with {a.ndim} dimensions.")
        axis %= a.ndim
    if isinstance(indices, (int, np.integer)) and not isinstance(indices, bool):
        return _getitem(a, (_pyslice(None),) * axis + (int(indices),))
    idx = _int_indices(indices, "take")
    return P.gather(a, [idx], (axis,))


def _along_axis_args(a, indices, axis, op):
    a = as_array(a)
    idx = _int_indices(indices, op)
    if axis is None:
        a = reshape(a, (-1,))
        if idx.ndim != 1:
            idx = reshape(idx, (-1,))
        axis = 0
    else:
        if not -a.ndim <= axis < a.ndim:
            raise IndexError(f"[{op}] Axis {axis} is out of bounds for array with {a.ndim} dimensions.")
        axis %= a.ndim
    if idx.ndim != a.ndim:
        raise ValueError(f"[{op}] Indices of dimension {idx.ndim} does not match array of dimension {a.ndim}.")
    return a, idx, axis


def take_along_axis(a, /, indices, axis=-1, *, stream=None) -> array:
    """Values of ``a`` at ``indices`` along ``axis``; other axes broadcast.

    Args:
        a: input array.
        indices: integer array with ``a``'s number of dimensions.
        axis: the axis to index; None flattens ``a`` first.

    Returns:
        An array of the broadcast index shape.
    """
    a, idx, axis = _along_axis_args(a, indices, axis, "take_along_axis")
    other = broadcast_shapes(_drop(a.shape, axis), _drop(idx.shape, axis))
    a_shape = _put(other, axis, a.shape[axis])
    i_shape = _put(other, axis, idx.shape[axis])
    if a.shape != a_shape:
        a = _broadcast(a, a_shape)
    if idx.shape != i_shape:
        idx = _broadcast(idx, i_shape)
    return P.gather_axis(a, idx, axis)


def put_along_axis(a, /, indices, values, axis=None, *, stream=None) -> array:
    """``a`` with ``values`` written at ``indices`` along ``axis`` (last write wins).

    Args:
        a: destination array.
        indices: integer array with ``a``'s number of dimensions.
        values: values broadcastable with the indices; cast to ``a``'s dtype.
        axis: the axis to index; None flattens ``a`` first.

    Returns:
        An array of ``a``'s shape and dtype.
    """
    a0 = as_array(a)
    a, idx, ax = _along_axis_args(a0, indices, axis, "put_along_axis")
    v = _update_value(a, values)
    if v.ndim > a.ndim:
        raise ValueError(f"[put_along_axis] Values of dimension {v.ndim} does not match array of "
                         f"dimension {a.ndim}.")
    # Indices and values broadcast together along ``axis``; elsewhere to ``a``'s shape.
    vs = (1,) * (a.ndim - v.ndim) + v.shape
    n = broadcast_shapes((idx.shape[ax],), (vs[ax],))[0]
    shape = _put(_drop(a.shape, ax), ax, n)
    if idx.shape != shape:
        idx = _broadcast(idx, shape)
    if v.shape != shape:
        v = _broadcast(v, shape)
    out = P.scatter_axis(a, v, idx, ax, "set")
    if axis is None:
        out = _reshape(out, a0.shape)
    return out


def _drop(shape, axis):
    return shape[:axis] + shape[axis + 1:]


def _put(shape, axis, n):
    return shape[:axis] + (n,) + shape[axis:]


# ---------------------------------------------------------------- dynamic slices
def _slice_starts(a, start_indices, axes, op):
    start = as_array(start_indices)
    if not start.dtype.is_integer:
        raise ValueError(f"[{op}] Start indices must be integers, got type {start.dtype.name}.")
    if start.ndim > 1:
        raise ValueError(f"[{op}] array of starting indices must be zero or one dimensional but has "
                         f"dimension {start.ndim}.")
    axes = tuple(axes)
    norm = []
    for ax in axes:
        if not -a.ndim <= ax < a.ndim:
            raise IndexError(f"[{op}] Invalid axis {ax} for array with dimension {a.ndim}.")
        norm.append(ax % a.ndim)
    if len(set(norm)) != len(norm):
        raise ValueError(f"[{op}] Repeat axes not allowed.")
    n = 1 if start.ndim == 0 else start.shape[0]
    if start.ndim and n != len(norm):
        raise ValueError(f"[{op}] Number of starting indices {n} does not match number of axes {len(norm)}.")
    return start, tuple(norm)


def _clamped_start(start, k, hi):
    """Start ``k`` of ``start`` as a 0-d int32, clamped to ``[0, hi]`` (as JAX does)."""
    s = start if start.ndim == 0 else _getitem(start, k)
    s = _ew.astype(s, _dt.int32)
    return _ew.minimum(_ew.maximum(s, _sh.zeros((), _dt.int32)), scalar(hi, _dt.int32))


def slice(a, /, start_indices, axes, slice_size, *, stream=None) -> array:
    """The box of ``slice_size`` starting at ``start_indices`` on ``axes`` (0 elsewhere).

    Starts may be computed arrays (the slice is traced, so it works under
    every transformation); they are clamped so the box fits in ``a``.

    Args:
        a: input array.
        start_indices: integer array, one start per axis in ``axes``.
        axes: the axes the starts apply to.
        slice_size: the size of the box along every axis of ``a``.

    Returns:
        An array of shape ``slice_size``.
    """
    a = as_array(a)
    start, axes = _slice_starts(a, start_indices, axes, "slice")
    size = tuple(int(s) for s in slice_size)
    if len(size) != a.ndim:
        raise ValueError(f"[slice] Invalid slice size for array with {a.ndim} dimensions.")
    if any(s < 0 or s > d for s, d in zip(size, a.shape)):
        raise ValueError(f"[slice] Invalid slice size {shape_str(size)} for array with shape {shape_str(a.shape)}.")
    y = a
    stops = tuple(d if i in axes else s for i, (s, d) in enumerate(zip(size, a.shape)))
    if stops != a.shape:
        y = P.slice_(y, P.Slice((0,) * a.ndim, stops, (1,) * a.ndim))
    for k, ax in enumerate(axes):
        off = _clamped_start(start, k, a.shape[ax] - size[ax])
        idx = _ew.add(_sh.arange(size[ax], dtype=_dt.int32), off)
        y = P.gather(y, [idx], (ax,))
    return y


def slice_update(a, /, update, start_indices, axes, *, stream=None) -> array:
    """``a`` with the box at ``start_indices`` on ``axes`` replaced by ``update``.

    The box has ``update``'s shape (left-padded with ones to ``a``'s rank);
    starts are clamped so it fits; ``update`` is cast to ``a``'s dtype.

    Args:
        a: the array to update.
        update: the new values.
        start_indices: integer array, one start per axis in ``axes``.
        axes: the axes the starts apply to.

    Returns:
        An array of ``a``'s shape and dtype.
    """
    a = as_array(a)
    u = _update_value(a, update)
    start, axes = _slice_starts(a, start_indices, axes, "slice_update")
    if u.ndim > a.ndim:
        raise ValueError(f"[slice_update] Update of shape {shape_str(u.shape)} has more dimensions than "
                         f"the array of shape {shape_str(a.shape)}.")
    ushape = (1,) * (a.ndim - u.ndim) + u.shape
    size = tuple(min(s, d) for s, d in zip(ushape, a.shape))
    u = _broadcast(_reshape(u, ushape) if ushape != u.shape else u, size)
    if not axes:
        box = P.Slice((0,) * a.ndim, size, (1,) * a.ndim)
        return P.slice_update(a, u, box)
    order = sorted(range(len(axes)), key=lambda k: axes[k])
    sorted_axes = tuple(axes[k] for k in order)
    mesh = tuple(size[ax] for ax in sorted_axes)
    idx = []
    for j, k in enumerate(order):
        ax = axes[k]
        off = _clamped_start(start, k, a.shape[ax] - size[ax])
        i = _ew.add(_sh.arange(size[ax], dtype=_dt.int32), off)
        i = _reshape(i, tuple(size[ax] if q == j else 1 for q in range(len(mesh))))
        idx.append(_broadcast(i, mesh))
    # Other axes start at 0: a static box around the scatter.
    stops = tuple(d if i in axes else s for i, (s, d) in enumerate(zip(size, a.shape)))
    box = None if stops == a.shape else P.Slice((0,) * a.ndim, stops, (1,) * a.ndim)
    if not P.consecutive(sorted_axes):
        rest = [i for i in range(a.ndim) if i not in sorted_axes]
        u = _transpose(u, list(sorted_axes) + rest)
    y = a if box is None else P.slice_(a, box)
    y = P.scatter(y, u, idx, sorted_axes, "set")
    return y if box is None else P.slice_update(a, y, box)

