"""Structured control flow (kiln extensions, not in MLX): ``cond``, ``switch``,
``while_loop``, ``fori_loop`` and ``scan`` over trees of arrays.

Each body is traced once on placeholders into a ``Body`` (a compile plan:
simplified, fused, replayed by one generated function per call) held by one
primitive of ``kiln/primitives/control_flow.py``; the loop itself runs in that
primitive's ``eval``. Carries keep their tree structure, shapes and dtypes:
a body that changes them raises an error naming the leaf. See
``docs/control-flow.md``.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from kiln.dtypes import promote_types
from kiln.graph.array import array
from kiln.primitives import control_flow as _prims
from kiln.primitives.control_flow import build_scan, build_switch, build_while
from kiln.transforms.compile import _Plan
from kiln.transforms.grad import vjp
from kiln.transforms.jvp import jvp
from kiln.transforms.tracing import placeholder
from kiln.transforms.vmap import vmap

import kiln.ops as mx

# The rules of the control-flow primitives transform their bodies (see _prims._Transforms).
_prims.transforms.vjp, _prims.transforms.jvp, _prims.transforms.vmap = vjp, jvp, vmap

__all__ = ["cond", "switch", "while_loop", "fori_loop", "scan"]


# ---------------------------------------------------------------- the traced body
class Body:
    """A function of flat arrays traced once on placeholders.

    ``run(xp, bufs)`` replays the plan on buffers (explicit inputs, then
    ``captured``); ``graph(arrays)`` rebuilds the traced graph from ordinary
    ops on arrays (for the transformation rules). Equality is identity.
    """

    def __init__(self, fn: Callable, avals, name: str):
        # Placeholders named after the construct: evaluating one inside a body
        # raises "[scan] Attempting to eval an array during function transformations ...".
        phs = [placeholder(s, d, name.split()[0], st) for s, d, st in avals]
        outs = list(fn(*phs))
        for o in outs:
            if not isinstance(o, array):  # rules and wrappers return arrays only
                raise TypeError(f"[{name}] Traced bodies must return arrays, got {type(o).__name__}.")
        self.name = name
        self.plan = _Plan(phs, len(phs), outs, None, len(outs), [], False, name)
        self.n_in = len(phs)
        self.captured = list(self.plan.captured)
        self.in_shapes = [p._shape for p in phs]
        self.out_shapes = [tuple(s) for s in self.plan.out_shapes]
        self.out_dtypes = list(self.plan.out_dtypes)

    @classmethod
    def trace(cls, fn: Callable, avals, name: str) -> "Body":
        return cls(fn, avals, name)

    def __repr__(self) -> str:
        return f"Body({self.name})"

    def run(self, xp, bufs):
        return self.plan.run(xp, bufs)

    def graph(self, inputs) -> list:
        return self.plan.graph(list(inputs))


# ---------------------------------------------------------------- trees with paths
_SCALARS = (bool, int, float, np.number, np.bool_, np.ndarray)


def _flatten(tree, root: str, what: str, scalars: bool = False):
    """``(leaves, paths, spec)``; None is an empty subtree.

    Python and NumPy scalars become arrays, unless ``scalars`` keeps them as
    they are (for the caller to give them a dtype).
    """
    leaves: list = []
    paths: list = []
    spec = _spec(tree, root, leaves, paths, what, None if scalars else mx)
    return leaves, paths, spec


def _spec(t, path, leaves, paths, what, mx):
    if t is None:
        return ("N",)
    if isinstance(t, array) or isinstance(t, _SCALARS):
        leaves.append(t if isinstance(t, array) or mx is None else mx.array(t))
        paths.append(path)
        return ("A",)
    if isinstance(t, (list, tuple)):
        return ("S", type(t), tuple(_spec(v, f"{path}[{i}]", leaves, paths, what, mx) for i, v in enumerate(t)))
    if isinstance(t, dict):
        keys = tuple(t.keys())
        return ("D", keys, tuple(_spec(t[k], f"{path}[{k!r}]", leaves, paths, what, mx) for k in keys))
    raise TypeError(f"[{what}] {path} is a {type(t).__name__}: the leaves of a tree must be arrays or scalars.")


def _unflatten(spec, leaves):
    return _rebuild(spec, iter(leaves))


def _rebuild(s, it):
    head = s[0]
    if head == "N":
        return None
    if head == "A":
        return next(it)
    if head == "S":
        vals = [_rebuild(v, it) for v in s[2]]
        kind = s[1]
        if kind is list or kind is tuple:
            return kind(vals)
        return kind(*vals)  # namedtuple
    return {k: _rebuild(v, it) for k, v in zip(s[1], s[2])}


def _spec_str(s) -> str:
    head = s[0]
    if head == "N":
        return "None"
    if head == "A":
        return "*"
    if head == "S":
        inner = ", ".join(_spec_str(v) for v in s[2])
        return f"[{inner}]" if s[1] is list else f"({inner}{',' if len(s[2]) == 1 else ''})"
    return "{" + ", ".join(f"{k!r}: {_spec_str(v)}" for k, v in zip(s[1], s[2])) + "}"


def _shape_str(s) -> str:
    return "(" + ",".join(str(v) for v in s) + ")"


def _conform_to(what: str, role: str, tree, spec, likes, paths, ref_role: str) -> list:
    """Leaves of ``tree`` after checking it has ``spec`` and the shapes/dtypes of ``likes``.

    Python scalars take the dtype of the leaf they stand for.
    """
    leaves, _, got = _flatten(tree, "out", what, scalars=True)
    head = role[0].upper() + role[1:]
    if got != spec:
        raise ValueError(f"[{what}] {head} has the tree structure {_spec_str(got)}, but {ref_role} has "
                         f"{_spec_str(spec)}; they must match.")
    out = []
    for leaf, like, path in zip(leaves, likes, paths):
        if not isinstance(leaf, array):
            leaf = mx.array(leaf, dtype=like._dtype)
        if leaf._shape != like._shape:
            raise ValueError(f"[{what}] {head} changes the shape of {path}: {_shape_str(like._shape)} in "
                             f"{ref_role} but {_shape_str(leaf._shape)} in {role}.")
        if leaf._dtype is not like._dtype:
            raise TypeError(f"[{what}] {head} changes the dtype of {path}: {like._dtype.name} in {ref_role} "
                            f"but {leaf._dtype.name} in {role}. Cast it (e.g. with .astype) to keep it fixed.")
        out.append(leaf)
    return out


def _scalar_index(x, what: str, role: str):
    if not isinstance(x, array):
        x = mx.array(x)
    if x.ndim != 0:
        raise ValueError(f"[{what}] The {role} must be a scalar, but it has shape {_shape_str(x.shape)}.")
    return x


# ---------------------------------------------------------------- cond / switch
def cond(pred, true_fun: Callable, false_fun: Callable, *operands):
    """``true_fun(*operands)`` if ``pred`` else ``false_fun(*operands)``, as one node.

    A kiln extension (not in MLX). Both branches are traced once; only the
    chosen one runs. Under ``vmap`` with a batched ``pred`` both run and
    their results are selected per element.

    Args:
        pred: a scalar array (nonzero is true) or Python bool.
        true_fun: a function of ``*operands`` returning a tree of arrays.
        false_fun: the same, returning a tree of the same structure, shapes and dtypes.
        *operands: trees of arrays passed to the branch.

    Returns:
        The chosen branch's result.
    """
    p = _scalar_index(pred, "cond", "predicate")
    index = mx.astype(mx.astype(p, mx.bool_), mx.int32)
    return _switch(index, [false_fun, true_fun], operands, "cond", ["false_fun", "true_fun"])


def switch(index, branches: Sequence[Callable], *operands):
    """``branches[index](*operands)`` as one node (``index`` clamped to the valid range).

    A kiln extension (not in MLX), like ``jax.lax.switch``.

    Args:
        index: a scalar integer array or Python int.
        branches: a non-empty sequence of functions of ``*operands`` whose
            results have one tree structure, shapes and dtypes.
        *operands: trees of arrays passed to the branch.

    Returns:
        The chosen branch's result.
    """
    if callable(branches) or not isinstance(branches, (list, tuple)) or not branches:
        raise ValueError("[switch] branches must be a non-empty list or tuple of functions.")
    for k, b in enumerate(branches):
        if not callable(b):
            raise TypeError(f"[switch] branches[{k}] is a {type(b).__name__}, not a function.")
    i = _scalar_index(index, "switch", "index")
    if not (i.dtype.is_integer or i.dtype is mx.bool_):
        raise TypeError(f"[switch] The index must be an integer scalar, but it has dtype {i.dtype.name}.")
    if i.dtype is not mx.int32:
        i = mx.astype(i, mx.int32)
    return _switch(i, list(branches), operands, "switch", [f"branches[{k}]" for k in range(len(branches))])


def _switch(index, fns, operands, what, names):
    leaves, _, spec = _flatten(tuple(operands), "operands", what)
    ref: dict = {}

    def wrap(k):
        fn = fns[k]

        def traced(*phs):
            out = fn(*_unflatten(spec, phs))
            if not ref:
                o_leaves, o_paths, o_spec = _flatten(out, "out", what)
                ref.update(spec=o_spec, likes=o_leaves, paths=o_paths, name=names[k])
                return o_leaves
            return _conform_to(what, f"the result of {names[k]}", out, ref["spec"], ref["likes"],
                               ref["paths"], f"the result of {ref['name']}")

        return traced

    outs = build_switch(Body, index, [wrap(k) for k in range(len(fns))], leaves, what)
    return _unflatten(ref["spec"], outs)


# ---------------------------------------------------------------- loops
def while_loop(cond_fun: Callable, body_fun: Callable, init_val, max_iters: Optional[int] = None):
    """``val = init_val; while cond_fun(val): val = body_fun(val)``, as one node.

    A kiln extension (not in MLX). Unlike ``jax.lax.while_loop`` it is
    differentiable in reverse mode: the backward node runs the loop again,
    recording the trip count and the carries (every carry, or with
    ``max_iters`` one every ``ceil(sqrt(max_iters))`` steps, recomputing the
    rest, so memory stays bounded).

    Args:
        cond_fun: a function of the carry returning a scalar (nonzero: go on).
        body_fun: a function of the carry returning a carry of the same tree
            structure, shapes and dtypes.
        init_val: the initial carry (a tree of arrays).
        max_iters: stop after this many iterations even if ``cond_fun`` holds.

    Returns:
        The final carry.
    """
    if max_iters is not None and (not isinstance(max_iters, (int, np.integer)) or max_iters < 0):
        raise ValueError(f"[while_loop] max_iters must be None or a non-negative int, got {max_iters!r}.")
    leaves, paths, spec = _flatten(init_val, "init_val", "while_loop")

    def cond_w(*phs):
        p = cond_fun(_unflatten(spec, phs))
        if not isinstance(p, array):
            p = mx.array(p)
        if p.ndim != 0:
            raise ValueError(f"[while_loop] cond_fun must return a scalar, but it returned shape "
                             f"{_shape_str(p.shape)}.")
        return [p if p.dtype is mx.bool_ else mx.astype(p, mx.bool_)]

    def body_w(*phs):
        out = body_fun(_unflatten(spec, phs))
        return _conform_to("while_loop", "the carry returned by body_fun", out, spec, leaves, paths, "init_val")

    outs = build_while(Body, cond_w, body_w, leaves, [], None if max_iters is None else int(max_iters))
    return _unflatten(spec, outs)


def fori_loop(lower, upper, body_fun: Callable, init_val):
    """``val = init_val; for i in range(lower, upper): val = body_fun(i, val)``, as one node.

    A kiln extension (not in MLX). With Python int bounds the trip count is
    static and the loop is a ``scan`` (reverse mode saves the carries);
    with array bounds it is a ``while_loop``.

    Args:
        lower: the first index (int or scalar integer array).
        upper: one past the last index.
        body_fun: a function ``(i, val) -> val`` (``i`` an int32 scalar).
        init_val: the initial carry (a tree of arrays).

    Returns:
        The final carry.
    """
    static = isinstance(lower, (int, np.integer)) and isinstance(upper, (int, np.integer))
    if static:
        length = max(int(upper) - int(lower), 0)

        def step(carry, _):
            i, val = carry
            return (i + 1, body_fun(i, val)), None

        (_, val), _ = _scan(step, (mx.array(int(lower), dtype=mx.int32), init_val), None, length, False,
                            "fori_loop", "the carry returned by body_fun", "init_val")
        return val
    lo = _scalar_index(lower, "fori_loop", "lower bound")
    hi = _scalar_index(upper, "fori_loop", "upper bound")
    for b, n in ((lo, "lower"), (hi, "upper")):
        if not b.dtype.is_integer:
            raise TypeError(f"[fori_loop] The {n} bound must be an integer, but it has dtype {b.dtype.name}.")
    dt = promote_types(lo.dtype, hi.dtype)
    lo, hi = mx.astype(lo, dt), mx.astype(hi, dt)

    leaves, paths, spec = _flatten(init_val, "init_val", "fori_loop")

    def body(carry):
        i, val = carry
        out = body_fun(i, val)
        return i + 1, _unflatten(spec, _conform_to("fori_loop", "the carry returned by body_fun", out, spec,
                                                   leaves, paths, "init_val"))

    _, val = while_loop(lambda c: c[0] < hi, body, (lo, _unflatten(spec, leaves)))
    return val


def scan(f: Callable, init, xs, length: Optional[int] = None, reverse: bool = False):
    """Loop ``f`` over the leading axis of ``xs``, carrying state, stacking outputs.

    A kiln extension (not in MLX), with ``jax.lax.scan``'s meaning::

        carry = init
        for t in range(length):          # backwards if reverse
            carry, ys[t] = f(carry, xs[t])
        return carry, ys

    Args:
        f: a function ``(carry, x) -> (carry, y)``; the carry keeps its tree
            structure, shapes and dtypes; ``y`` is any tree of arrays (or None).
        init: the initial carry (a tree of arrays).
        xs: a tree of arrays scanned along axis 0, or None.
        length: the number of steps (needed when ``xs`` has no arrays).
        reverse: scan from the last index to the first (ys keep their order).

    Returns:
        ``(final carry, stacked ys)``.
    """
    return _scan(f, init, xs, length, reverse, "scan", "the carry returned by f", "init")


def _scan(f, init, xs, length, reverse, what, role, ref_role):
    c_leaves, c_paths, c_spec = _flatten(init, ref_role, what)
    if what == "fori_loop":  # the carry is (index, init_val): name the user's leaves
        c_paths = ["the loop index" if p == "init_val[0]" else "init_val" + p[len("init_val[1]"):]
                   for p in c_paths]
    x_leaves, x_paths, x_spec = _flatten(xs, "xs", what)
    n = length
    for x, p in zip(x_leaves, x_paths):
        if x.ndim == 0:
            raise ValueError(f"[{what}] {p} is a scalar; every leaf of xs needs a leading axis to scan over.")
        if n is None:
            n = x.shape[0]
        elif x.shape[0] != n:
            src = "length" if length is not None else x_paths[0]
            raise ValueError(f"[{what}] {p} has leading axis {x.shape[0]} but {src} is {n}: every leaf of xs "
                             "must have the scan length as its leading axis.")
    if n is None:
        raise ValueError(f"[{what}] length must be given when xs has no arrays.")
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"[{what}] length must be a non-negative int, got {n!r}.")
    nc = len(c_leaves)
    ys: dict = {}

    def body(*phs):
        c = _unflatten(c_spec, phs[:nc])
        x = _unflatten(x_spec, phs[nc:])
        out = f(c, x)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ValueError(f"[{what}] The function must return a pair (carry, y).")
        new_c = _conform_to(what, role, out[0], c_spec, c_leaves, c_paths, ref_role)
        y_leaves, _, y_spec = _flatten(out[1], "y", what)
        ys["spec"] = y_spec
        return new_c + y_leaves

    outs = build_scan(Body, body, c_leaves, x_leaves, [], int(n), bool(reverse))
    return _unflatten(c_spec, outs[:nc]), _unflatten(ys["spec"], outs[nc:])
