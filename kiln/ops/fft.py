"""``mx.fft``: discrete Fourier transforms, shifts and sample frequencies.

Every transform funnels into ``_fftn``, which validates like MLX, casts the
input (complex64, or float32 for ``rfft``), pads or truncates each axis to
the requested size with ordinary ops, and builds one ``FFT`` node; the
transform rules live in ``primitives/fft.py``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from kiln import dtypes as _dt
from kiln.ops.normalize import as_array, get_stream, norm_axis, shape_str
from kiln.graph.array import _make, array
from kiln.primitives.fft import FFT

__all__ = [
    "fft", "ifft", "fft2", "ifft2", "fftn", "ifftn", "rfft", "irfft", "rfft2", "irfft2",
    "rfftn", "irfftn", "fftshift", "ifftshift", "fftfreq", "rfftfreq",
]

_NORMS = ("backward", "ortho", "forward")


def _resize_axis(x: array, ax: int, size: int, stream) -> array:
    """``x`` truncated or zero-padded at the end of axis ``ax`` to ``size``."""
    from kiln.ops.shape import _slice_axis, pad

    n = x.shape[ax]
    if size < n:
        return _slice_axis(x, ax, 0, size, stream=stream)
    if size > n:
        widths = [(0, 0)] * x.ndim
        widths[ax] = (0, size - n)
        return pad(x, widths, stream=stream)
    return x


def _fftn(a, s, axes, norm: str, inverse: bool, real: bool, name: str, stream) -> array:
    """Shared validation and node building of every transform.

    Args:
        a: input.
        s: per-axis transform sizes or None (the input's sizes).
        axes: the axes, or None for all of them.
        norm: "backward", "ortho" or "forward".
        inverse, real: which transform (see ``FFT``).
        name: the n-dimensional op name used in error messages.
        stream: stream or device.
    """
    from kiln.ops.elementwise import astype

    a = as_array(a)
    if norm not in _NORMS:
        raise ValueError(f"[{name.rstrip('n')}] Invalid norm. Expected one of "
                         "{'backward', 'ortho', 'forward'}.")
    if axes is None:
        if s is not None:
            raise ValueError(f"[{name}] `axes` should not be `None` if `s` is not `None`.")
        axes = tuple(range(a.ndim))
    else:
        axes = (axes,) if isinstance(axes, (int, np.integer)) else tuple(axes)
    if s is not None:
        s = (s,) if isinstance(s, (int, np.integer)) else tuple(s)
        if len(s) != len(axes):
            raise ValueError(f"[{name}] Shape and axes have different sizes.")
    axes_n = tuple(norm_axis(ax, a.ndim, name) for ax in axes)
    if len(set(axes_n)) != len(axes_n):
        raise ValueError(f"[{name}] Duplicated axis received {shape_str(axes)}")
    if not axes_n:
        return a
    if real and inverse:
        sizes = list(s) if s is not None else [a.shape[ax] for ax in axes_n]
        if s is None:
            sizes[-1] = 2 * (a.shape[axes_n[-1]] - 1)
    else:
        sizes = list(s) if s is not None else [a.shape[ax] for ax in axes_n]
    for n in sizes:
        if n <= 0:
            raise ValueError(f"[{name}] Invalid FFT output size requested ({n})")
    st = get_stream(stream) if stream is not None else a._stream
    a = astype(a, _dt.float32 if (real and not inverse) else _dt.complex64)
    in_sizes = list(sizes)
    if real and inverse:
        in_sizes[-1] = sizes[-1] // 2 + 1
    for ax, n in zip(axes_n, in_sizes):
        a = _resize_axis(a, ax, n, st)
    prim = FFT(axes_n, inverse, real, norm, sizes[-1] if (real and inverse) else 0)
    dtype = _dt.float32 if (real and inverse) else _dt.complex64
    return _make(prim.output_shapes([a])[0], dtype, prim, (a,), st)


def _one(n):
    return None if n is None else (n,)


def fft(a, n: Optional[int] = None, axis: int = -1, norm: str = "backward", stream=None) -> array:
    """One-dimensional discrete Fourier transform.

    Args:
        a: input array (cast to complex64).
        n: size of the transformed axis; the input is truncated or
            zero-padded to it. Defaults to ``a.shape[axis]``.
        axis: axis to transform.
        norm: "backward" (no scaling), "ortho" (``1/sqrt(n)``) or "forward" (``1/n``).
        stream: stream or device.

    Returns:
        The complex64 transform.
    """
    return _fftn(a, _one(n), (axis,), norm, False, False, "fftn", stream)


def ifft(a, n: Optional[int] = None, axis: int = -1, norm: str = "backward", stream=None) -> array:
    """One-dimensional inverse discrete Fourier transform (see ``fft``).

    Returns:
        The complex64 inverse transform (scaled by ``1/n`` with norm "backward").
    """
    return _fftn(a, _one(n), (axis,), norm, True, False, "ifftn", stream)


def fft2(a, s: Optional[Sequence[int]] = None, axes: Optional[Sequence[int]] = (-2, -1),
         norm: str = "backward", stream=None) -> array:
    """Two-dimensional discrete Fourier transform.

    Args:
        a: input array.
        s: sizes of the transformed axes (truncate or zero-pad); defaults to the input's.
        axes: the two axes to transform.
        norm: normalisation mode (see ``fft``).
        stream: stream or device.

    Returns:
        The complex64 transform.
    """
    return _fftn(a, s, axes, norm, False, False, "fftn", stream)


def ifft2(a, s: Optional[Sequence[int]] = None, axes: Optional[Sequence[int]] = (-2, -1),
          norm: str = "backward", stream=None) -> array:
    """Two-dimensional inverse discrete Fourier transform (see ``fft2``)."""
    return _fftn(a, s, axes, norm, True, False, "ifftn", stream)


def fftn(a, s: Optional[Sequence[int]] = None, axes: Optional[Sequence[int]] = None,
         norm: str = "backward", stream=None) -> array:
    """n-dimensional discrete Fourier transform.

    Args:
        a: input array.
        s: sizes of the transformed axes; needs ``axes`` when given.
        axes: axes to transform (all when None).
        norm: normalisation mode (see ``fft``).
        stream: stream or device.

    Returns:
        The complex64 transform.
    """
    return _fftn(a, s, axes, norm, False, False, "fftn", stream)


def ifftn(a, s: Optional[Sequence[int]] = None, axes: Optional[Sequence[int]] = None,
          norm: str = "backward", stream=None) -> array:
    """n-dimensional inverse discrete Fourier transform (see ``fftn``)."""
    return _fftn(a, s, axes, norm, True, False, "ifftn", stream)


def rfft(a, n: Optional[int] = None, axis: int = -1, norm: str = "backward", stream=None) -> array:
    """One-dimensional discrete Fourier transform of a real input.

    Args:
        a: input array (cast to float32; complex inputs keep their real part).
        n: size of the transformed axis (truncate or zero-pad).
        axis: axis to transform.
        norm: normalisation mode (see ``fft``).
        stream: stream or device.

    Returns:
        The complex64 half spectrum, ``n // 2 + 1`` long along ``axis``.
    """
    return _fftn(a, _one(n), (axis,), norm, False, True, "rfftn", stream)


def irfft(a, n: Optional[int] = None, axis: int = -1, norm: str = "backward", stream=None) -> array:
    """The inverse of ``rfft``.

    Args:
        a: half spectrum (cast to complex64).
        n: length of the real output along ``axis``; the input is truncated
            or zero-padded to ``n // 2 + 1``. Defaults to ``2 * (a.shape[axis] - 1)``.
        axis: axis to transform.
        norm: normalisation mode (see ``fft``).
        stream: stream or device.

    Returns:
        The float32 signal.
    """
    return _fftn(a, _one(n), (axis,), norm, True, True, "irfftn", stream)


def rfft2(a, s: Optional[Sequence[int]] = None, axes: Optional[Sequence[int]] = (-2, -1),
          norm: str = "backward", stream=None) -> array:
    """Two-dimensional real discrete Fourier transform (last axis halved)."""
    return _fftn(a, s, axes, norm, False, True, "rfftn", stream)


def irfft2(a, s: Optional[Sequence[int]] = None, axes: Optional[Sequence[int]] = (-2, -1),
           norm: str = "backward", stream=None) -> array:
    """The inverse of ``rfft2``; ``s`` gives the real output sizes."""
    return _fftn(a, s, axes, norm, True, True, "irfftn", stream)


def rfftn(a, s: Optional[Sequence[int]] = None, axes: Optional[Sequence[int]] = None,
          norm: str = "backward", stream=None) -> array:
    """n-dimensional real discrete Fourier transform.

    Args:
        a: input array (cast to float32).
        s: sizes of the transformed axes; needs ``axes`` when given.
        axes: axes to transform (all when None); the last one is halved.
        norm: normalisation mode (see ``fft``).
        stream: stream or device.

    Returns:
        The complex64 transform.
    """
    return _fftn(a, s, axes, norm, False, True, "rfftn", stream)


def irfftn(a, s: Optional[Sequence[int]] = None, axes: Optional[Sequence[int]] = None,
           norm: str = "backward", stream=None) -> array:
    """The inverse of ``rfftn``; ``s`` gives the real output sizes.

    Returns:
        The float32 signal.
    """
    return _fftn(a, s, axes, norm, True, True, "irfftn", stream)


def _shift(a, axes, inverse: bool, name: str, stream) -> array:
    from kiln.ops.shape import roll

    a = as_array(a)
    if axes is None:
        axes = tuple(range(a.ndim))
    elif isinstance(axes, (int, np.integer)):
        axes = (axes,)
    axes = tuple(norm_axis(ax, a.ndim, name) for ax in axes)
    if not axes:
        return a
    shifts = [-(a.shape[ax] // 2) if inverse else a.shape[ax] // 2 for ax in axes]
    return roll(a, shifts, axes, stream=stream)


def fftshift(a, axes=None, stream=None) -> array:
    """Move the zero-frequency term to the centre of each axis in ``axes``.

    Args:
        a: input array (any dtype).
        axes: an axis or axes to shift (all when None).
        stream: stream or device.

    Returns:
        The shifted array.
    """
    return _shift(a, axes, False, "fftshift", stream)


def ifftshift(a, axes=None, stream=None) -> array:
    """The inverse of ``fftshift`` (they differ on odd-length axes)."""
    return _shift(a, axes, True, "ifftshift", stream)


def _check_freq_args(n, d, name):
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise TypeError(f"[{name}] `n` must be an integer, got {type(n).__name__}.")
    if n <= 0:
        raise ValueError(f"[{name}] `n` must be greater than 0.")
    if d == 0:
        raise ValueError(f"[{name}] `d` must be non-zero.")


def fftfreq(n: int, d: float = 1.0, stream=None) -> array:
    """Sample frequencies of an ``n``-point ``fft`` with sample spacing ``d``.

    Args:
        n: the transform length.
        d: the sample spacing.
        stream: stream or device.

    Returns:
        float32 ``[0, 1, ..., (n-1)//2, -(n//2), ..., -1] / (d * n)``.
    """
    from kiln.ops.elementwise import where
    from kiln.ops.shape import arange

    _check_freq_args(n, d, "fftfreq")
    k = arange(n, dtype=_dt.int32, stream=stream)
    k = where(k < (n + 1) // 2, k, k - n, stream=stream)
    return k.astype(_dt.float32) / (d * n)


def rfftfreq(n: int, d: float = 1.0, stream=None) -> array:
    """Sample frequencies of an ``n``-point ``rfft``: ``[0, ..., n//2] / (d * n)``.

    Args:
        n: the transform length.
        d: the sample spacing.
        stream: stream or device.

    Returns:
        The float32 frequencies.
    """
    from kiln.ops.shape import arange

    _check_freq_args(n, d, "rfftfreq")
    return arange(n // 2 + 1, dtype=_dt.float32, stream=stream) / (d * n)
