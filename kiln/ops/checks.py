"""Argument checks shared by the ops: integer shapes and Python ints that fit their dtype.

Both raise where the user erred, naming the op, before anything is allocated.
"""
from __future__ import annotations

import operator

import numpy as np

_I32 = (-(2**31), 2**31 - 1)
_INT_RANGE: dict = {}  # numpy dtype -> (min, max)


def int_tuple(values, op: str, what: str = "shape") -> tuple:
    """``values`` (an int or a sequence of ints) as a tuple of Python ints.

    Accepts anything with ``__index__`` (Python and NumPy ints, bools, 0-d
    integer arrays), as MLX does; floats, strings and other objects raise
    TypeError. Entries must fit in int32 (MLX's shape type): OverflowError.

    Args:
        values: the argument as the user gave it.
        op: the op's name, for the message.
        what: the argument's name, for the message.
    Returns:
        A tuple of ints.
    """
    if isinstance(values, (int, np.integer)):
        values = (values,)
    elif isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"[{op}] {what} must be an integer or a sequence of integers, "
                        f"got {type(values).__name__} {values!r}.")
    out = []
    for v in values:
        try:
            i = operator.index(v)
        except TypeError:
            raise TypeError(f"[{op}] {what} entries must be integers, got {type(v).__name__} {v!r}.") from None
        if not _I32[0] <= i <= _I32[1]:
            raise OverflowError(f"[{op}] Integer value {i} is outside the supported range "
                                f"[{_I32[0]}, {_I32[1]}].")
        out.append(i)
    return tuple(out)


def check_int_fits(value: int, dtype, op: str | None = None) -> None:
    """Raise ValueError when the Python int ``value`` does not fit in ``dtype`` (a kiln dtype).

    Float, complex and bool dtypes take any int (as MLX and NumPy do).
    """
    npdt = dtype.np
    if npdt.kind not in "iu":
        return
    rng = _INT_RANGE.get(npdt)
    if rng is None:
        info = np.iinfo(npdt)
        rng = _INT_RANGE[npdt] = (int(info.min), int(info.max))
    if not rng[0] <= value <= rng[1]:
        where = f"[{op}] " if op else ""
        raise ValueError(f"{where}Converting {value} to {dtype.name} would result in overflow.")


def ints_fit(buf: np.ndarray, dtype) -> bool:
    """Whether integer data ``buf`` holds only values ``dtype`` can represent."""
    if buf.size == 0 or buf.dtype.kind not in "iu" or dtype.np.kind not in "iu":
        return True
    info = np.iinfo(dtype.np)
    return int(info.min) <= int(buf.min()) and int(buf.max()) <= int(info.max)


def check_ints_fit(buf: np.ndarray, dtype, op: str) -> None:
    """Raise ValueError when integer data ``buf`` (made from Python ints) has values outside ``dtype``."""
    if buf.size == 0 or buf.dtype.kind not in "iu" or dtype.np.kind not in "iu":
        return
    lo, hi = int(buf.min()), int(buf.max())
    check_int_fits(lo, dtype, op)
    check_int_fits(hi, dtype, op)
