"""Positional encodings: rotary (RoPE), sinusoidal, and ALiBi biases."""
from __future__ import annotations

import math
from typing import Optional

import kiln.core as mx
from kiln.nn.layers.base import Module

__all__ = ["RoPE", "SinusoidalPositionalEncoding", "ALiBi"]


class RoPE(Module):
    """Rotary positional encoding of the first ``dims`` features of
    ``[..., L, D]`` inputs; position ``t`` rotates feature pair ``j`` by
    ``t * scale * base^(-2j/dims)``.

    Args:
        dims: number of features rotated (even).
        traditional: rotate adjacent pairs ``(2j, 2j+1)`` instead of
            ``(j, j + dims/2)``.
        base: the frequency base.
        scale: scale of the positions.

    Call with ``(x, offset=0)``.
    """

    def __init__(self, dims: int, traditional: bool = False, base: float = 10000, scale: float = 1.0):
        super().__init__()
        self.dims = dims
        self.traditional = traditional
        self.base = base
        self.scale = scale

    def _extra_repr(self) -> str:
        return f"{self.dims}, traditional={self.traditional}"

    def __call__(self, x, offset: int = 0):
        d = self.dims
        length = x.shape[-2]
        inv_freq = mx.exp(-mx.arange(0, d // 2, dtype=mx.float32) * (2 * math.log(self.base) / d))
        pos = (mx.arange(length, dtype=mx.float32) + offset) * self.scale
        theta = pos[:, None] * inv_freq[None, :]
        cos, sin = mx.cos(theta).astype(x.dtype), mx.sin(theta).astype(x.dtype)
        rot, rest = x[..., :d], x[..., d:]
        if self.traditional:
            pairs = rot.reshape(*rot.shape[:-1], d // 2, 2)
            a, b = pairs[..., 0], pairs[..., 1]
            out = mx.stack([a * cos - b * sin, a * sin + b * cos], axis=-1).reshape(rot.shape)
        else:
            a, b = rot[..., : d // 2], rot[..., d // 2:]
            out = mx.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
        if rest.shape[-1] == 0:
            return out
        return mx.concatenate([out, rest], axis=-1)


class SinusoidalPositionalEncoding(Module):
    """Sinusoidal encoding of (possibly fractional) positions: features
    ``sin(x * f_j)`` and ``cos(x * f_j)`` for ``dims / 2`` frequencies
    geometrically spaced from ``max_freq`` down to ``min_freq``.

    Args:
        dims: output features.
        min_freq: lowest frequency.
        max_freq: highest frequency.
        scale: output scale (default ``sqrt(2 / dims)``).
        cos_first: put the cosines first.
        full_turns: multiply the frequencies by ``2 pi``.
    """

    def __init__(self, dims: int, min_freq: float = 0.0001, max_freq: float = 1,
                 scale: Optional[float] = None, cos_first: bool = False, full_turns: bool = False):
        super().__init__()
        if not isinstance(dims, int) or dims <= 0 or dims % 2:
            raise ValueError(f"[SinusoidalPositionalEncoding] dims must be positive and even but "
                             f"got {dims}.")
        half = dims // 2
        # One frequency pair (dims == 2) sits at max_freq.
        one_zero = (1 - mx.arange(0, half, dtype=mx.float32) / (half - 1) if half > 1
                    else mx.ones((1,), dtype=mx.float32))
        lo, hi = math.log(min_freq), math.log(max_freq)
        self._sigmas = mx.exp(one_zero * (hi - lo) + lo)
        if full_turns:
            self._sigmas = self._sigmas * (2 * math.pi)
        self.scale = (2 / dims) ** 0.5 if scale is None else scale  # 0.0 is a valid scale
        self.cos_first = cos_first

    def __call__(self, x):
        y = x[..., None] * self._sigmas
        parts = [mx.cos(y), mx.sin(y)] if self.cos_first else [mx.sin(y), mx.cos(y)]
        y = mx.concatenate(parts, axis=-1)
        if self.scale != 1:
            y = y * self.scale
        return y


def _geometric_slopes(n: int):
    return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]


def _alibi_slopes(num_heads: int):
    """The ALiBi paper's head slopes: a geometric sequence for a power of two
    heads; otherwise those of the nearest lower power of two followed by
    every other slope of the next power of two."""
    p = 1 << (num_heads.bit_length() - 1)
    slopes = _geometric_slopes(p)
    if p < num_heads:
        slopes += _geometric_slopes(2 * p)[0::2][: num_heads - p]
    return slopes


class ALiBi(Module):
    """Attention with linear biases: adds ``-slope_h * |i - j|`` to the
    attention scores ``[..., H, Lq, Lk]`` with the head slopes of the ALiBi
    paper (``2^(-8 h / H)`` for ``H`` a power of two).

    Call with ``(attention_scores, offset=0, mask=None)``.
    """

    @staticmethod
    def create_alibi_matrix(q_sequence_length: int, k_sequence_length: int, num_heads: int,
                            offset: int, dtype=mx.float32):
        """The ``[1, H, Lq - offset, Lk]`` bias matrix."""
        q = mx.arange(offset, q_sequence_length)
        k = mx.arange(0, k_sequence_length)
        distance = -mx.abs(q[:, None] - k[None, :]).astype(mx.float32)
        slopes = mx.array(_alibi_slopes(num_heads), dtype=mx.float32)
        return (slopes[:, None, None] * distance[None])[None].astype(dtype)

    def __call__(self, attention_scores, offset: int = 0, mask=None):
        bias = self.create_alibi_matrix(
            q_sequence_length=attention_scores.shape[-2] + offset,
            k_sequence_length=attention_scores.shape[-1],
            num_heads=attention_scores.shape[-3],
            offset=offset,
            dtype=attention_scores.dtype,
        )
        if mask is not None:
            bias = bias + mask
        return attention_scores + bias
