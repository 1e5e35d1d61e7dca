"""The primitive base classes and the family helpers most rules are built from.

A primitive is one class holding every rule for one operation:

* ``eval(xp, *buffers)`` computes output buffer(s) with the array namespace
  ``xp`` (NumPy or CuPy). It returns one buffer, or a tuple when the
  primitive has several outputs (``n_outputs > 1``).
* ``vjp(primals, cotangents, argnums, outputs)`` returns one cotangent per
  entry of ``argnums`` (``cotangents`` has one entry per output).
* ``jvp(primals, tangents, argnums, outputs)`` returns one tangent per
  output; ``tangents[i]`` is the tangent of ``primals[argnums[i]]`` and
  ``outputs`` are the primitive's own outputs (so ``exp`` can reuse them).
* ``vmap(inputs, axes)`` returns ``(outputs, out_axes)``; ``axes[i]`` is the
  batched axis of ``inputs[i]`` or ``None``.
* ``output_shapes(inputs)`` returns the output shapes (used by shapeless
  compile to replay a graph on new shapes).

Rules are written with the ops (``from kiln.primitives.base import ops as mx``: the ops
floor, reached at rule time), so their results are ordinary graphs that every
transformation can walk again.
Parameters are dataclass fields: equality and hashing come free, and
``compile`` uses them for common-subexpression elimination and cache keys.
"""
from __future__ import annotations

import dataclasses

from kiln.graph.array import _make, _make_multi


class _RuleOps:
    """The ops floor (``kiln.ops``) as the rules see it: looked up when a rule runs.

    This is the layering contract's one sanctioned upward reference: a primitive's rule builds
    ops at call time (as MLX's primitives call its ops), through this module reference, never
    at import time. ``kiln.ops`` imports the primitives, so a module-level import here would
    be a cycle.
    """

    __slots__ = ()

    def __getattr__(self, name):
        import kiln.ops  # the sanctioned rule-time import (see pyproject's contract)

        return getattr(kiln.ops, name)


ops = _RuleOps()
mx = ops  # the rules below are written against the ops namespace as ``mx``


def primitive(cls):
    """Class decorator: make a primitive's parameters dataclass fields."""
    return dataclasses.dataclass(unsafe_hash=True, repr=True)(cls)


class Primitive:
    """Base of every primitive. Subclasses override the rules they have."""

    n_outputs = 1

    @property
    def name(self) -> str:
        return type(self).__name__

    def eval(self, xp, *inputs):
        raise NotImplementedError(f"[eval] Not implemented for {self.name}.")

    def vjp(self, primals, cotangents, argnums, outputs):
        raise NotImplementedError(f"[vjp] Not implemented for {self.name}.")

    def jvp(self, primals, tangents, argnums, outputs):
        raise NotImplementedError(f"[jvp] Not implemented for {self.name}.")

    def vmap(self, inputs, axes):
        raise NotImplementedError(f"[vmap] Not implemented for {self.name}.")

    def output_shapes(self, inputs):
        raise NotImplementedError(f"[output_shapes] Not implemented for {self.name}.")

    # Used by compile's fusion: an elementwise primitive gives a template
    # such as "sin({0})"; others leave it None.
    expr = None

    def apply(self, inputs, shape, dtype, stream=None):
        """Build a node of this primitive (no validation: for rules)."""
        return _make(tuple(shape), dtype, self, tuple(inputs),
                     stream if stream is not None else inputs[0]._stream)

    def apply_multi(self, inputs, shapes, dtypes, stream=None):
        return _make_multi(shapes, dtypes, self, tuple(inputs),
                           stream if stream is not None else inputs[0]._stream)


