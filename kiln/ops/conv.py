"""Convolution ops (channels-last, as in MLX): conv1d/2d/3d, conv_general,
the transposed convolutions and 1-D ``convolve``.

Every op validates and normalises its arguments here and builds one
``Convolution`` node (see ``primitives/conv.py``), so all of them share the
same eval, gradients and vmap rule.
"""
from __future__ import annotations

import numpy as np

from kiln import dtypes as _dt
from kiln.ops.normalize import as_array, astype, get_stream, shape_str
from kiln.graph.array import _make, array
from kiln.primitives.conv import Convolution, conv_out_size

__all__ = [
    "conv1d", "conv2d", "conv3d", "conv_general", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "convolve",
]


# ---------------------------------------------------------------- argument checks
def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_int(v, fn: str, arg: str) -> int:
    if not _is_int(v):
        raise TypeError(f"{fn}(): incompatible function arguments: {arg} must be an int, "
                        f"got {type(v).__name__}.")
    return int(v)


def _per_axis(v, n: int, fn: str, arg: str) -> tuple:
    """An int or an ``n``-tuple of ints for the fixed-rank ops (conv2d, ...)."""
    if _is_int(v):
        return (int(v),) * n
    if isinstance(v, (tuple, list)) and len(v) == n and all(_is_int(e) for e in v):
        return tuple(int(e) for e in v)
    raise TypeError(f"{fn}(): incompatible function arguments: {arg} must be an int or a "
                    f"tuple of {n} ints, got {v!r}.")


def _general_arg(v, d: int, what: str) -> tuple:
    """An int or a sequence of ints for ``conv_general``; length checked against ``d``."""
    if _is_int(v):
        return (int(v),) * d
    if not isinstance(v, (tuple, list)) or not all(_is_int(e) for e in v):
        raise TypeError(f"conv_general(): incompatible function arguments: {what} must be an int "
                        f"or a sequence of ints, got {v!r}.")
    v = tuple(int(e) for e in v)
    if len(v) != d:
        raise ValueError(f"[conv] Invalid {what} {shape_str(v)} for {d}D convolution.")
    return v


def _general_padding(padding, d: int) -> tuple:
    """``padding`` as ``(lo, hi)``: an int, a sequence, or a pair of sequences."""
    if _is_int(padding):
        return (int(padding),) * d, (int(padding),) * d
    pair = (isinstance(padding, tuple) and len(padding) == 2
            and all(isinstance(p, (tuple, list)) for p in padding))
    if pair:
        lo, hi = padding
        ok = all(_is_int(e) for e in lo) and all(_is_int(e) for e in hi)
        if ok:
            lo, hi = tuple(int(e) for e in lo), tuple(int(e) for e in hi)
            if len(lo) != d or len(hi) != d:
                raise ValueError(f"[conv] Invalid padding {shape_str(lo)} | {shape_str(hi)} "
                                 f"for {d}D convolution.")
            return lo, hi
    elif isinstance(padding, (tuple, list)) and all(_is_int(e) for e in padding):
        lo = tuple(int(e) for e in padding)
        if len(lo) != d:
            raise ValueError(f"[conv] Invalid padding {shape_str(lo)} | {shape_str(lo)} "
                             f"for {d}D convolution.")
        return lo, lo
    raise TypeError("conv_general(): incompatible function arguments: padding must be an int, a "
                    f"sequence of ints or a pair of sequences of ints, got {padding!r}.")


def _inputs(input, weight):
    """Convert and promote both operands; convolutions need floating point."""
    x, w = as_array(input), as_array(weight)
    dt = x._dtype if x._dtype is w._dtype else _dt._PROMOTE[(x._dtype, w._dtype)]
    if dt.kind != "f":
        raise ValueError(f"[conv] Invalid input array with type {dt.name}. Convolution currently only "
                         "supports floating point types")
    if x._dtype is not dt:
        x = astype(x, dt)
    if w._dtype is not dt:
        w = astype(w, dt)
    return x, w


