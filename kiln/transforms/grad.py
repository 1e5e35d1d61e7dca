"""Reverse mode: ``vjp``, ``grad``, ``value_and_grad`` (and ``jacrev``).

``vjp`` gives each primal a fresh ``Copy`` node (a tracer), calls the
function while keeping graphs attached, collects the tape of nodes between
tracers and outputs, and walks it in reverse calling each primitive's
``vjp``; cotangents are summed in a dict keyed by node id. The rules build
ordinary graphs, so the result can be differentiated again.
"""
from __future__ import annotations

from typing import Callable, Sequence

from kiln.graph.array import _make, array
from kiln.graph.eval import toposort
from kiln.primitives.misc import Copy, StopGradient
from kiln._tree import flatten
from kiln.transforms.tracing import keep_graph
from kiln.transforms.vmap import vmap

import kiln.ops as mx
from kiln.ops.normalize import shape_str as _shape_str

_COPY = Copy()


def make_tracers(primals):
    """Fresh nodes standing for the primals (so their uses can be told apart)."""
    return [_make(p._shape, p._dtype, _COPY, (p,), p._stream) for p in primals]


def active_tape(outputs, tracer_ids):
    """Nodes between the tracers and ``outputs`` in topological order, and the set of their ids."""
    order = toposort(outputs)
    active = set(tracer_ids)
    tape = []
    for node in order:
        nid = id(node)
        if nid in active:
            continue
        if type(node._prim) is StopGradient:
            continue
        for i in node._inputs:
            if id(i) in active:
                active.add(nid)
                tape.append(node)
                break
    return tape, active


def conform(value, like):
    """A rule's result as an array of ``like``'s dtype and shape.

    Rules may return Python scalars, another dtype, or a shape that
    broadcasts to the node's; cotangents and tangents must match exactly.
    """
    if not isinstance(value, array):
        value = mx.array(value, dtype=like._dtype)
    if value._dtype is not like._dtype:
        value = mx.astype(value, like._dtype)
    if value._shape != like._shape:
        value = mx.broadcast_to(value, like._shape)
    return value


def backward(tape, active, seeds: dict) -> dict:
    """Walk ``tape`` in reverse from the cotangents in ``seeds`` (id -> array)."""
    cots = seeds
    # A primitive with several outputs runs its vjp once, at the output that
    # comes first in the tape: every consumer of every sibling comes after it,
    # so in the reverse walk all their cotangents have arrived by then.
    first = {}
    for node in tape:
        if node._sibs is not None:
            first.setdefault(id(node._sibs[0]), node)
    for node in reversed(tape):
        sibs = node._sibs
        if sibs is None:
            g = cots.pop(id(node), None)
            if g is None:
                continue
            group = (node,)
            cts = [g]
        else:
            if first[id(sibs[0])] is not node:
                continue
            group = sibs
            cts = [cots.pop(id(s), None) for s in sibs]
            if all(c is None for c in cts):
                continue
            cts = [mx.zeros(s._shape, s._dtype) if c is None else c for s, c in zip(sibs, cts)]
        inputs = node._inputs
        argnums = [i for i, inp in enumerate(inputs) if id(inp) in active]
        grads = node._prim.vjp(list(inputs), cts, argnums, list(group))
        for i, gi in zip(argnums, grads):
            if gi is None:
                continue
            inp = inputs[i]
            gi = conform(gi, inp)
            k = id(inp)
            prev = cots.get(k)
            cots[k] = gi if prev is None else prev + gi
    return cots


def _as_output_list(out, what):
    if isinstance(out, array):
        return [out], True
    if isinstance(out, (list, tuple)) and all(isinstance(o, array) for o in out):
        return list(out), False
    raise ValueError(f"[{what}] The function must return an array or a list/tuple of arrays.")


def vjp_arrays(fun, primals: list, cotangents=None, *, is_grad: bool = False, what="vjp"):
    """Core of reverse mode on flat lists. Returns (outputs, raw_output, vjps).

    With ``cotangents=None`` the first output is seeded with ones (for grad);
    ``raw_output`` is whatever ``fun`` returned.
    """
    tracers = make_tracers(primals)
    with keep_graph():
        raw = fun(*tracers)
    if is_grad:
        outs = raw
    else:
        outs, _ = _as_output_list(raw, what)
    if cotangents is None:
        out0 = outs
        if out0._shape != ():
            raise ValueError(
                f"[vjp] Output shape {_shape_str(out0._shape)} does not match cotangent shape (). "
                "If you are using grad your function must return a scalar."
            )
        outs = [out0]
        cotangents = [mx.ones((), out0._dtype)]
    else:
        if len(cotangents) != len(outs):
            raise ValueError(f"[vjp] Number of outputs to compute gradients for ({len(outs)}) does not "
                             f"match number of cotangents ({len(cotangents)}).")
        cotangents = [c if isinstance(c, array) else mx.array(c) for c in cotangents]
        for o, c in zip(outs, cotangents):
            if o._shape != c._shape:
                raise ValueError(
                    f"[vjp] Output shape {_shape_str(o._shape)} does not match cotangent shape "
                    f"{_shape_str(c._shape)}. If you are using grad your function must return a scalar."
                )
    ids = [id(t) for t in tracers]
    tape, active = active_tape(outs, ids)
    seeds: dict = {}
    for o, c in zip(outs, cotangents):
        if c._dtype is not o._dtype:
            c = mx.astype(c, o._dtype)
        k = id(o)
        seeds[k] = c if k not in seeds else seeds[k] + c
    cots = backward(tape, active, seeds)
    vjps = []
    for t, p in zip(tracers, primals):
        g = cots.get(id(t))
        vjps.append(mx.zeros(p._shape, p._dtype) if g is None else g)
    return outs, raw, vjps


