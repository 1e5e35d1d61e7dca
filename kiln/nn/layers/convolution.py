"""Convolutions and transposed convolutions over channels-last inputs
(``NLC``, ``NHWC``, ``NDHWC``), with weights ``[out, *kernel, in]``."""
from __future__ import annotations

import math
from typing import Union

import kiln.core as mx
from kiln.nn.layers.base import Module

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]


def _tuple(x, n):
    return (x,) * n if isinstance(x, int) else tuple(x)


class _ConvNd(Module):
    """Shared init of the forward convolutions."""

    _nd = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True):
        super().__init__()
        if in_channels % groups != 0:
            raise ValueError(
                f"The number of input channels ({in_channels}) must be divisible by "
                f"the number of groups ({groups})"
            )
        n = self._nd
        kernel_size = _tuple(kernel_size, n)
        scale = math.sqrt(1 / (in_channels * math.prod(kernel_size)))
        self.weight = mx.random.uniform(
            low=-scale, high=scale, shape=(out_channels, *kernel_size, in_channels // groups)
        )
        if bias:
            self.bias = mx.zeros((out_channels,))
        self._args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    def _extra_repr(self):
        out, *kernel, cin = self.weight.shape
        a = self._args
        n = self._nd
        if n == 1:
            ks, st, pd = kernel[0], a["stride"], a["padding"]
        else:
            ks, st, pd = tuple(kernel), _tuple(a["stride"], n), _tuple(a["padding"], n)
        return (f"{cin * a['groups']}, {out}, kernel_size={ks}, stride={st}, padding={pd}, "
                f"dilation={a['dilation']}, groups={a['groups']}, bias={'bias' in self}")


class Conv1d(_ConvNd):
    """1-D convolution over ``NLC`` inputs.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel length.
        stride: stride.
        padding: zero padding on both sides.
        dilation: kernel dilation.
        groups: channel groups.
        bias: whether to add a bias (initialised to zero).
    """

    _nd = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)

    def __call__(self, x):
        a = self._args
        y = mx.conv1d(x, self.weight, a["stride"], a["padding"], a["dilation"], a["groups"])
        return y + self.bias if "bias" in self else y


class Conv2d(_ConvNd):
    """2-D convolution over ``NHWC`` inputs (arguments as :class:`Conv1d`,
    each an int or a pair)."""

    _nd = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Union[int, tuple],
                 stride: Union[int, tuple] = 1, padding: Union[int, tuple] = 0,
                 dilation: Union[int, tuple] = 1, groups: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)

    def __call__(self, x):
        a = self._args
        y = mx.conv2d(x, self.weight, a["stride"], a["padding"], a["dilation"], a["groups"])
        return y + self.bias if "bias" in self else y


class Conv3d(_ConvNd):
    """3-D convolution over ``NDHWC`` inputs (arguments as :class:`Conv2d`,
    triples; no groups)."""

    _nd = 3

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Union[int, tuple],
                 stride: Union[int, tuple] = 1, padding: Union[int, tuple] = 0,
                 dilation: Union[int, tuple] = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, 1, bias)

    def _extra_repr(self):
        return super()._extra_repr().replace(", groups=1", "")

    def __call__(self, x):
        a = self._args
        y = mx.conv3d(x, self.weight, a["stride"], a["padding"], a["dilation"])
        return y + self.bias if "bias" in self else y


class _ConvTransposeNd(Module):
    """Shared init of the transposed convolutions."""

    _nd = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, output_padding=0, bias=True):
        super().__init__()
        n = self._nd
        kernel_size = _tuple(kernel_size, n)
        scale = math.sqrt(1 / (in_channels * math.prod(kernel_size)))
        self.weight = mx.random.uniform(
            low=-scale, high=scale, shape=(out_channels, *kernel_size, in_channels)
        )
        if bias:
            self.bias = mx.zeros((out_channels,))
        self._args = dict(stride=stride, padding=padding, dilation=dilation,
                          output_padding=output_padding)

    def _extra_repr(self):
        out, *kernel, cin = self.weight.shape
        a = self._args
        n = self._nd
        if n == 1:
            ks, st, pd, op = kernel[0], a["stride"], a["padding"], a["output_padding"]
        else:
            ks = tuple(kernel)
            st, pd, op = (_tuple(a[k], n) for k in ("stride", "padding", "output_padding"))
        return (f"{cin}, {out}, kernel_size={ks}, stride={st}, padding={pd}, "
                f"dilation={a['dilation']}, output_padding={op}, bias={'bias' in self}")

    def __call__(self, x):
        a = self._args
        fn = {1: mx.conv_transpose1d, 2: mx.conv_transpose2d, 3: mx.conv_transpose3d}[self._nd]
        y = fn(x, self.weight, a["stride"], a["padding"], a["dilation"], a["output_padding"])
        return y + self.bias if "bias" in self else y


class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution over ``NLC`` inputs.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel length.
        stride: stride.
        padding: padding removed from both sides of the output.
        dilation: kernel dilation.
        output_padding: extra size added to one side of the output.
        bias: whether to add a bias (initialised to zero).
    """

    _nd = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, output_padding: int = 0, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         output_padding, bias)


class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution over ``NHWC`` inputs (arguments as
    :class:`ConvTranspose1d`, each an int or a pair)."""

    _nd = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Union[int, tuple],
                 stride: Union[int, tuple] = 1, padding: Union[int, tuple] = 0,
                 dilation: Union[int, tuple] = 1, output_padding: Union[int, tuple] = 0,
                 bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         output_padding, bias)


class ConvTranspose3d(_ConvTransposeNd):
    """3-D transposed convolution over ``NDHWC`` inputs (arguments as
    :class:`ConvTranspose2d`, triples)."""

    _nd = 3

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Union[int, tuple],
                 stride: Union[int, tuple] = 1, padding: Union[int, tuple] = 0,
                 dilation: Union[int, tuple] = 1, output_padding: Union[int, tuple] = 0,
                 bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         output_padding, bias)
