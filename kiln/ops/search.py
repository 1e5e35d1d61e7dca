"""``mx.searchsorted``."""
from __future__ import annotations

from kiln import dtypes as _dt
from kiln.graph.array import array
from kiln.ops.normalize import astype, get_stream
from kiln.primitives.search import SearchSorted

__all__ = ["searchsorted"]


def searchsorted(sorted_sequence: array, values: array, /, side: str = "left", *, stream=None) -> array:
    """Find the indices that keep ``sorted_sequence`` sorted when inserting ``values``.

    Args:
        sorted_sequence: A 1-D array sorted in ascending order.
        values: The values to insert (any shape).
        side: ``"left"`` (the number of elements strictly less than each
            value) or ``"right"`` (the number less than or equal).
        stream: Stream or device.

    Returns:
        A ``uint32`` array of ``values``' shape with indices in ``[0, sorted_sequence.size]``.
    """
    if not isinstance(sorted_sequence, array) or not isinstance(values, array):
        raise TypeError("[searchsorted] Expected arrays for sorted_sequence and values.")
    if sorted_sequence.ndim != 1:
        raise ValueError("[searchsorted] The sorted sequence must be 1-D but has "
                         f"{sorted_sequence.ndim} dimensions.")
    if side not in ("left", "right"):
        raise ValueError(f"[searchsorted] Invalid side '{side}'. Expected 'left' or 'right'.")
    dt = _dt.promote_types(sorted_sequence.dtype, values.dtype)
    st = get_stream(stream)
    a = astype(sorted_sequence, dt, st)
    v = astype(values, dt, st)
    return SearchSorted(side == "right").apply([a, v], v.shape, _dt.uint32, st)
