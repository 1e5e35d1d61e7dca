"""Stage 1, trace: the tape between a traced function's placeholders and its outputs.

The function has already run on data-less placeholders; this walk splits the
graph behind its outputs into the *tape* (nodes that depend on the
placeholders, in topological order) and the *captured* arrays the tape reads
without depending on them (closed-over constants, folded now).
"""
from __future__ import annotations

from kiln.graph.eval import eval_arrays
from kiln.primitives.misc import Placeholder


class Trace:
    """The tape, the captured arrays, and whether the plan may be cached."""

    __slots__ = ("tape", "captured", "cacheable")

    def __init__(self, tape, captured, cacheable):
        self.tape = tape
        self.captured = captured
        self.cacheable = cacheable


def trace(placeholders, outputs) -> Trace:
    """Walk back from ``outputs`` (iteratively) and fold closed-over lazy values.

    Args:
        placeholders: this compile's placeholders (arguments, then state).
        outputs: the traced output arrays.
    Returns:
        A ``Trace``. ``cacheable`` is False when a captured value belongs to
        another transformation's trace (it changes from call to call).
    """
    ph = {id(p) for p in placeholders}
    # bit 1: depends on our placeholders; bit 2: on another transformation's placeholder
    flags: dict = {}
    tape: list = []
    stack = [(o, False) for o in outputs]
    while stack:
        node, done = stack.pop()
        nid = id(node)
        if done:
            f = 0
            for i in node._inputs:
                f |= flags[id(i)]
            flags[nid] = f
            if f & 1:
                tape.append(node)
            continue
        if nid in flags:
            continue
        if nid in ph:
            flags[nid] = 1
            continue
        if node._buf is not None:
            flags[nid] = 0
            continue
        if not node._inputs:
            flags[nid] = 2 if isinstance(node._prim, Placeholder) else 0
            continue
        flags[nid] = 0  # provisional: marks it visited
        stack.append((node, True))
        for i in node._inputs:
            if id(i) not in flags:
                stack.append((i, False))
    captured: list = []
    seen: set = set(ph)
    dep = {id(n) for n in tape}
    for a in [i for node in tape for i in node._inputs] + list(outputs):
        if id(a) not in seen and id(a) not in dep:
            seen.add(id(a))
            captured.append(a)
    cacheable = not any(flags.get(id(c), 0) & 2 for c in captured)
    # Constant folding: closed-over lazy values are computed once, now
    # (unless they belong to another transformation's trace).
    lazy = [c for c in captured if c._buf is None and not flags.get(id(c), 0) & 2]
    if lazy:
        eval_arrays(lazy)
    return Trace(tape, captured, cacheable)
