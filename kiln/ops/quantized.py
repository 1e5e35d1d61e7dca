"""Quantization ops: quantize, dequantize, quantized_matmul, gather_qmm, qqmm, fp8 casts.

Every argument is checked here, with MLX's messages, before a node is built;
the primitives in ``kiln/primitives/quantized.py`` then see inputs of the
shapes and dtypes they expect.
"""
from __future__ import annotations

import math

from kiln import dtypes as _dt
from kiln.graph.array import _make, _make_multi, array
from kiln.ops.normalize import as_array, get_stream, shape_str
from kiln.primitives import quantized as Q

__all__ = ["quantize", "dequantize", "quantized_matmul", "gather_qmm", "qqmm", "to_fp8", "from_fp8"]

_MODES = ("affine", "mxfp4", "mxfp8", "nvfp4")
# mode -> (group size, bits) fixed by the format
_FP_FORMATS = {"mxfp4": (32, 4), "mxfp8": (32, 8), "nvfp4": (16, 4)}


def _mode_params(op: str, mode, group_size, bits):
    """MLX's defaults and checks for a mode: returns ``(group_size, bits)``."""
    if mode not in _MODES:
        raise ValueError(f"[{op}] Invalid quantization mode '{mode}'.")
    if mode == "affine":
        group_size = 64 if group_size is None else int(group_size)
        bits = 4 if bits is None else int(bits)
        if op == "quantize":
            if group_size not in (32, 64, 128):
                raise ValueError(f"[{op}] The requested group size {group_size} is not supported. "
                                 "The supported group sizes are 32, 64, and 128.")
            if bits not in (1, 2, 3, 4, 5, 6, 8):
                raise ValueError(f"[{op}] The requested number of bits {bits} is not supported. "
                                 "The supported bits are 1, 2, 3, 4, 5, 6 and 8.")
        return group_size, bits
    gs0, b0 = _FP_FORMATS[mode]
    group_size = gs0 if group_size is None else int(group_size)
    bits = b0 if bits is None else int(bits)
    if group_size != gs0:
        raise ValueError(f"[{op}] {mode} quantization requires group size {gs0} but got {group_size}.")
    if bits != b0:
        raise ValueError(f"[{op}] {mode} quantization requires bits to be {b0} but got {bits}.")
    return group_size, bits


def _global_scale(op, mode, global_scale):
    if global_scale is None:
        return None
    if mode != "nvfp4":
        raise ValueError(f"[{op}] Global scale is only supported for 'nvfp4' quantization mode.")
    g = as_array(global_scale)
    if g.size != 1:
        raise ValueError(f"[{op}] Global scale must be a scalar but got shape {shape_str(g.shape)[1:-1]}.")
    if g.ndim:
        g = g.reshape(())
    return g.astype(_dt.float32)


def _check_packed(op, w, bits):
    if w.dtype is not _dt.uint32:
        if op == "dequantize":
            raise ValueError(f"[{op}] The matrix should be given as a uint32")
        raise ValueError(f"[{op}] The weight matrix should be uint32 but received {w.dtype.name}")
    if (w.shape[-1] * 32) % bits:
        raise ValueError(f"[{op}] The packed last dimension {w.shape[-1]} cannot hold {bits}-bit codes.")


def _check_scales(op, mode, scales, biases):
    """The dtype rules for scales and biases (affine: floats; fp modes: uint8, no biases)."""
    if mode == "affine":
        if biases is None:
            raise ValueError(f"[{op}] Biases must be provided for affine quantization.")
        if not scales.dtype.is_floating or not biases.dtype.is_floating:
            raise ValueError(f"[{op}] Only real floating types are supported but scales.dtype() == "
                             f"{scales.dtype.name} and biases.dtype() == {biases.dtype.name}.")
        if scales.shape != biases.shape:
            raise ValueError(f"[{op}] Scales and biases should have the same shape. Received scales with "
                             f"shape {shape_str(scales.shape)} and biases with {shape_str(biases.shape)}")
    else:
        if biases is not None:
            raise ValueError(f"[{op}] Biases must be null for quantization mode '{mode}'.")
        if scales.dtype is not _dt.uint8:
            raise ValueError(f"[{op}] Scale type must be uint8 but received type {scales.dtype.name}.")


