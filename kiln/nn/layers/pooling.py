"""Max and average pooling over the spatial axes of channels-last inputs.

A window reduction is computed as a reduction over the ``prod(kernel)``
strided views ``x[..., i::stride, ...]`` (one per kernel offset): only
slicing and elementwise ops, so it differentiates and batches like any
other graph.
"""
from __future__ import annotations

import itertools
import operator
from functools import reduce
from typing import Optional, Tuple, Union

import kiln.core as mx
from kiln.nn.layers.base import Module

__all__ = ["MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d"]


def _tuple(x, n, name):
    if isinstance(x, int):
        return (x,) * n
    x = tuple(x)
    if len(x) != n:
        raise ValueError(f"[{name}] expected {n} values but got {len(x)}: {x}")
    return x


class _Pool(Module):
    _nd = 1
    _kind = "max"

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__
        n = self._nd
        self._kernel_size = _tuple(kernel_size, n, name)
        self._stride = _tuple(stride, n, name) if stride is not None else self._kernel_size
        self._padding = _tuple(padding, n, name)

    def _extra_repr(self) -> str:
        return f"kernel_size={self._kernel_size}, stride={self._stride}, padding={self._padding}"

    def __call__(self, x):
        n = self._nd
        axes = list(range(x.ndim - 1 - n, x.ndim - 1))
        if any(self._padding):
            widths = [(0, 0)] * x.ndim
            for ax, p in zip(axes, self._padding):
                widths[ax] = (p, p)
            fill = -float("inf") if self._kind == "max" else 0
            if self._kind == "max" and not mx.issubdtype(x.dtype, mx.floating):
                fill = mx.iinfo(x.dtype).min
            x = mx.pad(x, widths, constant_values=fill)
        outs = []
        for ax, k, s in zip(axes, self._kernel_size, self._stride):
            outs.append((x.shape[ax] - k) // s + 1)
        views = []
        for offsets in itertools.product(*(range(k) for k in self._kernel_size)):
            index = [slice(None)] * x.ndim
            for ax, off, s, o in zip(axes, offsets, self._stride, outs):
                index[ax] = slice(off, off + s * (o - 1) + 1, s)
            views.append(x[tuple(index)])
        if self._kind == "max":
            return reduce(mx.maximum, views)
        total = reduce(operator.add, views)
        return total / len(views)


class MaxPool1d(_Pool):
    """Max pooling over the length of ``NLC`` inputs.

    Args:
        kernel_size: window size.
        stride: window stride (default: ``kernel_size``).
        padding: ``-inf`` padding on both sides.
    """

    _nd, _kind = 1, "max"

    def __init__(self, kernel_size: Union[int, Tuple[int]], stride: Optional[Union[int, Tuple[int]]] = None,
                 padding: Union[int, Tuple[int]] = 0):
        super().__init__(kernel_size, stride, padding)


class MaxPool2d(_Pool):
    """Max pooling over ``NHWC`` inputs (arguments as :class:`MaxPool1d`)."""

    _nd, _kind = 2, "max"

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)


class MaxPool3d(_Pool):
    """Max pooling over ``NDHWC`` inputs (arguments as :class:`MaxPool1d`)."""

    _nd, _kind = 3, "max"

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)


class AvgPool1d(_Pool):
    """Average pooling over the length of ``NLC`` inputs; zero padding counts
    in the average.

    Args:
        kernel_size: window size.
        stride: window stride (default: ``kernel_size``).
        padding: zero padding on both sides.
    """

    _nd, _kind = 1, "avg"

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)


class AvgPool2d(_Pool):
    """Average pooling over ``NHWC`` inputs (arguments as :class:`AvgPool1d`)."""

    _nd, _kind = 2, "avg"

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)


class AvgPool3d(_Pool):
    """Average pooling over ``NDHWC`` inputs (arguments as :class:`AvgPool1d`)."""

    _nd, _kind = 3, "avg"

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)
