"""``unique`` (of static size), ``minmax`` and ``get_array_buffer_size``."""
from __future__ import annotations

from kiln import _tree
from kiln import dtypes as _dt
from kiln.graph.array import _make_multi, array
from kiln.ops.normalize import as_array, get_stream
from kiln.ops.reduce import max as _max
from kiln.ops.reduce import min as _min
from kiln.primitives.unique import Unique

__all__ = ["unique", "minmax", "get_array_buffer_size"]


def unique(a, /, size: int, return_index: bool = False, return_inverse: bool = False,
           return_counts: bool = False, fill_value=None, *, stream=None):
    """The sorted unique elements of the flattened ``a``, ``size`` of them.

    The output shape does not depend on the values: with fewer unique elements the rest hold
    ``fill_value`` (default: the smallest unique element) and count 0; with more, the smallest
    ``size`` are kept (inverse indices then clamp to the last entry).

    Args:
        a: input array.
        size: number of output entries.
        return_index: also return the flat index of each value's first occurrence.
        return_inverse: also return, in ``a``'s shape, each element's index in the output.
        return_counts: also return how often each value occurs.
        fill_value: value of the padding entries.
        stream: stream or device.

    Returns:
        The values, or a tuple (values, index, inverse, counts) of the requested ones.
    """
    a = as_array(a)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"[unique] size must be a non-negative integer, got {size!r}.")
    if fill_value is not None:
        fill_value = as_array(fill_value).item()
    prim = Unique(size, fill_value)
    outs = _make_multi(prim.output_shapes([a]), [a.dtype, _dt.uint32, _dt.uint32, _dt.int32],
                       prim, (a,), get_stream(stream))
    wanted = [outs[0]] + [o for o, w in zip(outs[1:], (return_index, return_inverse, return_counts)) if w]
    return wanted[0] if len(wanted) == 1 else tuple(wanted)


def minmax(a, /, axis=None, keepdims: bool = False, *, stream=None):
    """The minimum and the maximum over ``axis`` (all axes when None), in that order.

    Args:
        a: input array.
        axis: an axis, a sequence of axes, or None.
        keepdims: keep reduced axes as size 1.
        stream: stream or device.

    Returns:
        ``(min, max)``.
    """
    return (_min(a, axis, keepdims, stream=stream), _max(a, axis, keepdims, stream=stream))


def get_array_buffer_size(*args) -> int:
    """Bytes of the distinct buffers behind the given arrays (trees allowed; other leaves ignored).

    Raises:
        ValueError: if an array is not evaluated.
    """
    seen, total = set(), 0
    for leaf in _tree.leaves_of(list(args)):
        if not isinstance(leaf, array):
            continue
        buf = leaf._buf
        if buf is None:
            raise ValueError("[get_array_buffer_size] Arrays must be evaluated before querying buffer size.")
        base = buf
        while getattr(base, "base", None) is not None:  # views share their owner's buffer
            base = base.base
        if id(base) not in seen:
            seen.add(id(base))
            total += int(getattr(base, "nbytes", 0))
    return total