def _out_float(op, dtype):
    dtype = _dt.as_dtype(dtype)
    if not dtype.is_floating:
        raise ValueError(f"[{op}] Only real floating types are supported but output dtype == {dtype.name}.")
    return dtype


def quantize(w, /, group_size: int | None = None, bits: int | None = None, mode: str = "affine", *,
             global_scale=None, stream=None):
    """Quantize ``w`` along its last axis in groups of ``group_size``.

    Args:
        w: a floating array with at least two dimensions, the last divisible by ``group_size``.
        group_size: elements sharing a scale (affine: 32, 64 or 128, default 64;
            mxfp4/mxfp8: 32; nvfp4: 16).
        bits: bits per element (affine: 1-6 or 8, default 4; mxfp8: 8; others: 4).
        mode: ``"affine"``, ``"mxfp4"``, ``"mxfp8"`` or ``"nvfp4"``.
        global_scale: nvfp4 only: a float32 scalar, the tensor's absolute maximum.
        stream: stream or device.

    Returns:
        ``(w_q, scales, biases)`` for affine, ``(w_q, scales)`` otherwise; ``w_q``
        is uint32 of shape ``(..., K * bits / 32)``.
    """
    op = "quantize"
    w = as_array(w)
    group_size, bits = _mode_params(op, mode, group_size, bits)
    g = _global_scale(op, mode, global_scale)
    if w.ndim < 2:
        raise ValueError(f"[{op}] The matrix to be quantized must have at least 2 dimension but it has "
                         f"only {w.ndim}.")
    if w.shape[-1] % group_size:
        raise ValueError(f"[{op}] The last dimension of the matrix needs to be divisible by the quantization "
                         f"group size {group_size}. However the provided  matrix has shape "
                         f"{shape_str(w.shape)}")
    if not w.dtype.is_floating:
        raise ValueError(f"[{op}] Only real floating types can be quantized but w has type {w.dtype.name}.")
    prim = Q.Quantize(group_size, bits, mode)
    shapes = prim.output_shapes([w])
    dtypes = [_dt.uint32, w.dtype, w.dtype] if mode == "affine" else [_dt.uint32, _dt.uint8]
    inputs = (w,) if g is None else (w, g)
    return tuple(_make_multi(shapes, dtypes, prim, inputs, get_stream(stream)))