# ---------------------------------------------------------------- helpers
def unbroadcast(g, shape: tuple):
    """Sum ``g`` down to ``shape`` (the VJP of NumPy-style broadcasting)."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    axes = list(range(extra))
    for i, s in enumerate(shape):
        if s == 1 and g.shape[extra + i] != 1:
            axes.append(extra + i)
    if axes:
        g = mx.sum(g, axis=axes, keepdims=True)
    if extra:
        g = mx.reshape(g, shape)
    return g


def to_front(x, ax):
    """Move batch axis ``ax`` of ``x`` to position 0 (None stays unbatched)."""
    if ax is None or ax == 0:
        return x
    return mx.moveaxis(x, ax, 0)


def batch_size(inputs, axes) -> int:
    for x, a in zip(inputs, axes):
        if a is not None:
            return x.shape[a]
    raise ValueError("[vmap] No batched input.")


def align_batched(inputs, axes):
    """Batched inputs with the batch at axis 0 and all ranks padded to match.

    Unbatched inputs are left as they are (NumPy broadcasting aligns them
    with the trailing, unbatched axes). Returns the new inputs.
    """
    rank = max(x.ndim - (a is not None) for x, a in zip(inputs, axes))
    out = []
    for x, a in zip(inputs, axes):
        if a is None:
            out.append(x)
            continue
        x = to_front(x, a)
        missing = rank - (x.ndim - 1)
        if missing:
            x = mx.reshape(x, (x.shape[0],) + (1,) * missing + x.shape[1:])
        out.append(x)
    return out


def broadcast_shapes(*shapes) -> tuple:
    """NumPy broadcasting of shapes; raises ValueError naming the shapes."""
    if len(shapes) == 2:
        a, b = shapes
        if a == b or not b:
            return a
        if not a:
            return b
    ndim = max(len(s) for s in shapes)
    out = [1] * ndim
    for s in shapes:
        off = ndim - len(s)
        for i, d in enumerate(s):
            o = out[off + i]
            if o == 1:
                out[off + i] = d
            elif d != 1 and d != o:
                raise ValueError(
                    "[broadcast_shapes] Shapes "
                    + " and ".join("(" + ",".join(str(v) for v in sh) + ")" for sh in shapes)
                    + " cannot be broadcast."
                )
    return tuple(out)


def _conj_if_complex(d):
    # The VJP of a holomorphic op multiplies by the conjugate derivative (so
    # grad of real(f(z)) is conj(f'(z)), as in MLX and JAX); real dtypes skip it.
    if isinstance(d, mx.array) and d.dtype is mx.complex64:
        return mx.conj(d)
    return d


def zeros_like_cot(x):
    return mx.zeros(x.shape, x.dtype)


# ---------------------------------------------------------------- families
class UnaryElementwise(Primitive):
    """``y = f(x)`` elementwise. Subclasses give ``eval``, ``vjp``/``jvp``
    via ``deriv`` (dy/dx as an array expression), and optionally ``out_dtype``."""

    def out_dtype(self, dtype):
        return dtype

    def deriv(self, x, y):
        """dy/dx at ``x`` (``y`` is the output), built from ops."""
        raise NotImplementedError(f"[vjp] Not implemented for {self.name}.")

    def vjp(self, primals, cotangents, argnums, outputs):
        return [cotangents[0] * _conj_if_complex(self.deriv(primals[0], outputs[0]))]

    def jvp(self, primals, tangents, argnums, outputs):
        return [tangents[0] * self.deriv(primals[0], outputs[0])]

    def vmap(self, inputs, axes):
        x = inputs[0]
        return [self.apply([x], x.shape, self.out_dtype(x.dtype))], [axes[0]]

    def output_shapes(self, inputs):
        return [inputs[0].shape]


class NonDifferentiableUnary(UnaryElementwise):
    """Elementwise ops with zero derivative (floor, sign, isnan, ...)."""

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.zeros_like(primals[0])]

    def jvp(self, primals, tangents, argnums, outputs):
        x = primals[0]
        return [mx.zeros(x.shape, self.out_dtype(x.dtype))]


class BinaryElementwise(Primitive):
    """``z = f(x, y)`` with NumPy broadcasting of the two inputs.

    Ops pass inputs of one dtype whose shapes broadcast (0-d scalars and
    bias-style shapes need no Broadcast node); ``vjp`` results are summed
    back to each input's shape by ``unbroadcast``. Subclasses give
    ``eval`` and ``derivs(x, y, z) -> (dz/dx, dz/dy)``.
    """

    def out_dtype(self, dtype):
        return dtype

    def derivs(self, x, y, z):
        raise NotImplementedError(f"[vjp] Not implemented for {self.name}.")

    def vjp(self, primals, cotangents, argnums, outputs):
        x, y = primals
        d = self.derivs(x, y, outputs[0])
        g = cotangents[0]
        return [unbroadcast(g * _conj_if_complex(d[i]), primals[i].shape) for i in argnums]

    def jvp(self, primals, tangents, argnums, outputs):
        x, y = primals
        z = outputs[0]
        d = self.derivs(x, y, z)
        out = None
        for t, i in zip(tangents, argnums):
            term = t * d[i]
            out = term if out is None else out + term
        return [mx.broadcast_to(out, z.shape)]

    def vmap(self, inputs, axes):
        xs = align_batched(inputs, axes)
        shape = broadcast_shapes(*(x.shape for x in xs))
        return [self.apply(xs, shape, self.out_dtype(xs[0].dtype))], [0]

    def output_shapes(self, inputs):
        return [broadcast_shapes(inputs[0].shape, inputs[1].shape)]


class NonDifferentiableBinary(BinaryElementwise):
    """Comparisons, bitwise and logical ops: zero cotangents and tangents."""

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.zeros_like(primals[i]) for i in argnums]

    def jvp(self, primals, tangents, argnums, outputs):
        x, y = primals
        return [mx.zeros(broadcast_shapes(x.shape, y.shape), self.out_dtype(x.dtype))]


class Reduction(Primitive):
    """Reductions over ``axes`` (a sorted tuple of non-negative ints).

    Output keeps the reduced axes as size 1 when ``keepdims``; ops call the
    primitive with the axes already normalised.
    """

    def out_dtype(self, dtype):
        return dtype

    def _out_shape(self, shape, axes, keepdims):
        if keepdims:
            return tuple(1 if i in axes else s for i, s in enumerate(shape))
        return tuple(s for i, s in enumerate(shape) if i not in axes)

    def output_shapes(self, inputs):
        return [self._out_shape(inputs[0].shape, self.axes, self.keepdims)]

    def vmap(self, inputs, axes):
        x = to_front(inputs[0], axes[0])
        prim = dataclasses.replace(self, axes=tuple(a + 1 for a in self.axes))
        shape = prim._out_shape(x.shape, prim.axes, prim.keepdims)
        return [prim.apply([x], shape, self.out_dtype(x.dtype))], [0]

    def expand_cotangent(self, g, in_shape):
        """Reshape a cotangent of the output so it broadcasts against the input."""
        if not self.keepdims:
            g = mx.reshape(g, self._out_shape(in_shape, self.axes, True))
        return g
