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
import sys
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
        out = donor = None  # the previous node's buffers must not look like foreign references
        bufs = [i._buf for i in inputs]
        if multi_device.on:
            # Inputs computed on another device are moved once, when needed.
            bufs = backend.adopt(bufs)
        pname = type(prim).__name__
        fn = overrides.get(pname) if overrides else None
        if fn is not None:
            out = fn(prim, xp, *bufs)
        else:
            uf = _INPLACE.get(pname) if detach else None
            donor = _donor(node, inputs, bufs, backend) if uf is not None else None
            if donor is None:
                out = prim.eval(xp, *bufs)
            else:
                out = getattr(xp, uf)(*bufs, out=donor)
                node._nb = 0  # the donor's node still counts these bytes until it is freed
                nb0 = _take_bytes(inputs, donor)
        sibs = node._sibs
        if sibs is None:
            node._buf = out
            if donor is not None:
                # The bytes move from the donor's node to this one (counted once).
                node._nb, nb = nb0, 0
            else:
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


# Elementwise primitives whose NumPy eval is one ufunc: when an input buffer is held by
# nothing but the node being computed (an intermediate, or an optimizer's old moment that the
# state no longer holds), the result is written into it: no allocation (page faults for
# large arrays; a pool round trip on the GPU), one buffer fewer in cache. Only for backends
# that set ``inplace_min_bytes`` (ufuncs with ``out=``), when the graph is not kept (a transform
# still walking it may need the old values) and never for multi-output nodes.
_INPLACE = {
    "Add": "add", "Subtract": "subtract", "Multiply": "multiply", "Divide": "divide",
    "Maximum": "maximum", "Minimum": "minimum", "Square": "square", "Sqrt": "sqrt",
    "Negative": "negative", "Exp": "exp", "Log": "log", "Tanh": "tanh", "Sin": "sin",
    "Cos": "cos", "Reciprocal": "reciprocal", "Abs": "abs",
}
_getrefcount = sys.getrefcount
# References to an input node held only by its consumer: the consumer's input tuple, the
# local variable and getrefcount's argument. To its buffer: the node's slot, the list of
# input buffers, the local variable, the argument. Any other holder (a user's variable, a
# NumPy view, another consumer still to run, a transform's tape) adds one and so blocks.
_NODE_REFS, _BUF_REFS = 3, 4


def _take_bytes(inputs, donor) -> int:
    """Move the byte count of the donor's node to the caller (the donor node is dying)."""
    for i in inputs:
        if i._buf is donor:
            nb, i._nb = i._nb, 0
            return nb
    return 0


def _donor(node, inputs, bufs, backend):
    """An input buffer the result of ``node`` may be written into, or None.

    ``backend.inplace_min_bytes`` (absent: never) keeps small arrays out: their allocation is
    cheap and the checks would cost more than they save.
    """
    least = getattr(backend, "inplace_min_bytes", None)
    if least is None or node._sibs is not None:
        return None
    for k in range(len(bufs)):  # no zip: its cached result tuple would hold references
        i = inputs[k]
        b = bufs[k]
        if (_getrefcount(i) == _NODE_REFS and _getrefcount(b) == _BUF_REFS and b.nbytes >= least
                and i._sibs is None and b.base is None and b.shape == node._shape
                and b.dtype == node._dtype.np and b.dtype.kind != "b" and b.flags.c_contiguous
                and getattr(b.flags, "writeable", True)):
            return b
    return None


def _check(node, buf) -> None:
    if tuple(buf.shape) != node._shape or buf.dtype != node._dtype.np:
        raise AssertionError(
            f"[eval] {type(node._prim).__name__} produced shape {tuple(buf.shape)} dtype {buf.dtype}, "
            f"but its node says shape {node._shape} dtype {node._dtype.np}."
        )
