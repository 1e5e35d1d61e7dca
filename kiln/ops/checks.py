"""Argument checks shared by the ops: integer shapes (the dtype range checks of Python ints
are in :mod:`kiln.dtypes`, since the array node uses them too).

They raise where the user erred, naming the op, before anything is allocated.
"""
from __future__ import annotations

import operator

import numpy as np

_I32 = (-(2**31), 2**31 - 1)


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
