"""``repr``/``str`` of arrays in MLX's format.

Numbers are printed like C++ streams with six significant digits (``1``,
``2.5``, ``1e-05``), without padding; arrays over 1000 elements are
summarised to three items at each end of every axis longer than six.
"""
from __future__ import annotations

import numpy as np

from kiln import dtypes as _dt

_EDGE = 3
_THRESHOLD = 1000


def _fmt_float(v: float) -> str:
    if v != v:
        return "nan"
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    return format(v, "g")


def _fmt_complex(v: complex) -> str:
    re, im = _fmt_float(v.real), _fmt_float(abs(v.imag))
    sign = "-" if (v.imag < 0 or (v.imag == 0 and np.signbit(v.imag))) else "+"
    return f"{re}{sign}{im}j"


def _formatter(dtype):
    if dtype is _dt.bool_:
        return lambda v: "True" if v else "False"
    if dtype.kind in "iu":
        return lambda v: str(int(v))
    if dtype.kind == "c":
        return lambda v: _fmt_complex(complex(v))
    return lambda v: _fmt_float(float(v))


def format_values(h: np.ndarray, dtype, indent: int) -> str:
    """The bracketed body of an array's repr."""
    fmt = _formatter(dtype)
    summarise = h.size > _THRESHOLD
    if h.ndim == 0:
        return fmt(h[()])

    def rec(a, depth):
        n = a.shape[0]
        if summarise and n > 2 * _EDGE:
            idx = list(range(_EDGE)) + [None] + list(range(n - _EDGE, n))
        else:
            idx = list(range(n))
        if a.ndim == 1:
            return "[" + ", ".join("..." if i is None else fmt(a[i]) for i in idx) + "]"
        sep = ",\n" + " " * (indent + depth + 1)
        return "[" + sep.join("..." if i is None else rec(a[i], depth + 1) for i in idx) + "]"

    return rec(h, 0)


def format_array(x) -> str:
    h = np.asarray(x._host())
    if x._dtype is _dt.bfloat16 or x._dtype is _dt.float16:
        h = h.astype(np.float32)
    body = format_values(h, x._dtype, len("array("))
    return f"array({body}, dtype={x._dtype.name})"
