"""The graph: topological order, evaluation, detaching, tracing state.

``eval`` is an iterative walk: it collects the unevaluated nodes behind the
requested arrays in topological order (no recursion, so chains of millions
of ops work), runs each primitive on its inputs' buffers with the backend of
the node's stream, and detaches each node from its inputs as soon as it is
computed, so intermediates nobody else holds are freed during the walk.
While a transformation is tracing (see ``kiln.transforms.tracing``) nodes
stay attached: the transformation still needs the graph.
"""
from __future__ import annotations

import os
import threading

from kiln.backend import cpu as _cpu
from kiln.backend import get_backend, multi_device
from kiln.device import memory


class _TraceState:
    __slots__ = ("keep_graph", "check", "exporting")

    def __init__(self):
        self.keep_graph = 0  # >0 while a transformation needs graphs kept
        self.exporting = 0  # >0 while export_function traces (nodes are recorded, never run)
        # Debug/test mode: check every computed buffer against its node.
        self.check = os.environ.get("KILN_CHECK", "") not in ("", "0")


trace_state = _TraceState()



# device type -> (backend module, xp, overrides); filled on first use
_backends = {}


def _backend_for(stream):
    t = stream.device.type
    b = _backends.get(t)
    if b is None:
        mod = get_backend(t)
        b = (mod, mod.xp, mod.overrides)
        _backends[t] = b
    return b


def toposort(outputs, pending: bool = False):
    """Nodes behind ``outputs`` in topological order (inputs first, each once).

    Args:
        outputs: arrays to start from.
        pending: only nodes still to compute; evaluated nodes are leaves and
            are not listed.
    Returns:
        A list of arrays.
    """
    order = []
    visited = set()
    stack = [(o, False) for o in outputs if not (pending and o._buf is not None)]
    append = stack.append
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        nid = id(node)
        if nid in visited:
            continue
        visited.add(nid)
        append((node, True))
        for i in node._inputs:
            if id(i) not in visited and not (pending and i._buf is not None):
                append((i, False))
    return order


def applications(tape):
    """Each primitive application of ``tape`` once, as ``(node, outputs)``.

    A primitive with several outputs appears in a tape once per sibling; it is
    yielded at the first of them in tape order, with all its outputs.
    """
    seen = set()
    for node in tape:
        sibs = node._sibs
        if sibs is None:
            yield node, (node,)
            continue
        key = id(sibs[0])
        if key not in seen:
            seen.add(key)
            yield node, sibs


# One evaluation at a time in the process: a thread evaluating a graph that another thread is
# computing waits for it and then finds the shared nodes computed (each is computed once).
# Walking a tape while another thread detaches its nodes is what is not safe. Re-entrant, so a
# primitive or callback that evaluates during an evaluation does not deadlock its own thread.
_EVAL_LOCK = threading.RLock()


def eval_arrays(outputs) -> None:
    """Compute the buffers of ``outputs`` (a list of arrays)."""
    with _EVAL_LOCK:
        tape = toposort(outputs, pending=True)
        if not tape:
            return
        # Like MLX, log(0) and 0/0 give inf/nan silently (NumPy would warn).
        with _cpu.quiet():
            _run(tape)


def _run(tape) -> None:
    detach = trace_state.keep_graph == 0
    check = trace_state.check
    mem = memory
    last_stream = None
    xp = overrides = backend = None
    for k in range(len(tape)):
        node = tape[k]
        tape[k] = None  # drop the tape's reference: let refcounting free intermediates
        if node._buf is not None:  # a sibling computed it
            continue
        prim = node._prim
        stream = node._stream
        if stream is not last_stream:
            backend, xp, overrides = _backend_for(stream)
            last_stream = stream
        inputs = node._inputs
        bufs = [i._buf for i in inputs]
        if multi_device.on:
            # Inputs computed on another device are moved once, when needed.
            bufs = backend.adopt(bufs)
        fn = overrides.get(type(prim).__name__) if overrides else None
        out = fn(prim, xp, *bufs) if fn is not None else prim.eval(xp, *bufs)
        sibs = node._sibs
        if sibs is None:
            node._buf = out
            nb = out.nbytes if out.base is None else 0
            node._nb = nb
            if check:
                _check(node, out)
        else:
            nb = 0
            for s, o in zip(sibs, out):
                s._buf = o
                if o.base is None:
                    s._nb = o.nbytes
                    nb += o.nbytes
                if check:
                    _check(s, o)
        mem.active += nb
        if mem.active > mem.peak:
            mem.peak = mem.active
        if detach:
            if sibs is None:
                node._prim = None
                node._inputs = ()
            else:
                for s in sibs:
                    s._prim = None
                    s._inputs = ()
                    s._sibs = None


def _check(node, buf) -> None:
    if tuple(buf.shape) != node._shape or buf.dtype != node._dtype.np:
        raise AssertionError(
            f"[eval] {type(node._prim).__name__} produced shape {tuple(buf.shape)} dtype {buf.dtype}, "
            f"but its node says shape {node._shape} dtype {node._dtype.np}."
        )
