"""Upsampling of the spatial axes of channels-last inputs (nearest, linear,
cubic), one axis at a time as gathers and weighted sums."""
from __future__ import annotations

import math
from typing import Literal, Tuple, Union

import kiln.core as mx
from kiln.nn.layers.base import Module

__all__ = ["Upsample", "upsample_nearest", "upsample_linear", "upsample_cubic"]


def _positions(n_in: int, n_out: int, scale: float, align_corners: bool):
    """Source coordinate of every output position along one axis."""
    i = mx.arange(n_out, dtype=mx.float32)
    if align_corners:
        step = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        return i * step
    return (i + 0.5) / scale - 0.5


def _take(x, idx, axis, n_in):
    return mx.take(x, mx.clip(idx, 0, n_in - 1), axis=axis)


def _shape_for(axis, ndim, n):
    shape = [1] * ndim
    shape[axis] = n
    return shape


def _nearest_axis(x, axis, scale, align_corners):
    n_in = x.shape[axis]
    n_out = int(math.floor(n_in * scale))
    idx = mx.floor(mx.arange(n_out, dtype=mx.float32) / scale).astype(mx.int32)
    return _take(x, idx, axis, n_in)


def _linear_axis(x, axis, scale, align_corners):
    n_in = x.shape[axis]
    n_out = int(math.floor(n_in * scale))
    pos = _positions(n_in, n_out, scale, align_corners)
    lo = mx.floor(pos)
    t = (pos - lo).reshape(_shape_for(axis, x.ndim, n_out)).astype(x.dtype)
    lo = lo.astype(mx.int32)
    a = _take(x, lo, axis, n_in)
    b = _take(x, lo + 1, axis, n_in)
    return a * (1 - t) + b * t


def _cubic_weight(d):
    # Keys' cubic convolution kernel with a = -0.75 on |d| in [0, 2).
    a = -0.75
    d = mx.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return mx.where(d <= 1, near, mx.where(d < 2, far, 0.0))


def _cubic_axis(x, axis, scale, align_corners):
    n_in = x.shape[axis]
    n_out = int(math.floor(n_in * scale))
    pos = _positions(n_in, n_out, scale, align_corners)
    base = mx.floor(pos)
    out = None
    for k in (-1, 0, 1, 2):
        idx = base + k
        w = _cubic_weight(pos - idx).reshape(_shape_for(axis, x.ndim, n_out)).astype(x.dtype)
        term = _take(x, idx.astype(mx.int32), axis, n_in) * w
        out = term if out is None else out + term
    return out


def _upsample(x, scale_factor, align_corners, axis_fn):
    dims = x.ndim - 2
    scales = scale_factor if isinstance(scale_factor, tuple) else (scale_factor,) * dims
    for d, s in enumerate(scales):
        x = axis_fn(x, d + 1, float(s), align_corners)
    return x


def upsample_nearest(x, scale_factor: Tuple):
    """Nearest-neighbour upsampling of the spatial axes of ``x`` (``N, ..., C``)."""
    return _upsample(x, tuple(scale_factor), False, _nearest_axis)


def upsample_linear(x, scale_factor: Tuple, align_corners: bool = False):
    """(Bi/tri)linear upsampling of the spatial axes of ``x``."""
    return _upsample(x, tuple(scale_factor), align_corners, _linear_axis)


def upsample_cubic(x, scale_factor: Tuple, align_corners: bool = False):
    """Bicubic (Keys, a = -0.75) upsampling of the spatial axes of ``x``."""
    return _upsample(x, tuple(scale_factor), align_corners, _cubic_axis)


class Upsample(Module):
    """Upsample the spatial axes of a channels-last input.

    Args:
        scale_factor: one factor for every spatial axis or a tuple of them.
        mode: ``'nearest'``, ``'linear'`` or ``'cubic'``.
        align_corners: map corner pixels to corner pixels (linear/cubic).
        antialias: not supported (kept for the MLX signature).
    """

    def __init__(self, scale_factor: Union[float, Tuple], mode: Literal["nearest", "linear", "cubic"] = "nearest",
                 align_corners: bool = False, antialias: bool = False):
        super().__init__()
        if mode not in ("nearest", "linear", "cubic"):
            raise ValueError(f"[Upsample] Got unsupported upsampling algorithm: {mode}")
        if antialias:
            raise NotImplementedError("[Upsample] antialias=True is not supported.")
        self.scale_factor = (
            tuple(float(s) for s in scale_factor) if isinstance(scale_factor, (list, tuple))
            else float(scale_factor)
        )
        self.mode = mode
        self.align_corners = align_corners

    def _extra_repr(self) -> str:
        return f"scale_factor={self.scale_factor}, mode={self.mode!r}, align_corners={self.align_corners}"

    def __call__(self, x):
        dims = x.ndim - 2
        if dims <= 0:
            raise ValueError(
                f"[Upsample] The input should have at least 1 spatial dimension which means it should be "
                f"at least 3D but {x.ndim}D was provided"
            )
        scale = self.scale_factor
        if isinstance(scale, tuple):
            if len(scale) != dims:
                raise ValueError(
                    f"[Upsample] One scale per spatial dimension is required but scale_factor={scale} "
                    f"and the number of spatial dimensions were {dims}"
                )
        else:
            scale = (scale,) * dims
        if self.mode == "nearest":
            return upsample_nearest(x, scale)
        if self.mode == "linear":
            return upsample_linear(x, scale, self.align_corners)
        return upsample_cubic(x, scale, self.align_corners)
