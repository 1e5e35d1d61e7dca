"""CPU kernels for the quantized matmul: dequantize fused into the product.

For the decode case (a few rows of ``x``, ``M <= 8``) the product is bound by
reading the weight, so a numba kernel walks the packed words once and never
writes a float copy of them. Larger ``M`` (and modes or bit widths the
kernel does not cover) go to the primitive's own eval, which dequantizes a
block of rows at a time and hands it to BLAS. Without numba (it is in the
``fast`` extra) every call takes that NumPy path.
"""
from __future__ import annotations

import numpy as np

try:  # numba is optional
    import numba as _nb
except Exception:  # pragma: no cover - exercised only without numba
    _nb = None

SMALL_M = 8
_kernels: dict = {}


def _build():
    njit, prange = _nb.njit, _nb.prange

    @njit(parallel=True, fastmath=True, cache=True)
    def qmv_t(x, w, scales, biases, bits, group_size, out):
        # out[m, n] = sum_k x[m, k] * (s[n, k//g] * q[n, k] + b[n, k//g])
        #           = sum_g s[n, g] * (q . x)_g + b[n, g] * sum(x)_g
        # One task per output row n; a packed row (K*bits/8 bytes) stays in L1
        # while each of the M inputs walks it, so every loop is a scalar reduction.
        m_total, k_total = x.shape
        n_total = w.shape[0]
        per = 32 // bits
        mask = (1 << bits) - 1
        words_per_group = group_size // per
        n_groups = k_total // group_size
        xsum = np.zeros((m_total, n_groups), np.float32)
        for m in range(m_total):
            for gi in range(n_groups):
                t = np.float32(0.0)
                for k in range(gi * group_size, (gi + 1) * group_size):
                    t += x[m, k]
                xsum[m, gi] = t
        for n in prange(n_total):
            for m in range(m_total):
                acc = np.float32(0.0)
                for gi in range(n_groups):
                    d = np.float32(0.0)
                    w0 = gi * words_per_group
                    for wi in range(words_per_group):
                        word = np.uint32(w[n, w0 + wi])
                        kb = gi * group_size + wi * per
                        for e in range(per):
                            d += np.float32((word >> np.uint32(e * bits)) & np.uint32(mask)) * x[m, kb + e]
                    acc += scales[n, gi] * d + biases[n, gi] * xsum[m, gi]
                out[m, n] = acc

    @njit(parallel=True, fastmath=True, cache=True)
    def qmv_n(x, w, scales, biases, bits, group_size, out):
        # out[m, n] = sum_k x[m, k] * (s[k, n//g] * q[k, n] + b[k, n//g]);
        # each task owns a strip of output columns (words of w's rows).
        m_total, k_total = x.shape
        n_words = w.shape[1]
        per = 32 // bits
        mask = (1 << bits) - 1
        strip = 8
        n_strips = (n_words + strip - 1) // strip
        for si in prange(n_strips):
            w0 = si * strip
            w1 = min(n_words, w0 + strip)
            width = (w1 - w0) * per
            acc = np.zeros((m_total, width), np.float32)
            for k in range(k_total):
                for wi in range(w0, w1):
                    word = w[k, wi]
                    base = (wi - w0) * per
                    for e in range(per):
                        n = wi * per + e
                        gi = n // group_size
                        v = np.float32(scales[k, gi]) * np.float32((word >> (e * bits)) & mask) \
                            + np.float32(biases[k, gi])
                        for m in range(m_total):
                            acc[m, base + e] += x[m, k] * v
            for m in range(m_total):
                for j in range(width):
                    out[m, w0 * per + j] = acc[m, j]

    return qmv_t, qmv_n


def kernels():
    """The numba kernels (compiled on first use), or None without numba."""
    if _nb is None:
        return None
    if "k" not in _kernels:
        _kernels["k"] = _build()
    return _kernels["k"]


def fused_applies(prim, x, wq) -> bool:
    """Whether the fused small-M kernel handles this call."""
    if _nb is None or prim.mode != "affine" or prim.bits not in (2, 4, 8):
        return False
    if wq.ndim != 2 or x.dtype == np.float64:
        return False
    rows = int(np.prod(x.shape[:-1]))
    return rows <= SMALL_M


def fused(prim, x, wq, scales, biases):
    """The fused small-M product for a 2-D weight, or None where it does not apply."""
    if not fused_applies(prim, x, wq):
        return None
    qmv_t, qmv_n = kernels()
    lead = x.shape[:-1]
    x2 = np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=np.float32)
    w2 = np.ascontiguousarray(wq)
    s2 = np.ascontiguousarray(scales, dtype=np.float32)
    b2 = np.ascontiguousarray(biases, dtype=np.float32)
    if prim.transpose:
        out = np.empty((x2.shape[0], wq.shape[0]), np.float32)
        qmv_t(x2, w2, s2, b2, prim.bits, prim.group_size, out)
    else:
        out = np.empty((x2.shape[0], wq.shape[1] * 32 // prim.bits), np.float32)
        qmv_n(x2, w2, s2, b2, prim.bits, prim.group_size, out)
    return out.reshape(lead + (out.shape[-1],)).astype(prim.dtype.np, copy=False)


def quantized_matmul(prim, xp, *bufs):
    """Override of ``QuantizedMatmul.eval`` on the CPU."""
    biases = bufs[3] if prim.mode == "affine" else None
    out = fused(prim, bufs[0], bufs[1], bufs[2], biases)
    return prim.eval(xp, *bufs) if out is None else out
