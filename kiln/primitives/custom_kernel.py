"""``MetalKernel``: a user's Metal source kernel, recorded so exported functions keep it.

kiln has no Metal back-end, so the primitive never runs: evaluating it raises
MLX's "No Metal back-end" error. It exists so that ``export_function`` can
record a function that calls ``mx.fast.metal_kernel`` (as MLX does on
machines without Metal), and the file runs where a Metal back-end exists.
"""
from __future__ import annotations

from kiln.primitives.base import Primitive, primitive


@primitive
class MetalKernel(Primitive):
    """A Metal kernel call; parameters are everything the kernel's source needs."""

    name_: str = ""
    input_names: tuple = ()
    output_names: tuple = ()
    source: str = ""
    header: str = ""
    ensure_row_contiguous: bool = True
    atomic_outputs: bool = False
    math_mode: str = "safe"
    grid: tuple = (1, 1, 1)
    threadgroup: tuple = (1, 1, 1)
    template: tuple = ()
    init_value: object = None
    n_out: int = 1

    @property
    def n_outputs(self) -> int:  # type: ignore[override]
        return self.n_out

    def eval(self, xp, *inputs):
        raise RuntimeError("[metal_kernel] No Metal back-end: kiln cannot run Metal kernels (this "
                           "function was recorded for export; run it where MLX has Metal).")
