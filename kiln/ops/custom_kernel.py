"""``mx.fast.metal_kernel``: build Metal kernel calls (recorded for export; kiln cannot run them)."""
from __future__ import annotations

from typing import Optional, Sequence

from kiln import dtypes as _dt
from kiln.device import DeviceType, current_stream
from kiln.graph.array import _make, _make_multi
from kiln.graph.eval import trace_state
from kiln.primitives.custom_kernel import MetalKernel

__all__ = ["metal_kernel"]


def _is_cpu(stream) -> bool:
    # ``stream`` may be a Stream, a Device or a DeviceType (``mx.cpu``).
    if stream is None:
        stream = current_stream()
    dev = getattr(stream, "device", stream)
    return getattr(dev, "type", dev) == DeviceType.cpu


class _MetalKernelFn:
    """The callable ``metal_kernel`` returns."""

    def __init__(self, name, input_names, output_names, source, header, ensure_row_contiguous,
                 atomic_outputs, math_mode):
        self._p = dict(name_=name, input_names=tuple(input_names), output_names=tuple(output_names),
                       source=source, header=header, ensure_row_contiguous=bool(ensure_row_contiguous),
                       atomic_outputs=bool(atomic_outputs), math_mode=math_mode)

    def __call__(self, *, inputs, output_shapes, output_dtypes, grid, threadgroup, template=None,
                 init_value=None, verbose: bool = False, stream=None) -> list:
        """Call the kernel. Raises RuntimeError (no Metal back-end) unless ``export_function`` traces."""
        if _is_cpu(stream):
            raise ValueError("[metal_kernel] Only supports the GPU.")
        if not trace_state.exporting:
            raise RuntimeError("[metal_kernel] No Metal back-end: kiln cannot run Metal kernels. "
                               "Write the computation with mx ops (and mx.compile to fuse it) instead.")
        from kiln.graph.array import array

        ins = [x if isinstance(x, array) else array(x) for x in inputs]
        tmpl = tuple((k, v) for k, v in (template or []))
        prim = MetalKernel(**self._p, grid=tuple(grid), threadgroup=tuple(threadgroup), template=tmpl,
                           init_value=init_value, n_out=len(output_shapes))
        st = current_stream()
        shapes = [tuple(s) for s in output_shapes]
        dts = [d if isinstance(d, _dt.Dtype) else _dt.from_numpy(d) for d in output_dtypes]
        if len(shapes) == 1:
            return [_make(shapes[0], dts[0], prim, tuple(ins), st)]
        return _make_multi(shapes, dts, prim, tuple(ins), st)


def metal_kernel(name: str, input_names: Sequence[str], output_names: Sequence[str], source: str,
                 header: str = "", ensure_row_contiguous: bool = True, atomic_outputs: bool = False,
                 compile_options: Optional[dict] = None):
    """A custom Metal kernel defined from a source string, as MLX's ``mx.fast.metal_kernel``.

    kiln has no Metal back-end: calling the kernel raises RuntimeError, except
    while ``mx.export_function`` traces, where the call is recorded (so the
    exported file runs where MLX has Metal). A call on the CPU raises
    ValueError, as in MLX.

    Args:
        name: Name for the kernel.
        input_names: The parameter names of the inputs.
        output_names: The parameter names of the outputs.
        source: The body of the Metal function.
        header: Source placed before the function.
        ensure_row_contiguous: Whether inputs are made row contiguous first.
        atomic_outputs: Whether outputs are atomic in the signature.
        compile_options: ``{"math_mode": "safe" | "relaxed" | "fast"}``.

    Returns:
        A callable taking ``inputs``, ``output_shapes``, ``output_dtypes``,
        ``grid``, ``threadgroup`` (and optionally ``template``, ``init_value``,
        ``verbose``, ``stream``) and returning a list of arrays.
    """
    opts = dict(compile_options or {})
    math_mode = opts.pop("math_mode", "safe")
    if opts or math_mode not in ("safe", "relaxed", "fast"):
        raise ValueError(f"[metal_kernel] Invalid compile_options {compile_options!r}.")
    return _MetalKernelFn(name, input_names, output_names, source, header, ensure_row_contiguous,
                          atomic_outputs, math_mode)
