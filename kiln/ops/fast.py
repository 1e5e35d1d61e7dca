"""``mx.fast``: fused-in-MLX layers (norms, RoPE, attention) as compositions of ops.

Each function validates like MLX and is then written with public ops, so
grad, jvp, vmap and compile work through it with no rules of its own.
Low-precision inputs are computed in float32 and cast back, as MLX does.
"""
from __future__ import annotations

import math
import numpy as np
from typing import Optional, Union

from kiln import dtypes as _dt
from kiln.ops import elementwise as _ew
from kiln.ops import reduce as _rd
from kiln.ops import products as _pr
from kiln.ops import creation as _cr
from kiln.ops import shape as _sh
from kiln.ops.normalize import as_array, shape_str
from kiln.graph.array import array

__all__ = ["rms_norm", "layer_norm", "rope", "scaled_dot_product_attention",
           "metal_kernel", "cuda_kernel", "precompiled_cuda_kernel"]


def _compute_dtype(dtype):
    """float32 for half types (accumulate precisely), the dtype itself otherwise."""
    return _dt.float32 if dtype in (_dt.float16, _dt.bfloat16) else dtype


def _check_norm_input(x: array, name: str) -> None:
    if x.ndim == 0:
        raise ValueError(f"[{name}] Input must have at least 1 dimension but got input "
                         "with 0 dimensions.")
    if not _dt.issubdtype(x.dtype, _dt.floating):
        raise ValueError(f"[{name}] Received unsupported type {x.dtype.name}.")


def _check_param(p, x: array, what: str, name: str) -> Optional[array]:
    if p is None:
        return None
    p = as_array(p)
    if p.ndim != 1:
        raise ValueError(f"[{name}] {what} must have 1 dimension but has {p.ndim} dimensions.")
    if p.shape[0] != x.shape[-1]:
        raise ValueError(f"[{name}] {what} must have the same size as the last dimension of x "
                         f"but has {p.shape[0]} elements.")
    return p


def rms_norm(x, weight, eps: float, *, stream=None) -> array:
    """Root-mean-square normalisation over the last axis.

    Args:
        x: input array (floating point, at least 1-D).
        weight: 1-D scale with the size of the last axis, or None.
        eps: added to the mean square for numerical stability.
        stream: stream or device.

    Returns:
        ``x / sqrt(mean(x**2) + eps) * weight``.
    """
    x = as_array(x)
    _check_norm_input(x, "rms_norm")
    weight = _check_param(weight, x, "(*weight)", "rms_norm")
    xc = _ew.astype(x, _compute_dtype(x.dtype), stream=stream)
    ms = _rd.mean(_ew.square(xc, stream=stream), axis=-1, keepdims=True, stream=stream)
    y = _ew.astype(xc * _ew.rsqrt(ms + eps, stream=stream), x.dtype, stream=stream)
    return y if weight is None else _ew.multiply(y, weight, stream=stream)


def layer_norm(x, weight, bias, eps: float, *, stream=None) -> array:
    """Layer normalisation over the last axis.

    Args:
        x: input array (floating point, at least 1-D).
        weight: 1-D scale with the size of the last axis, or None.
        bias: 1-D offset with the size of the last axis, or None.
        eps: added to the variance for numerical stability.
        stream: stream or device.

    Returns:
        ``(x - mean) / sqrt(var + eps) * weight + bias``.
    """
    x = as_array(x)
    _check_norm_input(x, "layer_norm")
    weight = _check_param(weight, x, "weight", "layer_norm")
    bias = _check_param(bias, x, "bias", "layer_norm")
    xc = _ew.astype(x, _compute_dtype(x.dtype), stream=stream)
    mu = _rd.mean(xc, axis=-1, keepdims=True, stream=stream)
    d = xc - mu
    var = _rd.mean(_ew.square(d, stream=stream), axis=-1, keepdims=True, stream=stream)
    y = _ew.astype(d * _ew.rsqrt(var + eps, stream=stream), x.dtype, stream=stream)
    if weight is not None:
        y = _ew.multiply(y, weight, stream=stream)
    if bias is not None:
        y = _ew.add(y, bias, stream=stream)
    return y