def _check_ranks(x, w, d: int | None) -> int:
    """Spatial rank of the convolution (``d`` when the op fixes it)."""
    if not 1 <= x.ndim - 2 <= 3:
        raise ValueError("[conv] Only works for inputs with 1-3 spatial dimensions. The inputs must be "
                         "in the format [N, ..., C_in]")
    if d is None:
        d = x.ndim - 2
    if x.ndim != d + 2:
        raise ValueError(f"[conv] Invalid input array with {x.ndim} dimensions for {d}D convolution. "
                         f"Expected an array with {d + 2} dimensions following the format [N, ..., C_in].")
    if w.ndim != d + 2:
        raise ValueError(f"[conv] Invalid weight array with {w.ndim} dimensions for {d}D convolution. "
                         f"Expected an array with {d + 2} dimensions following the format "
                         "[C_out, ..., C_in].")
    return d


def _check_channels(x, w, groups: int) -> None:
    c_in = x.shape[-1]
    if groups < 1:
        raise ValueError(f"[conv] Groups must be positive. Got {groups} groups.")
    if c_in % groups:
        raise ValueError(f"[conv] The input channels must be divisible by the number of groups. Got input "
                         f"with shape {shape_str(x.shape)} and {groups} groups.")
    if groups > 1 and w.shape[0] % groups:
        raise ValueError(f"[conv] If groups > 1, the output channels must be divisible by the number of "
                         f"groups. Got {w.shape[0]} output channels and {groups} groups.")
    if w.shape[-1] * groups != c_in:
        raise ValueError(f"[conv] Expect the input channels in the input and weight array to match but got "
                         f"shapes - input: {shape_str(x.shape)} and weight: {shape_str(w.shape)}")


def _build(x, w, stride, lo, hi, kdil, idil, groups, flip, stream) -> array:
    """Check the sizes and build the ``Convolution`` node (arguments already normalised)."""
    for name, vals in (("Stride sizes", stride), ("Kernel dilation sizes", kdil),
                       ("Input dilation sizes", idil)):
        if any(v <= 0 for v in vals):
            what = name.split(" sizes")[0].lower()
            raise ValueError(f"[conv] {name} must be positive. Got {what.replace('stride', 'strides')} "
                             f"{shape_str(vals)}.")
    for i, (s, k) in enumerate(zip(x.shape[1:-1], w.shape[1:-1])):
        if k <= 0:
            raise ValueError(f"[conv] Weight spatial dimensions must be positive. Got weight of shape "
                             f"{shape_str(w.shape)}.")
        if conv_out_size(s, k, 1, lo[i], hi[i], kdil[i], idil[i]) < 1:
            raise ValueError(
                "[conv] Spatial dimensions of input after padding cannot be smaller than weight spatial "
                f"dimensions. Got error at axis {i + 1} for input with shape {shape_str(x.shape)}, padding "
                f"low {shape_str(lo)}, padding high {shape_str(hi)}, and weight of shape "
                f"{shape_str(w.shape)}.")
    prim = Convolution(stride=tuple(stride), pad_lo=tuple(lo), pad_hi=tuple(hi),
                       kernel_dilation=tuple(kdil), input_dilation=tuple(idil),
                       groups=int(groups), flip=bool(flip))
    return _make(prim.out_shape(x.shape, w.shape), x._dtype, prim, (x, w), get_stream(stream))


# ---------------------------------------------------------------- public ops
def conv_general(input, weight, /, stride=1, padding=0, kernel_dilation=1, input_dilation=1,
                 groups: int = 1, flip: bool = False, *, stream=None) -> array:
    """General convolution over an input with several channels (channels last).

    Args:
        input: input of shape ``(N, ..., C_in)`` with 1 to 3 spatial axes.
        weight: weight of shape ``(C_out, ..., C_in // groups)``.
        stride: kernel strides, an int or one per spatial axis.
        padding: an int, one int per axis (symmetric), or a pair
            ``(low, high)`` of sequences for asymmetric padding.
        kernel_dilation: kernel dilation, an int or one per axis.
        input_dilation: input dilation, an int or one per axis.
        groups: input feature groups.
        flip: flip the kernel's spatial axes (convolution rather than
            cross-correlation).
        stream: stream or device to run on.

    Returns:
        The convolved array of shape ``(N, ..., C_out)``.
    """
    x, w = _inputs(input, weight)
    d = _check_ranks(x, w, None)
    groups = _check_int(groups, "conv_general", "groups")
    _check_channels(x, w, groups)
    stride = _general_arg(stride, d, "strides")
    lo, hi = _general_padding(padding, d)
    kdil = _general_arg(kernel_dilation, d, "kernel dilation")
    idil = _general_arg(input_dilation, d, "input dilation")
    return _build(x, w, stride, lo, hi, kdil, idil, groups, flip, stream)


