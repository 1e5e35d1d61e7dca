"""Forward mode: ``jvp`` (and ``jacfwd``, ``hessian``).

The function is called on tracers with graphs kept; the tape between tracers
and outputs is walked forward calling each primitive's ``jvp``.
"""
from __future__ import annotations

from typing import Callable, Sequence

from kiln.graph.array import array
from kiln.graph.eval import applications
from kiln.transforms.grad import _as_output_list, active_tape, conform, make_tracers
from kiln.transforms.tracing import keep_graph
from kiln.transforms.grad import grad
from kiln.transforms.vmap import vmap

import kiln.ops as mx


def forward(tape, tangents: dict) -> dict:
    """Push tangents (id -> array) through ``tape``; returns the tangent dict."""
    for node, group in applications(tape):
        inputs = node._inputs
        argnums = [i for i, inp in enumerate(inputs) if id(inp) in tangents]
        if not argnums:
            continue
        ts = [tangents[id(inputs[i])] for i in argnums]
        outs = node._prim.jvp(list(inputs), ts, argnums, list(group))
        for s, t in zip(group, outs):
            if t is not None:
                tangents[id(s)] = conform(t, s)
    return tangents


def jvp_arrays(fun, primals: list, tangents: list, what: str = "jvp"):
    for p, t in zip(primals, tangents):
        if p._shape != t._shape:
            raise ValueError(f"[{what}] Primal shape {p._shape} does not match tangent shape {t._shape}.")
    tracers = make_tracers(primals)
    with keep_graph():
        raw = fun(*tracers)
    outs, _ = _as_output_list(raw, what)
    tape, _ = active_tape(outs, [id(t) for t in tracers])
    tans = {id(tr): (t if t._dtype is tr._dtype else mx.astype(t, tr._dtype)) for tr, t in zip(tracers, tangents)}
    tans = forward(tape, tans)
    res = []
    for o in outs:
        t = tans.get(id(o))
        res.append(mx.zeros(o._shape, o._dtype) if t is None else t)
    return outs, res


def jvp(fun: Callable, primals: Sequence, tangents: Sequence):
    """Jacobian-vector product.

    Args:
        fun: a function of arrays returning an array or a list/tuple of arrays.
        primals: the arrays to evaluate ``fun`` at.
        tangents: one tangent per primal, of the same shape.
    Returns:
        ``(outputs, jvps)``: lists of arrays.
    """
    if len(primals) != len(tangents):
        raise ValueError(f"[jvp] Number of inputs ({len(primals)}) does not match number of tangents "
                         f"({len(tangents)}).")
    primals = [p if isinstance(p, array) else array(p) for p in primals]
    tangents = [t if isinstance(t, array) else array(t) for t in tangents]
    return jvp_arrays(fun, primals, tangents)


def jacfwd(fun: Callable, argnums=0):
    """Jacobian by forward mode (JAX semantics): ``vmap`` of ``jvp`` over input basis vectors.

    The result has shape ``out.shape + arg.shape`` for each differentiated argument.
    """
    def jac(*args):
        idx = [argnums] if isinstance(argnums, int) else list(argnums)
        res = []
        for i in idx:
            x = args[i]

            def f(v, i=i):
                a = list(args)
                a[i] = v
                return fun(*a)

            n = x.size
            basis = mx.eye(n, dtype=x.dtype).reshape((n,) + x.shape)
            cols = vmap(lambda t: jvp(f, [x], [t])[1][0])(basis)  # (n,) + out.shape
            out_nd = cols.ndim - 1
            cols = mx.moveaxis(cols, 0, -1) if out_nd else cols
            res.append(mx.reshape(cols, cols.shape[:out_nd] + x.shape))
        return res[0] if isinstance(argnums, int) else tuple(res)

    return jac


def hessian(fun: Callable, argnums=0):
    """The Hessian: forward-over-reverse, ``jacfwd(grad(fun))``."""
    return jacfwd(grad(fun, argnums=argnums), argnums=argnums)