def rope(a, dims: int, *, traditional: bool, base: Optional[float], scale: float,
         offset: Union[int, array], freqs=None, stream=None) -> array:
    """Rotary positional encoding of the first ``dims`` features.

    Args:
        a: input of shape ``(B, *, T, D)`` (floating point, at least 3-D).
        dims: number of leading features to rotate (even, at most ``D``).
        traditional: rotate consecutive pairs ``(0, 1), (2, 3), ...`` instead
            of the two halves ``(i, i + dims/2)``.
        base: base of the angular frequencies ``base ** (-2i / dims)``; exactly
            one of ``base`` and ``freqs`` must be given.
        scale: multiplies the positions.
        offset: first position: an int, a 0-d integer array, or one per batch
            element (a vector of ``B`` integers).
        freqs: explicit frequencies, ``dims // 2`` of them.
        stream: stream or device.

    Returns:
        The rotated array, of ``a``'s dtype.
    """
    a = as_array(a)
    if a.ndim < 3:
        raise ValueError(f"[rope] Input must have at least 3 dimensions but got input with "
                         f"{a.ndim} dimensions.")
    if not _dt.issubdtype(a.dtype, _dt.floating):
        raise ValueError(f"[rope] Input must be a floating type but got {a.dtype.name}.")
    if dims <= 0:
        raise ValueError(f"[rope] dims must be positive but got {dims}.")
    if dims % 2:
        raise ValueError(f"[rope] dims must be even but got {dims}.")
    if dims > a.shape[-1]:
        raise ValueError(f"[rope] dims must not exceed the input's last dimension "
                         f"({a.shape[-1]}) but got {dims}.")
    if (base is None) == (freqs is None):
        raise ValueError("[rope] Neither base nor freqs has a value." if base is None
                         else "[rope] Only one of base or freqs can have a value.")
    half = dims // 2
    if freqs is not None:
        freqs = as_array(freqs)
        if freqs.ndim != 1 or freqs.shape[0] != half:
            raise ValueError(f"[rope] freqs must be one dimensional with size {half} but got "
                             f"shape {shape_str(freqs.shape)}.")
        inv_freq = _ew.reciprocal(_ew.astype(freqs, _dt.float32))
    else:
        exps = _cr.arange(0, half, dtype=_dt.float32) * (-2.0 / dims)
        inv_freq = _ew.power(array(float(base), dtype=_dt.float32), exps)
    B, T = a.shape[0], a.shape[-2]
    pos = _cr.arange(T, dtype=_dt.float32)
    if isinstance(offset, array):
        if not _dt.issubdtype(offset.dtype, _dt.integer):
            raise ValueError(f"[rope] offset must be an integer but got type {offset.dtype.name}.")
        if offset.ndim > 1 or (offset.ndim == 1 and offset.shape[0] not in (1, B)):
            raise ValueError(f"[rope] offset must be a scalar or vector with {B} elements but "
                             f"has shape {shape_str(offset.shape)}.")
        off = _ew.astype(offset, _dt.float32)
        if offset.ndim == 1:
            # One offset per batch element: positions get shape (B, 1, ..., T).
            off = _sh.reshape(off, (offset.shape[0],) + (1,) * (a.ndim - 2))
        pos = pos + off
    else:
        pos = pos + float(offset)
    theta = _sh.expand_dims(pos * scale, -1) * inv_freq  # (..., T, half)
    cos, sin = _ew.cos(theta), _ew.sin(theta)
    xc = _ew.astype(a, _compute_dtype(a.dtype))
    rot = xc[..., :dims]
    if traditional:
        pairs = _sh.reshape(rot, rot.shape[:-1] + (half, 2))
        x1, x2 = pairs[..., 0], pairs[..., 1]
        y = _sh.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
        y = _sh.reshape(y, y.shape[:-2] + (dims,))
    else:
        x1, x2 = rot[..., :half], rot[..., half:]
        y = _sh.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    y = _ew.astype(y, a.dtype)
    if dims < a.shape[-1]:
        y = _sh.concatenate([y, a[..., dims:]], axis=-1)
    return y


