"""``checkpoint(fun, interval=k)``: keep every k-th top-level module output, recompute the rest.

``fun`` runs once, as usual, while a recorder (pushed by ``record_module_calls``) notes the
outputs of the module calls it makes itself (a call made inside another module's ``__call__``
does not count; ``nn.Module`` reports its calls through ``module_call``). The graph that call
built is then cut at the outputs of every k-th call into segments, and each segment becomes one
``CustomTransforms`` node whose plain outputs are the segment's original nodes (so the forward
pass computes every node once) and whose VJP replays the segment from its inputs. Only the
segments' inputs and outputs are held for the backward pass; each segment is recomputed once,
after the cotangents of its outputs exist (``depends``), so at most one segment's activations
are alive at a time.

Replay copies a primitive-and-input-index description of each segment, never the nodes: holding
the nodes would hold their buffers, which is what checkpointing is meant to free.
"""
from __future__ import annotations

import functools
import threading
from typing import Callable

from kiln._tree import flatten
from kiln.graph.array import _make, _make_multi, array
from kiln.primitives.control import CustomTransforms
from kiln.transforms.custom import _RULES, custom_function, depends
from kiln.transforms.grad import vjp

import kiln.ops as mx

__all__ = ["checkpoint_every", "module_call", "record_module_calls", "stats"]

# Counters for tests and benchmarks: segments built, and segments whose recomputation was
# built into a backward pass.
stats = {"segments": 0, "recomputed": 0}


class _Recorder:
    __slots__ = ("interval", "depth", "calls", "boundaries")

    def __init__(self, interval: int):
        self.interval = interval
        self.depth = 0  # >0 while inside a module call: nested calls do not count
        self.calls = 0
        self.boundaries: list = []  # array leaves of every interval-th top-level call's output


class _State(threading.local):
    recorders: tuple = ()  # the innermost recorder last; per thread


_state = _State()


class record_module_calls:
    """Context manager: record the top-level module calls made while it is active."""

    def __init__(self, interval: int):
        self.recorder = _Recorder(interval)

    def __enter__(self) -> _Recorder:
        _state.recorders = _state.recorders + (self.recorder,)
        return self.recorder

    def __exit__(self, *exc) -> None:
        _state.recorders = _state.recorders[:-1]


def module_call(call: Callable) -> Callable:
    """Wrap a module class's ``__call__`` so an active recorder sees its top-level calls."""
    if getattr(call, "_kiln_module_call", False):
        return call

    @functools.wraps(call)
    def wrapped(self, *args, **kwargs):
        recs = _state.recorders
        if not recs:
            return call(self, *args, **kwargs)
        rec = recs[-1]
        rec.depth += 1
        try:
            out = call(self, *args, **kwargs)
        finally:
            rec.depth -= 1
        if rec.depth == 0:
            rec.calls += 1
            if rec.calls % rec.interval == 0:
                leaves = flatten(out, "checkpoint", strict=False)[0]
                rec.boundaries.append([x for x in leaves if isinstance(x, array)])
        return out

    wrapped._kiln_module_call = True
    return wrapped


class Segment(CustomTransforms):
    """One checkpointed segment: outputs = its original nodes (inputs ``n_args`` on)."""

    def jvp(self, primals, tangents, argnums, outputs):
        # The outputs equal the segment's original nodes, which are inputs of this node: forward
        # mode has already carried tangents through them, so nothing is recomputed.
        n = self.n_args
        given = dict(zip(argnums, tangents))
        return [given[n + k] if n + k in given else mx.zeros_like(o) for k, o in enumerate(outputs)]


def check_interval(interval) -> None:
    if interval is None:
        return
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"[checkpoint] interval must be a positive integer or None, got {interval!r}.")


def checkpoint_every(fun: Callable, interval: int) -> Callable:
    """``fun`` with only every ``interval``-th top-level module call's output kept for backward.

    Args:
        fun: the function to checkpoint; its arguments are arrays, modules or trees of them.
        interval: a positive int.

    Returns:
        A function with ``fun``'s signature.
    """
    check_interval(interval)

    @functools.wraps(fun)
    def wrapper(*args, **kwargs):
        with record_module_calls(interval) as rec:
            out = fun(*args, **kwargs)
        arg_leaves = flatten([list(args), kwargs], "checkpoint", strict=False)[0]
        return _cut(out, [x for x in arg_leaves if isinstance(x, array)], rec)

    return wrapper


def _ancestors(outputs, args_ids):
    """Nodes behind ``outputs`` in topological order, not walking past the arguments."""
    order, visited = [], set()
    stack = [(o, False) for o in outputs]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        nid = id(node)
        if nid in visited:
            continue
        visited.add(nid)
        stack.append((node, True))
        if nid in args_ids:
            continue
        inputs = node._inputs
        if node._sibs is not None:
            # Siblings share inputs; list every sibling so a segment replays whole applications.
            for s in node._sibs:
                if id(s) not in visited:
                    stack.append((s, False))
        for i in inputs:
            if id(i) not in visited:
                stack.append((i, False))
    return order