def _conv_nd(d, fn, input, weight, stride, padding, dilation, groups, stream):
    x, w = _inputs(input, weight)
    _check_ranks(x, w, d)
    groups = _check_int(groups, fn, "groups")
    _check_channels(x, w, groups)
    stride = _per_axis(stride, d, fn, "stride")
    padding = _per_axis(padding, d, fn, "padding")
    dilation = _per_axis(dilation, d, fn, "dilation")
    return _build(x, w, stride, padding, padding, dilation, (1,) * d, groups, False, stream)


def conv1d(input, weight, /, stride: int = 1, padding: int = 0, dilation: int = 1, groups: int = 1,
           *, stream=None) -> array:
    """1-D convolution over an input with several channels.

    Args:
        input: input of shape ``(N, L, C_in)``.
        weight: weight of shape ``(C_out, K, C_in // groups)``.
        stride: kernel stride.
        padding: symmetric input padding.
        dilation: kernel dilation.
        groups: input feature groups.
        stream: stream or device to run on.

    Returns:
        The convolved array of shape ``(N, L_out, C_out)``.
    """
    for name, v in (("stride", stride), ("padding", padding), ("dilation", dilation)):
        _check_int(v, "conv1d", name)
    return _conv_nd(1, "conv1d", input, weight, stride, padding, dilation, groups, stream)


def conv2d(input, weight, /, stride=1, padding=0, dilation=1, groups: int = 1, *, stream=None) -> array:
    """2-D convolution over an input with several channels.

    Args:
        input: input of shape ``(N, H, W, C_in)``.
        weight: weight of shape ``(C_out, KH, KW, C_in // groups)``.
        stride: an int or a pair of kernel strides.
        padding: an int or a pair of symmetric paddings.
        dilation: an int or a pair of kernel dilations.
        groups: input feature groups.
        stream: stream or device to run on.

    Returns:
        The convolved array of shape ``(N, H_out, W_out, C_out)``.
    """
    return _conv_nd(2, "conv2d", input, weight, stride, padding, dilation, groups, stream)


def conv3d(input, weight, /, stride=1, padding=0, dilation=1, groups: int = 1, *, stream=None) -> array:
    """3-D convolution over an input with several channels.

    Unlike MLX, ``groups > 1`` is supported.

    Args:
        input: input of shape ``(N, D, H, W, C_in)``.
        weight: weight of shape ``(C_out, KD, KH, KW, C_in // groups)``.
        stride: an int or a triple of kernel strides.
        padding: an int or a triple of symmetric paddings.
        dilation: an int or a triple of kernel dilations.
        groups: input feature groups.
        stream: stream or device to run on.

    Returns:
        The convolved array of shape ``(N, D_out, H_out, W_out, C_out)``.
    """
    return _conv_nd(3, "conv3d", input, weight, stride, padding, dilation, groups, stream)


def _conv_transpose_nd(d, fn, input, weight, stride, padding, dilation, output_padding, groups, stream):
    # A transposed convolution is the convolution of the stride-dilated input
    # with the flipped kernel, padded so each input pixel spreads over the kernel.
    x, w = _inputs(input, weight)
    _check_ranks(x, w, d)
    groups = _check_int(groups, fn, "groups")
    _check_channels(x, w, groups)
    stride = _per_axis(stride, d, fn, "stride")
    padding = _per_axis(padding, d, fn, "padding")
    dilation = _per_axis(dilation, d, fn, "dilation")
    output_padding = _per_axis(output_padding, d, fn, "output_padding")
    if any(v <= 0 for v in dilation):
        raise ValueError("[conv] Kernel dilation sizes must be positive. Got kernel dilation "
                         f"{shape_str(dilation)}.")
    lo = tuple(dl * (k - 1) - p for dl, k, p in zip(dilation, w.shape[1:-1], padding))
    hi = tuple(a + op for a, op in zip(lo, output_padding))
    return _build(x, w, (1,) * d, lo, hi, dilation, stride, groups, True, stream)