def scaled_dot_product_attention(q, k, v, *, scale: float, mask=None, sinks=None,
                                 force_fused: bool = False, stream=None) -> array:
    """Multi-head attention ``softmax(scale * q @ k.T + mask) @ v``.

    Supports grouped-query and multi-query attention (``k``/``v`` with fewer
    heads than ``q``, not pre-tiled). The softmax runs in float32.

    Args:
        q: queries ``(B, N_q, T_q, D)``.
        k: keys ``(B, N_kv, T_kv, D)``.
        v: values ``(B, N_kv, T_kv, D_v)``.
        scale: multiplies the queries (typically ``1 / sqrt(D)``).
        mask: None, ``"causal"`` (lower-right aligned: the last query sees
            every key), a boolean mask (True keeps) or an additive mask,
            broadcastable to ``(B, N_q, T_q, T_kv)``.
        sinks: optional per-head extra logits ``(N_q,)`` that take part in
            the softmax but attend to nothing.
        force_fused: accepted for compatibility (kiln has no fused kernel).
        stream: stream or device.

    Returns:
        ``(B, N_q, T_q, D_v)`` in the promoted dtype of ``q``, ``k``, ``v``.
    """
    name = "scaled_dot_product_attention"
    q, k, v = as_array(q), as_array(k), as_array(v)
    for t in (q, k, v):
        if t.ndim != 4:
            raise ValueError(f"[{name}] input with shape {shape_str(t.shape)} expected to be rank 4")
    n_q, n_kv = q.shape[1], k.shape[1]
    if n_kv == 0 or n_q % n_kv:
        raise ValueError(f"[{name}] n_heads must be a multiple of n_kv_heads, found n_heads "
                         f"{n_q} for n_kv_heads {n_kv}.")
    if isinstance(mask, str) and mask != "causal":
        raise ValueError(f"[{name}] invalid mask option '{mask}'. Must be 'causal', or an array.")
    if mask is not None and not isinstance(mask, str):
        mask = as_array(mask)
        if mask.ndim > 4:
            raise ValueError(f"[{name}] the mask with shape {shape_str(mask.shape)} expected to "
                             "have at most rank 4.")
    dtype = _sh.result_type(q, k, v)
    if sinks is not None:
        sinks = as_array(sinks)
        if _dt.promote_types(sinks.dtype, dtype) is not dtype:
            raise ValueError(f"[{name}] Type of sinks must promote to output type "
                             f"{str(dtype).split('.')[-1]}.")
        if sinks.ndim != 1 or sinks.shape[0] != n_q:
            raise ValueError(f"[{name}] Received invalid shape for sinks {shape_str(sinks.shape)}.")
    B, T_q, T_kv = q.shape[0], q.shape[2], k.shape[2]
    rep = n_q // n_kv
    # Group the query heads that share one key/value head: (B, N_kv, rep, T_q, D).
    qg = _sh.reshape(_ew.astype(q, dtype) * scale, (B, n_kv, rep, T_q, q.shape[3]))
    kg = _sh.expand_dims(_ew.astype(k, dtype), 2)
    vg = _sh.expand_dims(_ew.astype(v, dtype), 2)
    scores = _pr.matmul(qg, _sh.swapaxes(kg, -1, -2))
    # Half types get a float32 softmax; float64 keeps its precision.
    sdt = _compute_dtype(dtype)
    scores = _ew.astype(_sh.reshape(scores, (B, n_q, T_q, T_kv)), sdt)
    neg_inf = array(-math.inf, dtype=sdt)
    if isinstance(mask, str):
        rows = _sh.expand_dims(_cr.arange(T_q), 1) + (T_kv - T_q)
        keep = _cr.arange(T_kv) <= rows
        scores = _ew.where(keep, scores, neg_inf)
    elif mask is not None:
        full = _sh.broadcast_shapes(mask.shape, scores.shape)  # raises MLX's error
        del full
        if mask.dtype == _dt.bool_:
            # The lowest finite value, not -inf: a row masked everywhere then averages v
            # (as MLX) instead of giving 0/0 = NaN.
            scores = _ew.where(mask, scores, array(float(np.finfo(sdt.np).min), dtype=sdt))
        else:
            scores = scores + _ew.astype(mask, sdt)
    if sinks is not None:
        s = _ew.astype(as_array(sinks), sdt)
        s = _sh.broadcast_to(_sh.reshape(s, (1, n_q, 1, 1)), (B, n_q, T_q, 1))
        probs = _rd.softmax(_sh.concatenate([s, scores], axis=-1), axis=-1)[..., 1:]
    else:
        probs = _rd.softmax(scores, axis=-1)
    probs = _sh.reshape(_ew.astype(probs, dtype), (B, n_kv, rep, T_q, T_kv))
    out = _pr.matmul(probs, vg)
    return _sh.reshape(out, (B, n_q, T_q, v.shape[3]))


def _no_custom_kernels(kind: str):
    def make(*args, **kwargs):
        raise NotImplementedError(
            f"[{kind}] Custom source kernels are not supported: kiln's backends are "
            "NumPy (cpu) and CuPy (cuda) without user kernels. "
            "Write the computation with mx ops (and mx.compile to fuse it) instead.")
    make.__name__ = kind
    make.__doc__ = f"Not supported in kiln (no custom {kind} source kernels); raises NotImplementedError."
    return make


from kiln.ops.custom_kernel import metal_kernel  # noqa: E402 (recorded for export, never run)
cuda_kernel = _no_custom_kernels("cuda_kernel")
precompiled_cuda_kernel = _no_custom_kernels("precompiled_cuda_kernel")
