"""Affine layers: ``Identity``, ``Linear``, ``Bilinear``."""
from __future__ import annotations

import math
from typing import Any

import kiln.core as mx
from kiln.nn.layers.base import Module

__all__ = ["Identity", "Linear", "Bilinear"]


class Identity(Module):
    """Returns its input unchanged; accepts and ignores any arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def __call__(self, x):
        return x


class Linear(Module):
    """``y = x W^T + b``.

    Weight (``[output_dims, input_dims]``) and bias are initialised from
    ``U(-k, k)`` with ``k = 1 / sqrt(input_dims)``.

    Args:
        input_dims: size of the input features.
        output_dims: size of the output features.
        bias: whether to add a bias.
    """

    def __init__(self, input_dims: int, output_dims: int, bias: bool = True) -> None:
        super().__init__()
        scale = math.sqrt(1.0 / input_dims)
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=(output_dims, input_dims))
        if bias:
            self.bias = mx.random.uniform(low=-scale, high=scale, shape=(output_dims,))

    def _extra_repr(self) -> str:
        return f"input_dims={self.weight.shape[1]}, output_dims={self.weight.shape[0]}, bias={'bias' in self}"

    def __call__(self, x):
        if "bias" in self:
            return x @ self["weight"].T + self["bias"]
        return x @ self["weight"].T


class Bilinear(Module):
    """``y_o = x1^T W_o x2 + b_o``.

    Weight (``[output_dims, input2_dims, input1_dims]``) and bias are
    initialised from ``U(-k, k)`` with ``k = 1 / sqrt(input1_dims)``.

    Args:
        input1_dims: features of the first input.
        input2_dims: features of the second input.
        output_dims: output features.
        bias: whether to add a bias.
    """

    def __init__(self, input1_dims: int, input2_dims: int, output_dims: int, bias: bool = True) -> None:
        super().__init__()
        scale = math.sqrt(1.0 / input1_dims)
        self.weight = mx.random.uniform(
            low=-scale, high=scale, shape=(output_dims, input2_dims, input1_dims)
        )
        if bias:
            self.bias = mx.random.uniform(low=-scale, high=scale, shape=(output_dims,))

    def _extra_repr(self) -> str:
        out, in2, in1 = self.weight.shape
        return f"input1_dims={in1}, input2_dims={in2}, output_dims={out}, bias={'bias' in self}"

    def __call__(self, x1, x2):
        out, in2, in1 = self.weight.shape
        batch = x1.shape[:-1]
        x1 = x1.reshape(-1, in1)
        x2 = x2.reshape(-1, 1, in2)
        # (n, in1) @ (in1, out*in2) -> (n, out, in2), then contract with x2.
        w = self.weight.reshape(out * in2, in1).T
        y = (x1 @ w).reshape(-1, out, in2)
        y = (y * x2).sum(axis=-1)
        if "bias" in self:
            y = y + self.bias
        return y.reshape(*batch, out)


def _to_quantized(self, group_size=None, bits=None, mode: str = "affine", quantize_input: bool = False):
    """Return a quantized approximation of this layer (``QuantizedLinear``, or
    ``QQLinear`` with ``quantize_input``)."""
    from kiln.nn.layers.quantized import _linear_to_quantized

    return _linear_to_quantized(self, group_size, bits, mode, quantize_input)


Linear.to_quantized = _to_quantized
