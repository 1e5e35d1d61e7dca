"""Dropout layers (active only in training mode)."""
from __future__ import annotations

import kiln.core as mx
from kiln.nn.layers.base import Module

__all__ = ["Dropout", "Dropout2d", "Dropout3d"]


class Dropout(Module):
    """Zero each element with probability ``p`` and scale the rest by
    ``1 / (1 - p)`` during training.

    Args:
        p: the drop probability, in ``[0, 1)``.
    """

    _name = "Dropout"

    def __init__(self, p: float = 0.5):
        super().__init__()
        if p < 0 or p >= 1:
            raise ValueError(f"The dropout probability {p} is not in [0, 1)")
        self._p_1 = 1 - p

    def _extra_repr(self) -> str:
        return f"p={1 - self._p_1}"

    def _mask_shape(self, x):
        return x.shape

    def __call__(self, x):
        if self._p_1 == 1 or not self.training:
            return x
        mask = mx.random.bernoulli(self._p_1, self._mask_shape(x))
        # mask * x first: a bool mask keeps x's dtype, and the Python scale is weak after it
        return (mask * x) * (1 / self._p_1)


class Dropout2d(Dropout):
    """Drop whole channels of ``NHWC`` / ``HWC`` inputs with probability ``p``."""

    def _mask_shape(self, x):
        if x.ndim not in (3, 4):
            raise ValueError(f"Received input with {x.ndim} dimensions. Expected 3 or 4 dimensions.")
        shape = list(x.shape)
        shape[-2] = shape[-3] = 1
        return shape


class Dropout3d(Dropout):
    """Drop whole channels of ``NDHWC`` / ``DHWC`` inputs with probability ``p``."""

    def _mask_shape(self, x):
        if x.ndim not in (4, 5):
            raise ValueError(f"Received input with {x.ndim} dimensions. Expected 4 or 5 dimensions.")
        shape = list(x.shape)
        shape[-2] = shape[-3] = shape[-4] = 1
        return shape
