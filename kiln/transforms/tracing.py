"""Global tracing state, changed only through the context managers here.

* ``keep_graph()``: while active, ``eval`` does not detach computed nodes
  from their inputs (a transformation still walks that graph).
* ``placeholder(shape, dtype, transform)``: a data-less input that a
  function is traced on by ``vmap`` and ``compile``; evaluating anything that
  depends on it raises an error naming the transformation.
"""
from __future__ import annotations

import contextlib

from kiln.graph.array import _make
from kiln.device import current_stream
from kiln.graph.eval import trace_state
from kiln.primitives.misc import Placeholder

_PLACEHOLDERS = {}


@contextlib.contextmanager
def keep_graph():
    """Keep evaluated nodes attached to their inputs while the block runs."""
    trace_state.keep_graph += 1
    try:
        yield
    finally:
        trace_state.keep_graph -= 1


@contextlib.contextmanager
def exporting():
    """Mark that ``export_function`` is tracing (ops that cannot run here may still be recorded)."""
    trace_state.exporting += 1
    try:
        yield
    finally:
        trace_state.exporting -= 1


def placeholder(shape, dtype, transform: str = "vmap", stream=None):
    """A data-less array of ``shape`` and ``dtype`` for tracing."""
    prim = _PLACEHOLDERS.get(transform)
    if prim is None:
        prim = _PLACEHOLDERS[transform] = Placeholder(transform)
    return _make(tuple(shape), dtype, prim, (), stream if stream is not None else current_stream())


def is_placeholder(a) -> bool:
    return type(a._prim) is Placeholder