def _cut(out, arg_leaves: list, rec: _Recorder):
    """Rebuild ``out``'s graph as a chain of checkpointed segments (see the module docstring)."""
    outs, out_unflatten = flatten(out, "checkpoint", strict=False)
    out_arrays = [o for o in outs if isinstance(o, array)]
    if not out_arrays:
        return out
    args_ids = {id(a) for a in arg_leaves}
    order = _ancestors(out_arrays, args_ids)
    # The region: nodes that depend on an argument. Everything else (parameters from closures,
    # constants) is an input of the segment that uses it.
    region = set()
    for node in order:
        nid = id(node)
        if nid in args_ids:
            continue
        if any(id(i) in args_ids or id(i) in region for i in node._inputs):
            region.add(nid)
    # Assign each region node to the segment that needs it first: segment j ends at boundary j.
    seg_of: dict = {}
    ends = [b for b in rec.boundaries if any(id(x) in region for x in b)]
    ends.append(out_arrays)
    n_seg = 0
    for end in ends:
        stack = [x for x in end if id(x) in region and id(x) not in seg_of]
        if not stack:
            continue
        while stack:
            node = stack.pop()
            nid = id(node)
            if nid in seg_of:
                continue
            seg_of[nid] = n_seg
            group = node._sibs if node._sibs is not None else ()
            for s in group:
                if id(s) in region and id(s) not in seg_of:
                    stack.append(s)
            for i in node._inputs:
                if id(i) in region and id(i) not in seg_of:
                    stack.append(i)
        n_seg += 1
    if n_seg == 0:
        return out
    segs: list = [[] for _ in range(n_seg)]
    for node in order:
        j = seg_of.get(id(node))
        if j is not None:
            segs[j].append(node)
    # Values a later segment (or the caller) needs from each segment.
    needed_later = set(id(o) for o in out_arrays)
    for node in order:
        j = seg_of.get(id(node))
        for i in node._inputs:
            ji = seg_of.get(id(i))
            if ji is not None and ji != j:
                needed_later.add(id(i))
    rep: dict = {}  # id of an original node -> the array standing for it after the cut
    for nodes in segs:
        _segment(nodes, seg_of, needed_later, rep)
    new = [rep.get(id(o), o) if isinstance(o, array) else o for o in outs]
    return out_unflatten(new)


def _segment(nodes: list, seg_of: dict, needed_later: set, rep: dict) -> None:
    """One segment's ``CustomTransforms`` node; fills ``rep`` for the segment's outputs."""
    j = seg_of[id(nodes[0])]
    ext, ext_index = [], {}
    for node in nodes:
        for i in node._inputs:
            k = id(i)
            if seg_of.get(k) != j and k not in ext_index:
                ext_index[k] = len(ext)
                ext.append(i)
    local = {}
    program = []  # per application: (prim, input refs, shapes, dtypes, stream, n outputs)
    seen_sibs = set()
    for node in nodes:
        sibs = node._sibs
        if sibs is not None:
            if id(sibs[0]) in seen_sibs:
                continue
            seen_sibs.add(id(sibs[0]))
            group = sibs
        else:
            group = (node,)
        refs = tuple(("x", ext_index[id(i)]) if id(i) in ext_index else ("l", local[id(i)]) for i in node._inputs)
        for s in group:
            local[id(s)] = len(local)
        program.append((node._prim, refs, [s._shape for s in group], [s._dtype for s in group], node._stream,
                        sibs is not None))
    outputs = [node for node in nodes if id(node) in needed_later]
    out_refs = [local[id(o)] for o in outputs]
    program = tuple(program)

    def replay(*inputs):
        vals = []
        for prim, refs, shapes, dtypes, stream, multi in program:
            ins = tuple(inputs[r] if kind == "x" else vals[r] for kind, r in refs)
            if multi:
                vals.extend(_make_multi(shapes, dtypes, prim, ins, stream))
            else:
                vals.append(_make(shapes[0], dtypes[0], prim, ins, stream))
        return [vals[r] for r in out_refs]

    def recompute_vjp(primals, cotangents, _outputs):
        stats["recomputed"] += 1
        cots = list(cotangents)
        # Recompute only once the cotangents exist, so segments are rebuilt one at a time.
        tied = depends(list(primals), cots)
        grads = list(vjp(replay, tied, cots)[1])
        # Hand on every cotangent only once all are computed: otherwise eval may leave a
        # parameter's gradient (and the activation it reads) for the end of the backward pass,
        # keeping every segment's recomputed activations alive at once.
        return tuple(depends(grads, grads))

    cf = custom_function(replay)
    cf.vjp(recompute_vjp)
    prim = Segment(cf, len(ext), list, len(outputs), list, _RULES)
    stats["segments"] += 1
    ins = tuple(rep.get(id(e), e) for e in ext) + tuple(outputs)
    new = _make_multi([o._shape for o in outputs], [o._dtype for o in outputs], prim, ins, outputs[0]._stream)
    for o, n in zip(outputs, new):
        rep[id(o)] = n
