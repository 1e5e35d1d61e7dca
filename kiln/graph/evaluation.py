"""``mx.eval`` and ``mx.async_eval``."""
from __future__ import annotations

from kiln._tree import leaves_of
from kiln.graph.array import array
from kiln.backend import loaded_backends
from kiln.backend import multi_device
from kiln.graph.eval import eval_arrays


def _collect(trees, out) -> None:
    for t in leaves_of(trees):
        if isinstance(t, array):
            out.append(t)
        elif not (t is None or isinstance(t, (int, float, complex, str, bool))):
            raise ValueError(f"[eval] Expected arrays or trees of arrays, got {type(t).__name__}.")


def eval(*args) -> None:
    """Compute the arrays in ``args`` (arrays or nested lists/tuples/dicts of them)."""
    arrays: list = []
    _collect(args, arrays)
    eval_arrays(arrays)
    if multi_device.on:
        # GPU kernels run asynchronously; like MLX, eval returns once they are done.
        for b in loaded_backends():
            b.synchronize()


def async_eval(*args) -> None:
    """Start computing ``args`` without waiting for GPU kernels to finish."""
    arrays: list = []
    _collect(args, arrays)
    eval_arrays(arrays)