def dequantize(w, /, scales, biases=None, group_size: int | None = None, bits: int | None = None,
               mode: str = "affine", global_scale=None, dtype=None, *, stream=None) -> array:
    """Dequantize ``w`` with its scales (and biases for affine).

    Args:
        w: packed uint32 codes ``(..., K * bits / 32)``.
        scales: one per group ``(..., K / group_size)``.
        biases: affine only, like ``scales``.
        group_size, bits, mode: as given to ``quantize``.
        global_scale: nvfp4 only, as given to ``quantize``.
        dtype: output dtype (default: the scales' dtype for affine, float32 with a
            global scale, bfloat16 otherwise).
        stream: stream or device.

    Returns:
        The dequantized array ``(..., K)``.
    """
    op = "dequantize"
    w, scales = as_array(w), as_array(scales)
    biases = None if biases is None else as_array(biases)
    group_size, bits = _mode_params(op, mode, group_size, bits)
    g = _global_scale(op, mode, global_scale)
    _check_scales(op, mode, scales, biases)
    if w.ndim < 2:
        raise ValueError(f"[{op}] The matrix to be dequantized must have at least 2 dimension but it "
                         f"has only {w.ndim}.")
    _check_packed(op, w, bits)
    k = w.shape[-1] * 32 // bits
    if (k % group_size or scales.shape != w.shape[:-1] + (k // group_size,)):
        what = "scales and biases" if mode == "affine" else "scales"
        raise ValueError(f"[{op}] Shape of {what} does not match the matrix given the quantization "
                         f"parameters. Provided matrix of shape {shape_str(w.shape)} and "
                         f"{what.replace(' and ', '/')} of shape "
                         f"{shape_str(scales.shape)} with group_size={group_size} and bits={bits}.")
    if dtype is None:
        # With a (float32) global scale MLX returns float32.
        dtype = scales.dtype if mode == "affine" else (_dt.bfloat16 if g is None else _dt.float32)
    dtype = _out_float(op, dtype)
    prim = Q.Dequantize(group_size, bits, mode, dtype, g is not None)
    inputs = (w, scales) + ((biases,) if mode == "affine" else ()) + (() if g is None else (g,))
    return _make(w.shape[:-1] + (k,), dtype, prim, inputs, get_stream(stream))


def _qmm_args(op, x, w, scales, biases, transpose, group_size, bits, mode):
    """Checks shared by quantized_matmul and gather_qmm; returns the normalised pieces."""
    x, w, scales = as_array(x), as_array(w), as_array(scales)
    biases = None if biases is None else as_array(biases)
    group_size, bits = _mode_params(op, mode, group_size, bits)
    _check_scales(op, mode, scales, biases)
    if mode == "affine":
        out_dt = _dt.promote_types(x.dtype, scales.dtype)
        if not out_dt.is_floating:
            raise ValueError(f"[{op}] Only real floating types are supported but x.dtype() == "
                             f"{x.dtype.name}.")
    else:
        if not x.dtype.is_floating:
            raise ValueError(f"[{op}] Only real floating types are supported but x.dtype() == "
                             f"{x.dtype.name}.")
        out_dt = x.dtype
    _check_packed(op, w, bits)
    if w.ndim < 2 or scales.ndim < 2:
        raise ValueError(f"[{op}] Weight and scales should have the same batch shape. Received weight with "
                         f"shape {shape_str(w.shape)[1:-1]}, scales with {shape_str(scales.shape)[1:-1]}.")
    if w.shape[:-2] != scales.shape[:-2]:
        raise ValueError(f"[{op}] Weight and scales should have the same batch shape. Received weight with "
                         f"shape {shape_str(w.shape)}, scales with {shape_str(scales.shape)}.")
    k_full = w.shape[-1] * 32 // bits
    if w.shape[-2] != scales.shape[-2] or k_full != scales.shape[-1] * group_size:
        raise ValueError(f"[{op}] The shapes of the weight and scales are incompatible based on bits and "
                         f"group_size. w.shape() == {shape_str(w.shape)} and scales.shape() == "
                         f"{shape_str(scales.shape)} with group_size={group_size} and bits={bits}")
    k_in = k_full if transpose else w.shape[-2]
    if x.ndim == 0 or x.shape[-1] != k_in:
        dense = (w.shape[-2], k_full) if transpose else (w.shape[-2], k_full)
        raise ValueError(f"[{op}] Last dimension of first input with shape (..., "
                         f"{x.shape[-1] if x.ndim else 0}) "
                         f"does not match the expanded quantized matrix "
                         f"{shape_str(dense).replace(',', ', ')} "
                         f"computed from shape {shape_str(w.shape)} with group_size={group_size}, "
                         f"bits={bits} "
                         f"and transpose={'true' if transpose else 'false'}")
    return x, w, scales, biases, group_size, bits, out_dt


def _qmm_node(x, w, scales, biases, transpose, group_size, bits, mode, out_dt, stream):
    vec = x.ndim == 1
    if vec:
        x = x.reshape((1, x.shape[0]))
    if x.dtype is not out_dt and not x.dtype.is_floating:
        x = x.astype(out_dt)
    prim = Q.QuantizedMatmul(group_size, bits, mode, bool(transpose), out_dt)
    shape = Q.qmm_shape(x.shape, w.shape, bits, transpose)
    inputs = (x, w, scales) + ((biases,) if mode == "affine" else ())
    out = _make(shape, out_dt, prim, inputs, get_stream(stream))
    if vec:
        out = out.reshape(out.shape[:-2] + (out.shape[-1],))
    return out


def quantized_matmul(x, w, /, scales, biases=None, transpose: bool = True, group_size: int | None = None,
                     bits: int | None = None, mode: str = "affine", *, stream=None) -> array:
    """``x @ dequantize(w).T`` (``transpose=True``) or ``x @ dequantize(w)``, reading ``w`` packed.

    Args:
        x: input ``(..., M, K)`` (or ``(K,)``).
        w: packed weight ``(..., N, K * bits / 32)`` (or ``(K, N * bits / 32)`` untransposed).
        scales, biases: as returned by ``quantize``.
        transpose: multiply by the transposed weight.
        group_size, bits, mode: as given to ``quantize``.
        stream: stream or device.

    Returns:
        ``(..., M, N)``; batch dims of ``x`` and ``w`` broadcast.
    """
    x, w, scales, biases, group_size, bits, out_dt = _qmm_args(
        "quantized_matmul", x, w, scales, biases, transpose, group_size, bits, mode)
    return _qmm_node(x, w, scales, biases, transpose, group_size, bits, mode, out_dt, stream)


def gather_qmm(x, w, /, scales, biases=None, lhs_indices=None, rhs_indices=None, transpose: bool = True,
               group_size: int | None = None, bits: int | None = None, mode: str = "affine",
               global_scale=None, *, sorted_indices: bool = False, stream=None) -> array:
    """Quantized matmul of matrices picked from the batches of ``x`` and ``w`` by flat indices.

    Args:
        x: ``(A..., M, K)``.
        w, scales, biases: quantized ``(B..., N, K * bits / 32)`` and its parameters.
        lhs_indices: indices into the flattened batch of ``x`` (default: all, in order).
        rhs_indices: the same for ``w``.
        transpose, group_size, bits, mode: as for ``quantized_matmul``.
        global_scale: nvfp4 only (MLX supports it on the GPU only; kiln refuses it).
        sorted_indices: a hint; the result does not depend on it.
        stream: stream or device.

    Returns:
        ``broadcast(lhs_indices, rhs_indices).shape + (M, N)``.
    """
    import kiln.ops as mx  # the gathered ops floor (this module is part of it)

    op = "gather_qmm"
    x, w, scales, biases, group_size, bits, out_dt = _qmm_args(
        op, x, w, scales, biases, transpose, group_size, bits, mode)
    if global_scale is not None:
        _global_scale(op, mode, global_scale)
        raise ValueError(f"[{op}] A global scale is not supported on the CPU.")
    if x.ndim == 1:
        x = x.reshape((1, x.shape[0]))
    idx = []
    for a, ind in ((x, lhs_indices), (w, rhs_indices)):
        batch = a.shape[:-2]
        if ind is None:
            ind = mx.arange(math.prod(batch), dtype=_dt.uint32).reshape(batch)
        ind = as_array(ind)
        if ind.dtype.kind not in "iu":
            raise ValueError(f"[{op}] Got indices with invalid dtype. Indices must be integral.")
        idx.append(ind)
    shape = mx.broadcast_shapes(idx[0].shape, idx[1].shape)
    li = mx.broadcast_to(idx[0], shape).reshape((-1,))
    ri = mx.broadcast_to(idx[1], shape).reshape((-1,))
    xs = mx.take(x.reshape((-1,) + x.shape[-2:]), li, axis=0, stream=stream)
    if xs.dtype is not out_dt:
        xs = xs.astype(out_dt)
    parts = [w, scales] + ([biases] if mode == "affine" else [])
    parts = [p.reshape((-1,) + p.shape[-2:]) for p in parts]
    prim = Q.GatherQMM(group_size, bits, mode, bool(transpose), out_dt)
    n = w.shape[-2] if transpose else w.shape[-1] * 32 // bits
    out = _make((xs.shape[0], xs.shape[1], n), out_dt, prim, tuple([xs] + parts + [ri.astype(_dt.uint32)]),
                get_stream(stream))
    return out.reshape(tuple(shape) + out.shape[-2:])


def qqmm(x, w, scales=None, group_size: int | None = None, bits: int | None = None, mode: str = "nvfp4",
         global_scale_x=None, global_scale_w=None, *, stream=None) -> array:
    """``quantize(x) @ quantize(w).T``, with ``x`` quantized on the fly.

    Args:
        x: the input ``(..., M, K)``.
        w: the weight ``(N, K)``, or already quantized (uint32) with ``scales``.
        scales: the weight's scales when ``w`` is quantized.
        group_size, bits, mode: the quantization (``"nvfp4"`` or ``"mxfp8"`` in MLX; kiln
            accepts every mode).
        global_scale_x, global_scale_w: nvfp4 tensor scales.
        stream: stream or device.

    Returns:
        ``(..., M, N)`` in ``x``'s dtype. Gradients flow to ``x`` and a non-quantized
        ``w`` straight through the quantization (the estimator quantized training uses).
    """
    import kiln.ops as mx  # the gathered ops floor (this module is part of it)

    op = "qqmm"
    x, w = as_array(x), as_array(w)
    group_size, bits = _mode_params(op, mode, group_size, bits)
    if not x.dtype.is_floating:
        raise ValueError(f"[{op}] Only real floating types are supported but x.dtype() == {x.dtype.name}.")

    def fake_quant(a, g):
        parts = quantize(a, group_size, bits, mode, global_scale=g, stream=stream)
        deq = dequantize(parts[0], *parts[1:], group_size=group_size, bits=bits, mode=mode,
                         global_scale=g, dtype=_dt.float32, stream=stream)
        af = a.astype(_dt.float32)
        return af + mx.stop_gradient(deq - af)

    xh = fake_quant(x, global_scale_x)
    if w.dtype is _dt.uint32:
        if scales is None:
            raise ValueError(f"[{op}] Scales must be provided when w is quantized.")
        wh = dequantize(w, scales, None, group_size, bits, mode, global_scale=global_scale_w,
                        dtype=_dt.float32, stream=stream)
    else:
        if not w.dtype.is_floating:
            raise ValueError(f"[{op}] Only real floating types are supported but w.dtype() == "
                             f"{w.dtype.name}.")
        wh = fake_quant(w, global_scale_w)
    return mx.matmul(xh, mx.swapaxes(wh, -1, -2), stream=stream).astype(x.dtype)


def to_fp8(x, *, stream=None) -> array:
    """``x`` as E4M3 codes (uint8), rounded to nearest and saturated at +-448.

    Args:
        x: a floating array.
        stream: stream or device.
    Returns:
        uint8 codes of the same shape.
    """
    x = as_array(x)
    if not x.dtype.is_floating:
        raise ValueError(f"[to_fp8] Only real floating types are supported but x.dtype() == {x.dtype.name}.")
    return _make(x.shape, _dt.uint8, Q.ToFP8(), (x,), get_stream(stream))


def from_fp8(x, dtype=_dt.bfloat16, *, stream=None) -> array:
    """E4M3 codes (uint8) to ``dtype``.

    Args:
        x: uint8 codes.
        dtype: a floating dtype (default bfloat16).
        stream: stream or device.
    Returns:
        The decoded values.
    """
    x = as_array(x)
    if x.dtype is not _dt.uint8:
        raise ValueError(f"[from_fp8] Input must have type uint8 but x.dtype() == {x.dtype.name}.")
    dtype = _dt.as_dtype(dtype)
    if not dtype.is_floating:
        raise ValueError(f"[from_fp8] Only real floating types are supported but dtype == {dtype.name}.")
    return _make(x.shape, dtype, Q.FromFP8(dtype), (x,), get_stream(stream))