def conv_transpose1d(input, weight, /, stride: int = 1, padding: int = 0, dilation: int = 1,
                     output_padding: int = 0, groups: int = 1, *, stream=None) -> array:
    """1-D transposed convolution over an input with several channels.

    Args:
        input: input of shape ``(N, L, C_in)``.
        weight: weight of shape ``(C_out, K, C_in // groups)``.
        stride: kernel stride.
        padding: input padding.
        dilation: kernel dilation.
        output_padding: extra size added to the high end of the output.
        groups: input feature groups.
        stream: stream or device to run on.

    Returns:
        The array of shape ``(N, L_out, C_out)`` with
        ``L_out = (L - 1) * stride - 2 * padding + dilation * (K - 1) + output_padding + 1``.
    """
    for name, v in (("stride", stride), ("padding", padding), ("dilation", dilation),
                    ("output_padding", output_padding)):
        _check_int(v, "conv_transpose1d", name)
    return _conv_transpose_nd(1, "conv_transpose1d", input, weight, stride, padding, dilation,
                              output_padding, groups, stream)


def conv_transpose2d(input, weight, /, stride=1, padding=0, dilation=1, output_padding=0,
                     groups: int = 1, *, stream=None) -> array:
    """2-D transposed convolution over an input with several channels.

    Args:
        input: input of shape ``(N, H, W, C_in)``.
        weight: weight of shape ``(C_out, KH, KW, C_in // groups)``.
        stride: an int or a pair of kernel strides.
        padding: an int or a pair of paddings.
        dilation: an int or a pair of kernel dilations.
        output_padding: an int or a pair of output paddings.
        groups: input feature groups.
        stream: stream or device to run on.

    Returns:
        The array of shape ``(N, H_out, W_out, C_out)``.
    """
    return _conv_transpose_nd(2, "conv_transpose2d", input, weight, stride, padding, dilation,
                              output_padding, groups, stream)


def conv_transpose3d(input, weight, /, stride=1, padding=0, dilation=1, output_padding=0,
                     groups: int = 1, *, stream=None) -> array:
    """3-D transposed convolution over an input with several channels.

    Args:
        input: input of shape ``(N, D, H, W, C_in)``.
        weight: weight of shape ``(C_out, KD, KH, KW, C_in // groups)``.
        stride: an int or a triple of kernel strides.
        padding: an int or a triple of paddings.
        dilation: an int or a triple of kernel dilations.
        output_padding: an int or a triple of output paddings.
        groups: input feature groups.
        stream: stream or device to run on.

    Returns:
        The array of shape ``(N, D_out, H_out, W_out, C_out)``.
    """
    return _conv_transpose_nd(3, "conv_transpose3d", input, weight, stride, padding, dilation,
                              output_padding, groups, stream)


def convolve(a, v, /, mode: str = "full", *, stream=None) -> array:
    """The discrete convolution of two 1-D arrays (NumPy's ``convolve``).

    If ``v`` is longer than ``a`` they are swapped. The kernel is flipped, as
    in signal processing.

    Args:
        a: 1-D input.
        v: 1-D input.
        mode: ``"full"``, ``"valid"`` or ``"same"``.
        stream: stream or device to run on.

    Returns:
        The 1-D convolution.
    """
    from kiln.ops.shape import reshape

    a, v = as_array(a), as_array(v)
    if a.ndim != 1 or v.ndim != 1:
        raise ValueError("[convolve] Inputs must be 1D.")
    if a.size == 0 or v.size == 0:
        raise ValueError("[convolve] Inputs cannot be empty.")
    if mode not in ("full", "valid", "same"):
        raise ValueError("[convolve] Invalid mode.")
    x, w = _inputs(a, v)
    if w.size > x.size:
        x, w = w, x
    n, k = x.size, w.size
    if mode == "full":
        lo = hi = k - 1
    elif mode == "valid":
        lo = hi = 0
    else:  # "same": output of length n, centred as NumPy does
        lo = (k - 1) // 2 if k % 2 else k // 2
        hi = k - 1 - lo
    out = _build(reshape(x, (1, n, 1)), reshape(w, (1, k, 1)), (1,), (lo,), (hi,), (1,), (1,), 1, True,
                 stream)
    return reshape(out, (out.shape[1],))
