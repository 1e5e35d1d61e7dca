"""``repr``/``str`` of arrays in MLX's format.

Numbers are printed like C++ streams with six significant digits (``1``,
``2.5``, ``1e-05``), without padding, or with a fixed number of decimals once
``set_printoptions(precision=n)`` is set; every axis longer than six is
summarised to three items at each end (MLX 0.32 does so at any size).
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from kiln import dtypes as _dt

_EDGE = 3


class PrintOptions:
    """The options arrays print with: ``precision`` decimals, or -1 for six significant digits."""

    __slots__ = ("precision",)

    def __init__(self, precision: int = -1):
        self.precision = precision

    def __repr__(self):
        return f"PrintOptions(precision={self.precision})"


_options = PrintOptions()
_lock = threading.Lock()


def _check_precision(precision) -> int:
    if isinstance(precision, bool) or not isinstance(precision, int):
        raise TypeError(f"[set_printoptions] precision must be an int, got {type(precision).__name__}.")
    return precision


def set_printoptions(precision: int = -1) -> None:
    """Set how many decimals arrays print with (-1: six significant digits, the default).

    Args:
        precision: Number of decimal places, or -1 for the default format.
    """
    with _lock:
        _options.precision = _check_precision(precision)


def get_printoptions() -> PrintOptions:
    """The current print options (a copy: changing it changes nothing)."""
    return PrintOptions(_options.precision)


@contextlib.contextmanager
def printoptions(precision: int = -1):
    """Context manager that sets the print options inside its block and restores them after.

    Args:
        precision: Number of decimal places, or -1 for the default format.
    """
    precision = _check_precision(precision)
    with _lock:
        old, _options.precision = _options.precision, precision
    try:
        yield
    finally:
        with _lock:
            _options.precision = old


def _fmt_float(v: float) -> str:
    if v != v:
        return "nan"
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    p = _options.precision
    return format(v, "g") if p < 0 else format(v, f".{p}f")


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
    if h.ndim == 0:
        return fmt(h[()])

    def rec(a, depth):
        n = a.shape[0]
        if n > 2 * _EDGE:
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
