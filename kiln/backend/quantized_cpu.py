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


def _build(bits: int, group_size: int):
    """The two kernels for one (bits, group_size): both are compile-time constants,
    so the loops over the codes of a word unroll and the loops over words vectorize."""
    njit, prange = _nb.njit, _nb.prange
    per = 32 // bits
    mask = np.uint32((1 << bits) - 1)
    wpg = group_size // per  # packed words per group

    @njit(parallel=True, fastmath=True, cache=True)
    def qmv_t(xr, xsum, w, scales, biases, out):
        # out[m, n] = sum_g s[n, g] * (q[n] . x[m])_g + b[n, g] * sum(x[m])_g.
        # xr[m, e, j] = x[m, j * per + e]: "plane" e holds code e of every word,
        # so each plane is one contiguous multiply-add over the packed row.
        m_total = xr.shape[0]
        n_total, nw = w.shape
        ng = nw // wpg
        for n in prange(n_total):
            row = w[n]
            tmp = np.empty(nw, np.float32)
            for m in range(m_total):
                tmp[:] = 0.0
                for e in range(per):
                    sh = np.uint32(e * bits)
                    xe = xr[m, e]
                    for wi in range(nw):
                        tmp[wi] += np.float32((row[wi] >> sh) & mask) * xe[wi]
                acc = np.float32(0.0)
                for g in range(ng):
                    d = np.float32(0.0)
                    for wi in range(g * wpg, (g + 1) * wpg):
                        d += tmp[wi]
                    acc += scales[n, g] * d + biases[n, g] * xsum[m, g]
                out[m, n] = acc

    @njit(parallel=True, fastmath=True, cache=True)
    def qmv_n(x, w, scales, biases, n_chunks, out):
        # out[m, j*per + e] = sum_k x[m, k] * (s[k, g] * code_e(w[k, j]) + b[k, g]), g = j // wpg.
        # Each task sums a chunk of k into its own planes; the chunks are added at the end.
        m_total, k_total = x.shape
        nw = w.shape[1]
        ng = nw // wpg
        acc = np.zeros((n_chunks, m_total, per, nw), np.float32)
        bacc = np.zeros((n_chunks, m_total, ng), np.float32)
        step = (k_total + n_chunks - 1) // n_chunks
        for c in prange(n_chunks):
            xs = np.empty(nw, np.float32)
            for k in range(c * step, min(k_total, (c + 1) * step)):
                row = w[k]
                for m in range(m_total):
                    xk = x[m, k]
                    for wi in range(nw):
                        xs[wi] = xk * scales[k, wi // wpg]
                    for g in range(ng):
                        bacc[c, m, g] += xk * biases[k, g]
                    a = acc[c, m]
                    for e in range(per):
                        sh = np.uint32(e * bits)
                        ae = a[e]
                        for wi in range(nw):
                            ae[wi] += np.float32((row[wi] >> sh) & mask) * xs[wi]
        for m in range(m_total):
            for e in range(per):
                for wi in range(nw):
                    t = np.float32(0.0)
                    for c in range(n_chunks):
                        t += acc[c, m, e, wi]
                    out[m, wi * per + e] = t
            for wi in range(nw):
                bt = np.float32(0.0)
                for c in range(n_chunks):
                    bt += bacc[c, m, wi // wpg]
                for e in range(per):
                    out[m, wi * per + e] += bt

    @njit(parallel=True, fastmath=True, cache=True)
    def dequant(w, scales, biases, out):
        # One block of rows for the large-M path: float32 rows straight from the words.
        n_total, nw = w.shape
        for n in prange(n_total):
            for wi in range(nw):
                word = w[n, wi]
                g = wi // wpg
                sc = np.float32(scales[n, g])
                bi = np.float32(biases[n, g])
                for e in range(per):
                    out[n, wi * per + e] = sc * np.float32((word >> np.uint32(e * bits)) & mask) + bi

    return qmv_t, qmv_n, dequant


def dequantize_rows(wq, scales, biases, bits: int, group_size: int):
    """Affine rows dequantized to float32 by the numba kernel, or None where it does not apply."""
    if _nb is None or bits not in (2, 4, 8) or wq.ndim != 2:
        return None
    dequant = kernels(bits, group_size)[2]
    out = np.empty((wq.shape[0], wq.shape[1] * 32 // bits), np.float32)
    dequant(np.ascontiguousarray(wq), np.ascontiguousarray(scales, dtype=np.float32),
            np.ascontiguousarray(biases, dtype=np.float32), out)
    return out


def kernels(bits: int, group_size: int):
    """The numba kernels for ``bits``/``group_size`` (compiled on first use), or None."""
    if _nb is None:
        return None
    key = (bits, group_size)
    if key not in _kernels:
        _kernels[key] = _build(bits, group_size)
    return _kernels[key]


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
    qmv_t, qmv_n, _ = kernels(prim.bits, prim.group_size)
    lead = x.shape[:-1]
    x2 = np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=np.float32)
    w2 = np.ascontiguousarray(wq)
    s2 = np.ascontiguousarray(scales, dtype=np.float32)
    b2 = np.ascontiguousarray(biases, dtype=np.float32)
    m, k = x2.shape
    per = 32 // prim.bits
    if prim.transpose:
        xr = np.ascontiguousarray(x2.reshape(m, k // per, per).transpose(0, 2, 1))
        xsum = x2.reshape(m, k // prim.group_size, prim.group_size).sum(-1, dtype=np.float32)
        out = np.empty((m, wq.shape[0]), np.float32)
        qmv_t(xr, xsum, w2, s2, b2, out)
    else:
        out = np.empty((m, wq.shape[1] * per), np.float32)
        qmv_n(x2, w2, s2, b2, max(1, min(_nb.get_num_threads(), k)), out)
    return out.reshape(lead + (out.shape[-1],)).astype(prim.dtype.np, copy=False)


def quantized_matmul(prim, xp, *bufs):
    """Override of ``QuantizedMatmul.eval`` on the CPU."""
    biases = bufs[3] if prim.mode == "affine" else None
    out = fused(prim, bufs[0], bufs[1], bufs[2], biases)
    return prim.eval(xp, *bufs) if out is None else out