def vjp(fun: Callable, primals: Sequence, cotangents: Sequence):
    """Vector-Jacobian product.

    Args:
        fun: a function of arrays returning an array or a list/tuple of arrays.
        primals: the arrays to evaluate ``fun`` at.
        cotangents: one cotangent per output of ``fun``.
    Returns:
        ``(outputs, vjps)``: lists of arrays.
    """
    primals = [p if isinstance(p, array) else array(p) for p in primals]
    outs, _, vjps = vjp_arrays(fun, list(primals), list(cotangents))
    return outs, vjps


def _normalize_argnums(argnums, argnames, nargs):
    if argnums is None:
        argnums = () if argnames else (0,)
        single = not argnames
    elif isinstance(argnums, int):
        argnums, single = (argnums,), True
    else:
        argnums, single = tuple(argnums), False
    out = []
    for a in argnums:
        b = a + nargs if a < 0 else a
        if b < 0 or b >= nargs:
            raise ValueError(f"[grad] Can't compute the gradient of argument index {a} because the "
                             f"function is called with only {nargs} positional arguments.")
        out.append(b)
    if len(set(out)) != len(out):
        raise ValueError("[grad] Repeat argument index in argnums.")
    return out, single


def _value_and_grad_impl(fun, argnums, argnames, what):
    if isinstance(argnames, str):
        argnames = [argnames]
    argnames = list(argnames)

    def call(*args, **kwargs):
        idx, single = _normalize_argnums(argnums, argnames, len(args))
        for n in argnames:
            if n not in kwargs:
                raise ValueError(f"[{what}] Can't compute the gradient of keyword argument '{n}' because "
                                 "the function is not called with it.")
        trees = [args[i] for i in idx] + [kwargs[n] for n in argnames]
        leaves, unflatten = flatten(trees, "tree_flatten")
        # Call once and keep the full return value for value_and_grad.
        holder = {}

        def traced(*new_leaves):
            new_trees = unflatten(list(new_leaves))
            a = list(args)
            kw = dict(kwargs)
            for j, i in enumerate(idx):
                a[i] = new_trees[j]
            for j, n in enumerate(argnames):
                kw[n] = new_trees[len(idx) + j]
            out = fun(*a, **kw)
            holder["out"] = out
            if isinstance(out, array):
                return out
            if isinstance(out, (list, tuple)) and out and isinstance(out[0], array):
                return out[0]
            raise ValueError(f"[{what}] The function must return an array or a tuple whose first element "
                             "is an array (the scalar to differentiate).")

        _, _, grads = vjp_arrays(traced, leaves, None, is_grad=True, what=what)
        gtrees = unflatten(grads)
        pos = gtrees[: len(idx)]
        kw = {n: gtrees[len(idx) + j] for j, n in enumerate(argnames)}
        if argnames:
            g = (pos[0] if single and pos else (tuple(pos) if pos else None), kw)
        else:
            g = pos[0] if single else tuple(pos)
        return holder["out"], g

    return call


def value_and_grad(fun: Callable, argnums=None, argnames=()):
    """A function returning ``(fun(*args), gradient)``.

    Args:
        fun: returns a scalar array, or a tuple whose first element is the
            scalar to differentiate (the rest is returned untouched).
        argnums: int or sequence of ints: positional arguments to
            differentiate (default 0 when no ``argnames``).
        argnames: keyword arguments to differentiate.
    Returns:
        The wrapped function. Gradients have the structure of the arguments.
    """
    return _value_and_grad_impl(fun, argnums, argnames, "value_and_grad")


def grad(fun: Callable, argnums=None, argnames=()):
    """A function returning the gradient of ``fun`` (see ``value_and_grad``)."""
    vg = _value_and_grad_impl(fun, argnums, argnames, "grad")

    def g(*args, **kwargs):
        return vg(*args, **kwargs)[1]

    return g


def jacrev(fun: Callable, argnums=0):
    """Jacobian by reverse mode (JAX semantics): ``vmap`` of ``vjp`` over output basis vectors.

    The result has shape ``out.shape + arg.shape`` for each differentiated argument.
    """
    def jac(*args):
        idx = [argnums] if isinstance(argnums, int) else list(argnums)
        prim = [args[i] for i in idx]

        def f(*p):
            a = list(args)
            for i, v in zip(idx, p):
                a[i] = v
            return fun(*a)

        out = f(*prim)
        n = out.size
        eye = mx.eye(n, dtype=out.dtype).reshape((n,) + out.shape)

        def row(c):
            return vjp(f, prim, [c])[1]

        rows = vmap(row)(eye)
        res = [mx.reshape(r, out.shape + p.shape) for r, p in zip(rows, prim)]
        return res[0] if isinstance(argnums, int) else tuple(res)

    return jac

