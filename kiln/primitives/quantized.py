"""Quantization primitives: quantize, dequantize, the quantized matmul, fp8 casts.

The packed layout is MLX's: a row of ``K`` codes of ``b`` bits is one little
endian bit stream, lowest bits first, stored as ``K * b / 32`` uint32 words
(so a 3-bit row of 32 codes takes 3 words). ``affine`` keeps a scale and a
bias per group of ``group_size`` codes in the input's dtype; ``mxfp4``/
``mxfp8`` keep one E8M0 exponent (uint8) per 32 codes of E2M1/E4M3;
``nvfp4`` keeps one E4M3 scale (uint8) per 16 E2M1 codes, optionally times a
tensor-wide ``global_scale / (6 * 448)``.

The codecs below are written against ``xp``; the quantized matmul reads the
packed weight block by block (never a full float copy of it), and on the CPU
a numba kernel fuses the dequantization into the product for small ``M``.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from kiln.primitives.base import ops as mx
from kiln.primitives.base import Primitive, primitive, to_front, unbroadcast

# E2M1 magnitudes by code; MLX rounds a tie towards the smaller magnitude.
FP4_VALUES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], np.float32)
_FP4_THRESHOLDS = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], np.float32)
FP4_LUT = np.concatenate([FP4_VALUES, -FP4_VALUES]).astype(np.float32)
E4M3_LUT = np.arange(256, dtype=np.uint16).astype(np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float32)
E4M3_MAX = np.float32(448.0)
# nvfp4's global scale is a tensor amax: the per-group scale is relative to it.
NV_GLOBAL = np.float32(6.0 * 448.0)


# ---------------------------------------------------------------- packing
def unpack(xp, wq, bits: int, k: int):
    """Codes ``(..., k)`` (uint32) from the packed words ``(..., k*bits/32)``."""
    lead = wq.shape[:-1]
    mask = np.uint32((1 << bits) - 1)
    if 32 % bits == 0:
        shifts = xp.arange(0, 32, bits, dtype=xp.uint32)
        codes = (wq[..., None] >> shifts) & mask
        return codes.reshape(lead + (k,))
    # 3, 5 and 6 bits: the stream repeats every 32 codes (``bits`` words).
    words = wq.reshape(lead + (k // 32, bits))
    out = xp.empty(lead + (k // 32, 32), dtype=xp.uint32)
    for j in range(32):
        off = j * bits
        w, s = divmod(off, 32)
        c = words[..., w] >> np.uint32(s)
        if s + bits > 32:
            c = c | (words[..., w + 1] << np.uint32(32 - s))
        out[..., j] = c & mask
    return out.reshape(lead + (k,))


def pack(xp, codes, bits: int):
    """Packed uint32 words ``(..., k*bits/32)`` from codes ``(..., k)``."""
    codes = codes.astype(xp.uint32)
    lead, k = codes.shape[:-1], codes.shape[-1]
    if 32 % bits == 0:
        per = 32 // bits
        shifts = xp.arange(0, 32, bits, dtype=xp.uint32)
        c = codes.reshape(lead + (k // per, per)) << shifts
        return xp.bitwise_or.reduce(c, axis=-1)
    c = codes.reshape(lead + (k // 32, 32))
    out = xp.zeros(lead + (k // 32, bits), dtype=xp.uint32)
    for j in range(32):
        off = j * bits
        w, s = divmod(off, 32)
        out[..., w] |= c[..., j] << np.uint32(s)
        if s + bits > 32:
            out[..., w + 1] |= c[..., j] >> np.uint32(32 - s)
    return out.reshape(lead + (k * bits // 32,))


# ---------------------------------------------------------------- codecs
def _compute_dtype(dt):
    return np.float64 if dt == np.float64 else np.float32


def affine_quantize(xp, w, group_size: int, bits: int):
    """MLX's affine quantization of ``w`` along its last axis."""
    out_dt = w.dtype
    ct = _compute_dtype(out_dt)
    lead, k = w.shape[:-1], w.shape[-1]
    g = w.astype(ct).reshape(lead + (k // group_size, group_size))
    n_bins = ct(2**bits - 1)
    wmax = g.max(axis=-1, keepdims=True)
    wmin = g.min(axis=-1, keepdims=True)
    with np.errstate(all="ignore"):
        if bits == 1:
            scale = xp.maximum((wmax - wmin) / n_bins, ct(1e-7))
            bias = wmin
        else:
            # The group edge with the larger magnitude is made exactly
            # representable: the scale is adjusted so it falls on a code.
            neg = xp.abs(wmin) > xp.abs(wmax)
            scale = xp.maximum((wmax - wmin) / n_bins, ct(1e-7))
            scale = xp.where(neg, scale, -scale)
            edge = xp.where(neg, wmin, wmax)
            q0 = xp.rint(edge / scale)
            scale = xp.where(q0 != 0, edge / q0, scale)
            bias = xp.where(q0 == 0, ct(0), edge)
        q = xp.clip(xp.rint((g - bias) / scale), 0, n_bins)
    wq = pack(xp, q.astype(xp.uint32).reshape(lead + (k,)), bits)
    return wq, scale[..., 0].astype(out_dt), bias[..., 0].astype(out_dt)


def affine_dequantize(xp, wq, scales, biases, group_size: int, bits: int, out_dtype):
    """``scale * q + bias`` computed in the scales' dtype (as MLX does), then cast."""
    k = wq.shape[-1] * 32 // bits
    lead = wq.shape[:-1]
    q = unpack(xp, wq, bits, k).reshape(lead + (k // group_size, group_size))
    st = scales.dtype
    s = scales[..., None]
    b = biases[..., None]
    if st.itemsize == 2:
        # Half precision: each step rounds to the scale dtype.
        prod = (s.astype(np.float32) * q.astype(np.float32)).astype(st)
        w = (prod.astype(np.float32) + b.astype(np.float32)).astype(st)
    else:
        w = s * q.astype(st) + b
    return w.reshape(lead + (k,)).astype(out_dtype, copy=False)


def _fp4_encode(xp, x):
    a = xp.abs(x)
    idx = xp.searchsorted(xp.asarray(_FP4_THRESHOLDS), a, side="left").astype(xp.uint32)
    # A code that rounds to zero carries no sign (MLX writes +0).
    neg = (x < 0) & (idx > 0)
    return idx | (neg.astype(xp.uint32) << np.uint32(3))


def _e4m3_encode(xp, x):
    # Saturating: MLX clamps to +-448 (NaN becomes 448 too).
    x = xp.where(xp.isnan(x), E4M3_MAX, x)
    x = xp.clip(x, -E4M3_MAX, E4M3_MAX).astype(np.float32)
    return np.asarray(x).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)


def e4m3_decode(xp, u):
    return xp.asarray(E4M3_LUT)[u]


def fp_group_scale(xp, amax, mode: str, gscale):
    """The per-group scale: returns (stored uint8 code, float32 divisor)."""
    if mode in ("mxfp4", "mxfp8"):
        top = np.float32(6.0) if mode == "mxfp4" else E4M3_MAX
        v = (amax / top).astype(np.float32)
        m, e = np.frexp(v)
        # ceil(log2(v)), exact: frexp gives v = m * 2**e with m in [0.5, 1).
        e = np.where(m == 0.5, e - 1, e)
        # An all-zero group gets scale 1 (code 127), as in MLX. Below 2**-127
        # MLX's code wraps around (to NaN scales); kiln clamps to the smallest.
        e = np.where(v > 0, e, 0)
        e = np.clip(e, -127, 127)
        code = (e + 127).astype(np.uint8)
        return code, np.ldexp(np.float32(1.0), e.astype(np.int32)).astype(np.float32)
    v = (amax / np.float32(6.0)).astype(np.float32)
    if gscale is not None:
        v = v * (NV_GLOBAL / gscale)
    code = _e4m3_encode(xp, v)
    return code, e4m3_decode(xp, code)


def fp_quantize(xp, w, mode: str, group_size: int, gscale=None):
    """mxfp4 / mxfp8 / nvfp4 quantization of ``w`` along its last axis."""
    lead, k = w.shape[:-1], w.shape[-1]
    g = w.astype(np.float32).reshape(lead + (k // group_size, group_size))
    gs = None if gscale is None else np.float32(gscale)
    amax = xp.abs(g).max(axis=-1, keepdims=True)
    code, scale = fp_group_scale(xp, amax, mode, gs)
    with np.errstate(all="ignore"):
        if gs is not None:
            x = g * (NV_GLOBAL / gs) / scale
        else:
            x = g / scale
        x = xp.where(scale == 0, np.float32(0), x)
    if mode == "mxfp8":
        codes, bits = _e4m3_encode(xp, x), 8
    else:
        codes, bits = _fp4_encode(xp, x), 4
    return pack(xp, codes.reshape(lead + (k,)), bits), code[..., 0]


def fp_dequantize(xp, wq, scales, mode: str, group_size: int, out_dtype, gscale=None):
    bits = 8 if mode == "mxfp8" else 4
    k = wq.shape[-1] * 32 // bits
    lead = wq.shape[:-1]
    codes = unpack(xp, wq, bits, k).reshape(lead + (k // group_size, group_size))
    vals = xp.asarray(E4M3_LUT if bits == 8 else FP4_LUT)[codes]
    if mode == "nvfp4":
        s = e4m3_decode(xp, scales)
        if gscale is not None:
            s = s * (np.float32(gscale) / NV_GLOBAL)
    else:
        s = np.ldexp(np.float32(1.0), scales.astype(np.int32) - 127).astype(np.float32)
    w = vals * s[..., None]
    return w.reshape(lead + (k,)).astype(out_dtype, copy=False)


def dequantize_buffers(xp, mode, group_size, bits, wq, scales, biases, gscale, out_dtype):
    if mode == "affine":
        return affine_dequantize(xp, wq, scales, biases, group_size, bits, out_dtype)
    return fp_dequantize(xp, wq, scales, mode, group_size, out_dtype, gscale)


# ---------------------------------------------------------------- helpers for rules
def _batch_to_front_all(inputs, axes, n):
    """Move batch axes of the first ``n`` inputs to the front, broadcasting the unbatched ones."""
    b = next(x.shape[a] for x, a in zip(inputs, axes) if a is not None)
    out = []
    for x, a in zip(inputs[:n], axes[:n]):
        if a is None:
            out.append(mx.broadcast_to(mx.expand_dims(x, 0), (b,) + x.shape))
        else:
            out.append(to_front(x, a))
    return out, b


def group_codes(wq, scales, group_size, bits, mode):
    """The codes of ``wq`` as float32, shaped like the dequantized weight."""
    if mode == "affine":
        one = mx.ones(scales.shape, mx.float32)
        return mx.dequantize(wq, one, mx.zeros(scales.shape, mx.float32), group_size=group_size,
                             bits=bits, mode=mode, dtype=mx.float32)
    raise ValueError("codes of fp modes are not needed")


def group_sum(x, group_size):
    """Sum the last axis of ``x`` in groups of ``group_size``."""
    return mx.sum(mx.reshape(x, x.shape[:-1] + (x.shape[-1] // group_size, group_size)), axis=-1)


def group_expand(x, group_size):
    """Repeat each entry of the last axis ``group_size`` times."""
    e = mx.broadcast_to(mx.expand_dims(x, -1), x.shape + (group_size,))
    return mx.reshape(e, x.shape[:-1] + (x.shape[-1] * group_size,))


# ---------------------------------------------------------------- primitives
@primitive
class Quantize(Primitive):
    """``w -> (wq, scales[, biases])``; inputs ``(w,)`` or ``(w, global_scale)``.

    The codes are piecewise constant in ``w``, so their derivative is zero;
    kiln gives zero cotangents and tangents (MLX differentiates the scales
    and biases through the group min/max, see docs/quantization.md).
    """

    group_size: int = 64
    bits: int = 4
    mode: str = "affine"

    @property
    def n_outputs(self):
        return 3 if self.mode == "affine" else 2

    def eval(self, xp, w, *gscale):
        if self.mode == "affine":
            return affine_quantize(xp, w, self.group_size, self.bits)
        gs = float(gscale[0]) if gscale else None
        return fp_quantize(xp, w, self.mode, self.group_size, gs)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.zeros_like(primals[i]) for i in argnums]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.zeros_like(o) for o in outputs]

    def vmap(self, inputs, axes):
        if len(inputs) > 1 and axes[1] is not None:
            raise ValueError("[quantize] vmap over the global scale is not supported.")
        w = to_front(inputs[0], axes[0])
        outs = mx.quantize(w, self.group_size, self.bits, self.mode,
                           global_scale=inputs[1] if len(inputs) > 1 else None)
        return list(outs), [0] * len(outs)

    def output_shapes(self, inputs):
        w = inputs[0].shape
        lead, k = w[:-1], w[-1]
        bits = self.bits
        shapes = [lead + (k * bits // 32,), lead + (k // self.group_size,)]
        if self.mode == "affine":
            shapes.append(shapes[1])
        return shapes


@primitive
class Dequantize(Primitive):
    """``(wq, scales[, biases][, global_scale]) -> w`` of ``dtype``."""

    group_size: int = 64
    bits: int = 4
    mode: str = "affine"
    dtype: object = None
    has_global: bool = False

    def _split(self, ins):
        wq, scales = ins[0], ins[1]
        biases = ins[2] if self.mode == "affine" else None
        gscale = ins[-1] if self.has_global else None
        return wq, scales, biases, gscale

    def eval(self, xp, *ins):
        wq, scales, biases, gscale = self._split(ins)
        gs = float(gscale) if gscale is not None else None
        return dequantize_buffers(xp, self.mode, self.group_size, self.bits, wq, scales, biases, gs,
                                  self.dtype.np)

    def vjp(self, primals, cotangents, argnums, outputs):
        wq, scales, biases, _ = self._split(primals)
        g = cotangents[0]
        out = []
        for i in argnums:
            if i == 0:
                out.append(mx.zeros_like(wq))
            elif i == 1 and self.mode == "affine":
                q = group_codes(wq, scales, self.group_size, self.bits, self.mode)
                out.append(group_sum(g * q, self.group_size).astype(scales.dtype))
            elif i == 2 and self.mode == "affine":
                out.append(group_sum(g, self.group_size).astype(biases.dtype))
            elif i == 1:
                # The scales are integer codes (uint8): no gradient flows to them.
                out.append(mx.zeros_like(scales))
            else:
                raise ValueError(f"[dequantize] No gradient with respect to the global scale in {self.mode}.")
        return out

    def jvp(self, primals, tangents, argnums, outputs):
        wq, scales, biases, _ = self._split(primals)
        total = None
        for t, i in zip(tangents, argnums):
            if self.mode != "affine" or i == 0:
                continue
            if i == 1:
                q = group_codes(wq, scales, self.group_size, self.bits, self.mode)
                term = q * group_expand(t, self.group_size)
            else:
                term = group_expand(t, self.group_size)
            total = term if total is None else total + term
        if total is None:
            return [mx.zeros(outputs[0].shape, outputs[0].dtype)]
        return [total.astype(outputs[0].dtype)]

    def vmap(self, inputs, axes):
        n = 3 if self.mode == "affine" else 2
        if self.has_global and axes[-1] is not None:
            raise ValueError("[dequantize] vmap over the global scale is not supported.")
        xs, _ = _batch_to_front_all(inputs, axes, n)
        gscale = inputs[-1] if self.has_global else None
        out = mx.dequantize(xs[0], xs[1], xs[2] if n == 3 else None, group_size=self.group_size,
                            bits=self.bits, mode=self.mode, global_scale=gscale, dtype=self.dtype)
        return [out], [0]

    def output_shapes(self, inputs):
        w = inputs[0].shape
        return [w[:-1] + (w[-1] * 32 // self.bits,)]


def qmm_shape(x_shape, w_shape, bits, transpose):
    n = w_shape[-2] if transpose else w_shape[-1] * 32 // bits
    batch = np.broadcast_shapes(tuple(x_shape[:-2]), tuple(w_shape[:-2]))
    return tuple(batch) + (x_shape[-2], n)


def _dense_block(xp, mode, group_size, bits, wq, scales, biases, rows, ct):
    """Dequantize the rows ``rows`` (a slice) of a 2-D packed weight to ``ct``."""
    if xp is np and mode == "affine" and ct == np.float32:
        from kiln.backend import quantized_cpu

        out = quantized_cpu.dequantize_rows(wq[rows], scales[rows], biases[rows], bits, group_size)
        if out is not None:
            return out
    return dequantize_buffers(xp, mode, group_size, bits, wq[rows], scales[rows],
                              None if biases is None else biases[rows], None, ct)


# Rows of the packed weight dequantized at a time (8 MB of float32): large enough
# for BLAS to run near its GEMM speed, and no full float copy of the weight is made.
_BLOCK_ELEMS = 1 << 21


def qmm_blocked(xp, mode, group_size, bits, transpose, x, wq, scales, biases, out_dtype):
    """``x @ dequantize(w).T`` (or ``x @ dequantize(w)``) block by block, through BLAS."""
    ct = np.float64 if x.dtype == np.float64 else np.float32
    out_shape = qmm_shape(x.shape, wq.shape, bits, transpose)
    batch = out_shape[:-2]
    m = x.shape[-2]
    k_packed = wq.shape[-1] * 32 // bits
    xb = xp.broadcast_to(x, batch + x.shape[-2:]).astype(ct, copy=False)
    wb = xp.broadcast_to(wq, batch + wq.shape[-2:])
    sb = xp.broadcast_to(scales, batch + scales.shape[-2:])
    bb = None if biases is None else xp.broadcast_to(biases, batch + biases.shape[-2:])
    out = xp.empty(batch + out_shape[-2:], dtype=ct)
    rows_total = wq.shape[-2]
    step = max(1, _BLOCK_ELEMS // max(1, k_packed))
    w_only_batch = x.ndim == 2 or all(s == 1 for s in x.shape[:-2])
    for idx in np.ndindex(*batch) if batch else [()]:
        xi = xb[idx]
        w2, s2 = wb[idx], sb[idx]
        b2 = None if bb is None else bb[idx]
        oi = out[idx]
        if transpose:
            for r0 in range(0, rows_total, step):
                rows = slice(r0, min(rows_total, r0 + step))
                blk = _dense_block(xp, mode, group_size, bits, w2, s2, b2, rows, ct)
                oi[:, rows] = xi @ blk.T
        else:
            oi[...] = 0
            for r0 in range(0, rows_total, step):
                rows = slice(r0, min(rows_total, r0 + step))
                blk = _dense_block(xp, mode, group_size, bits, w2, s2, b2, rows, ct)
                oi += xi[:, rows] @ blk
    del m, w_only_batch
    return out.astype(out_dtype, copy=False)


@primitive
class QuantizedMatmul(Primitive):
    """``x @ dequantize(w).T`` (``transpose``) or ``x @ dequantize(w)``.

    Inputs ``(x, wq, scales[, biases])``; ``x`` is at least 2-D and the batch
    dims of ``x`` and ``wq`` broadcast. The weight is read packed, block by
    block; the CPU backend replaces eval with a fused kernel for small M.
    """

    group_size: int = 64
    bits: int = 4
    mode: str = "affine"
    transpose: bool = True
    dtype: object = None

    def _split(self, ins):
        return ins[0], ins[1], ins[2], (ins[3] if self.mode == "affine" else None)

    def eval(self, xp, *ins):
        x, wq, scales, biases = self._split(ins)
        return qmm_blocked(xp, self.mode, self.group_size, self.bits, self.transpose, x, wq, scales,
                           biases, self.dtype.np)

    def _qmm(self, x, wq, scales, biases, transpose):
        return mx.quantized_matmul(x, wq, scales, biases, transpose=transpose, group_size=self.group_size,
                                   bits=self.bits, mode=self.mode)

    def _dense_weight_grad(self, x, g, wq):
        # The cotangent of the dequantized weight, in wq's row layout.
        if self.transpose:
            dw = mx.matmul(mx.swapaxes(g, -1, -2), x)
        else:
            dw = mx.matmul(mx.swapaxes(x, -1, -2), g)
        return unbroadcast(dw, wq.shape[:-2] + dw.shape[-2:])

    def vjp(self, primals, cotangents, argnums, outputs):
        x, wq, scales, biases = self._split(primals)
        g = cotangents[0]
        out = []
        dw = None
        for i in argnums:
            if i == 0:
                dx = self._qmm(g, wq, scales, biases, not self.transpose)
                out.append(unbroadcast(dx, x.shape).astype(x.dtype))
            elif i == 1:
                raise RuntimeError("[QuantizedMatmul::vjp] no gradient wrt the quantized weights.")
            elif self.mode != "affine":
                raise ValueError(f"[QuantizedMatmul::vjp] no gradient wrt scales in {self.mode} "
                                 f"quantization.")
            else:
                if dw is None:
                    ct = mx.float64 if x.dtype == mx.float64 else mx.float32
                    dw = self._dense_weight_grad(x.astype(ct), g.astype(ct), wq)
                if i == 2:
                    q = group_codes(wq, scales, self.group_size, self.bits, self.mode)
                    out.append(group_sum(dw * q, self.group_size).astype(scales.dtype))
                else:
                    out.append(group_sum(dw, self.group_size).astype(biases.dtype))
        return out

    def jvp(self, primals, tangents, argnums, outputs):
        x, wq, scales, biases = self._split(primals)
        total = None
        for t, i in zip(tangents, argnums):
            if i == 0:
                term = self._qmm(t, wq, scales, biases, self.transpose)
            elif i == 1:
                continue
            elif self.mode != "affine":
                raise ValueError(f"[QuantizedMatmul::jvp] no gradient wrt scales in {self.mode} "
                                 f"quantization.")
            else:
                if i == 2:
                    q = group_codes(wq, scales, self.group_size, self.bits, self.mode)
                    wt = q * group_expand(t, self.group_size)
                else:
                    wt = group_expand(t, self.group_size)
                wt = wt.astype(outputs[0].dtype)
                term = mx.matmul(x.astype(wt.dtype), mx.swapaxes(wt, -1, -2) if self.transpose else wt)
            total = term if total is None else total + term
        if total is None:
            return [mx.zeros(outputs[0].shape, outputs[0].dtype)]
        return [mx.broadcast_to(total.astype(outputs[0].dtype), outputs[0].shape)]

    def vmap(self, inputs, axes):
        n_w = 3 if self.mode == "affine" else 2
        x, ax = inputs[0], axes[0]
        w_in, w_axes = list(inputs[1:1 + n_w]), list(axes[1:1 + n_w])
        w_batched = any(a is not None for a in w_axes)
        if not w_batched:
            # One weight for the whole batch: the batch becomes a batch dim of x.
            x = to_front(x, ax)
            out = self._qmm(x, *w_in, *([None] if n_w == 2 else []), self.transpose)
            return [out], [0]
        ws, b = _batch_to_front_all(w_in, w_axes, n_w)
        # Line up the batch dims: both get the vmapped axis first, then their own.
        xr = x.ndim - (ax is not None)
        wr = ws[0].ndim - 1
        nb = max(xr, wr) - 2
        if ax is None:
            x = mx.expand_dims(x, 0)
        else:
            x = to_front(x, ax)
        x = mx.reshape(x, (x.shape[0],) + (1,) * (nb - (xr - 2)) + x.shape[1:])
        ws = [mx.reshape(w, (b,) + (1,) * (nb - (wr - 2)) + w.shape[1:]) for w in ws]
        out = self._qmm(x, *ws, *([None] if n_w == 2 else []), self.transpose)
        return [out], [0]

    def output_shapes(self, inputs):
        return [qmm_shape(inputs[0].shape, inputs[1].shape, self.bits, self.transpose)]


def _qmm_2d(xp, prim, x, wq, scales, biases):
    """One product with a 2-D weight: the fused CPU kernel where it applies, else blocked."""
    if xp is np:
        from kiln.backend import quantized_cpu

        out = quantized_cpu.fused(prim, x, wq, scales, biases)
        if out is not None:
            return out
    return qmm_blocked(xp, prim.mode, prim.group_size, prim.bits, prim.transpose, x, wq, scales, biases,
                       prim.dtype.np)


@primitive
class GatherQMM(Primitive):
    """Rows of ``x`` times the quantized matrices picked by flat indices.

    Inputs ``(x, wq, scales[, biases], rhs)``: ``x`` is ``(B, M, K)`` (already
    gathered by the left indices, which is cheap: activations), ``wq`` is
    ``(E, N, K*bits/32)`` and ``rhs`` ``(B,)`` picks a matrix per row block.
    Each distinct matrix is read once for all the rows that use it, so no
    copy of the packed weights is made per index (the MoE case).
    """

    group_size: int = 64
    bits: int = 4
    mode: str = "affine"
    transpose: bool = True
    dtype: object = None

    def _split(self, ins):
        if self.mode == "affine":
            return ins[0], ins[1], ins[2], ins[3], ins[4]
        return ins[0], ins[1], ins[2], None, ins[3]

    def eval(self, xp, *ins):
        x, wq, scales, biases, rhs = self._split(ins)
        b, m = x.shape[0], x.shape[1]
        n = wq.shape[-2] if self.transpose else wq.shape[-1] * 32 // self.bits
        out = xp.empty((b, m, n), dtype=self.dtype.np)
        rhs = np.asarray(rhs).astype(np.int64)
        for e in np.unique(rhs):
            sel = np.nonzero(rhs == e)[0]
            xs = x[sel].reshape(-1, x.shape[-1])
            y = _qmm_2d(xp, self, xs, wq[e], scales[e], None if biases is None else biases[e])
            out[sel] = y.reshape(len(sel), m, n)
        return out

    def _gqmm(self, x, wq, scales, biases, rhs, transpose):
        prim = GatherQMM(self.group_size, self.bits, self.mode, transpose, x.dtype)
        n = wq.shape[-2] if transpose else wq.shape[-1] * 32 // self.bits
        ins = [x, wq, scales] + ([biases] if self.mode == "affine" else []) + [rhs]
        return prim.apply(ins, (x.shape[0], x.shape[1], n), x.dtype)

    def vjp(self, primals, cotangents, argnums, outputs):
        x, wq, scales, biases, rhs = self._split(primals)
        g = cotangents[0]
        rhs_pos = len(primals) - 1
        out = []
        for i in argnums:
            if i == 0:
                out.append(self._gqmm(g.astype(x.dtype), wq, scales, biases, rhs, not self.transpose))
            elif i == 1:
                raise RuntimeError("[GatherQMM::vjp] no gradient wrt the quantized weights.")
            elif i == rhs_pos:
                out.append(mx.zeros_like(rhs))
            elif self.mode != "affine":
                raise ValueError(f"[GatherQMM::vjp] no gradient wrt scales in {self.mode} quantization.")
            else:
                xf, gf = x.astype(mx.float32), g.astype(mx.float32)
                if self.transpose:
                    dw = mx.matmul(mx.swapaxes(gf, -1, -2), xf)
                else:
                    dw = mx.matmul(mx.swapaxes(xf, -1, -2), gf)
                if i == 2:
                    q = mx.take(group_codes(wq, scales, self.group_size, self.bits, self.mode), rhs, axis=0)
                    per = group_sum(dw * q, self.group_size)
                    out.append(mx.zeros(scales.shape, mx.float32).at[rhs].add(per).astype(scales.dtype))
                else:
                    per = group_sum(dw, self.group_size)
                    out.append(mx.zeros(biases.shape, mx.float32).at[rhs].add(per).astype(biases.dtype))
        return out

    def jvp(self, primals, tangents, argnums, outputs):
        x, wq, scales, biases, rhs = self._split(primals)
        total = None
        for t, i in zip(tangents, argnums):
            if i == 0:
                term = self._gqmm(t.astype(x.dtype), wq, scales, biases, rhs, self.transpose)
            elif i == 1 or i == len(primals) - 1:
                continue
            elif self.mode != "affine":
                raise ValueError(f"[GatherQMM::jvp] no gradient wrt scales in {self.mode} quantization.")
            else:
                q = group_codes(wq, scales, self.group_size, self.bits, self.mode)
                wt = q * group_expand(t, self.group_size) if i == 2 else group_expand(t, self.group_size)
                wt = mx.take(wt, rhs, axis=0).astype(outputs[0].dtype)
                term = mx.matmul(x.astype(wt.dtype), mx.swapaxes(wt, -1, -2) if self.transpose else wt)
            total = term if total is None else total + term
        if total is None:
            return [mx.zeros(outputs[0].shape, outputs[0].dtype)]
        return [total.astype(outputs[0].dtype)]

    def vmap(self, inputs, axes):
        # Fold the vmapped axis into the row blocks (B) and the matrices (E).
        n_w = 3 if self.mode == "affine" else 2
        v = next(a_.shape[ax] for a_, ax in zip(inputs, axes) if ax is not None)
        x, rhs = inputs[0], inputs[-1]
        x = mx.broadcast_to(mx.expand_dims(x, 0), (v,) + x.shape) if axes[0] is None else to_front(x, axes[0])
        rhs = (mx.broadcast_to(mx.expand_dims(rhs, 0), (v,) + rhs.shape) if axes[-1] is None
               else to_front(rhs, axes[-1]))
        b = x.shape[1]
        ws = list(inputs[1:1 + n_w])
        if any(a is not None for a in axes[1:1 + n_w]):
            ws, _ = _batch_to_front_all(inputs[1:1 + n_w], axes[1:1 + n_w], n_w)
            e = ws[0].shape[1]
            offs = mx.reshape(mx.arange(v, dtype=rhs.dtype) * e, (v, 1))
            rhs = rhs + offs
            ws = [mx.reshape(w, (v * e,) + w.shape[2:]) for w in ws]
        x = mx.reshape(x, (v * b,) + x.shape[2:])
        rhs = mx.reshape(rhs, (v * b,))
        out = self._gqmm(x, ws[0], ws[1], ws[2] if n_w == 3 else None, rhs, self.transpose)
        out = out.astype(self.dtype)
        return [mx.reshape(out, (v, b) + out.shape[1:])], [0]

    def output_shapes(self, inputs):
        x, wq = inputs[0], inputs[1]
        n = wq.shape[-2] if self.transpose else wq.shape[-1] * 32 // self.bits
        return [(x.shape[0], x.shape[1], n)]


@primitive
class ToFP8(Primitive):
    """Float to E4M3 codes (uint8), saturating at +-448 as MLX does."""

    def eval(self, xp, x):
        return _e4m3_encode(xp, x.astype(np.float32))

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.zeros_like(primals[0])]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.zeros(outputs[0].shape, outputs[0].dtype)]

    def vmap(self, inputs, axes):
        return [self.apply([inputs[0]], inputs[0].shape, mx.uint8)], [axes[0]]

    def output_shapes(self, inputs):
        return [inputs[0].shape]


@primitive
class FromFP8(Primitive):
    """E4M3 codes (uint8) to a float dtype."""

    dtype: object = None

    def eval(self, xp, x):
        return e4m3_decode(xp, x).astype(self.dtype.np)

    def vjp(self, primals, cotangents, argnums, outputs):
        return [mx.zeros_like(primals[0])]

    def jvp(self, primals, tangents, argnums, outputs):
        return [mx.zeros(outputs[0].shape, outputs[0].dtype)]

    def vmap(self, inputs, axes):
        return [self.apply([inputs[0]], inputs[0].shape, self.dtype)], [axes[0]]

    def output_shapes(self, inputs):
        return [inputs[0].shape]


def _register_cpu_kernels():
    # The fused small-M kernel replaces eval on the CPU (numba when present).
    from kiln.backend import cpu, quantized_cpu

    cpu.overrides["QuantizedMatmul"] = quantized_cpu.quantized_matmul


_register_cpu_kernels()
