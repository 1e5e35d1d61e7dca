"""In-place updates (``x[i] = v``, ``x += y``) rebind the array object, as MLX does.

What it guarantees: after ``x[i] = v`` or ``x += y`` the Python object ``x`` holds the new value,
so every alias of ``x`` sees it; nodes built from ``x`` earlier and not yet evaluated keep the
old value (their inputs are re-pointed to a fresh node holding ``x``'s old content); the memory
count moves with the buffer.

What it costs: each update pays one ``sys.getrefcount`` and two slot copies (about a
microsecond, see ``docs/architecture.md``). Only when the count shows that something besides the
caller's variable holds ``x`` (a lazy consumer, an alias, a container) does it scan the heap
(``gc.get_referrers``) for consumers to re-point. Code that never updates in place pays nothing:
nothing here runs on the array's other paths, and the reference baseline is measured once, on
the first update.
"""
from __future__ import annotations

import gc
import sys


def copy_slots(dst, src) -> None:
    """Give ``dst`` ``src``'s content (shape, dtype, node, buffer), without the memory count."""
    dst._shape = src._shape
    dst._dtype = src._dtype
    dst._prim = src._prim
    dst._inputs = src._inputs
    dst._sibs = src._sibs
    if src._sibs is not None:
        dst._pos = src._pos
    dst._buf = src._buf
    dst._stream = src._stream
    dst._nb = 0


def clone(a):
    """A new array object with ``a``'s content; it takes over the memory count."""
    c = object.__new__(type(a))
    copy_slots(c, a)
    c._nb, a._nb = a._nb, 0
    _take_sibling_place(c, a)
    return c


def _take_sibling_place(dst, src) -> None:
    """Put ``dst`` where ``src`` stood in ``src``'s sibling group (if any)."""
    if src._sibs is not None:
        dst._sibs = tuple(dst if s is src else s for s in src._sibs)
        for s in dst._sibs:
            if s is not dst:
                s._sibs = dst._sibs


def rebind(a, old, new, shared: bool) -> None:
    """Make ``a`` hold ``new``'s value; lazy consumers of ``a`` are moved to ``old``."""
    if shared:
        _repoint_consumers(a, old)
    copy_slots(a, new)
    a._nb, new._nb = new._nb, 0
    _take_sibling_place(a, new)


def _repoint_consumers(a, old) -> None:
    # Nodes that take ``a`` as an input hold it in their ``_inputs`` tuple.
    # Finding them means scanning the heap, so callers do it only when
    # something besides the caller's variable and frames references ``a``.
    kind = type(a)
    for t in gc.get_referrers(a):
        if type(t) is not tuple:
            continue
        for node in gc.get_referrers(t):
            if type(node) is kind and node._inputs is t:
                node._inputs = tuple(old if i is a else i for i in t)


def _calibrate_refs() -> int:
    # References sys.getrefcount sees inside __setitem__ when only the caller's
    # one variable holds the object (the interpreter's own references vary by
    # Python version, so measure them with a class shaped like array).
    seen = []

    class _Probe:
        def __setitem__(self, k, v):
            seen.append(sys.getrefcount(self))

    p = _Probe()
    p[0] = 0
    return seen[0]


def __getattr__(name):
    # ``base_refs`` is measured on first use (the first in-place update), then cached.
    if name == "base_refs":
        value = _calibrate_refs()
        globals()["base_refs"] = value
        return value
    raise AttributeError(name)
