"""Quantized layers: ``QuantizedLinear``, ``QuantizedEmbedding``, ``QQLinear`` and ``quantize``.

The layers keep MLX's parameter names (``weight``, ``scales``, ``biases``,
``bias``), so a quantized checkpoint written by MLX loads with
``load_weights``. The quantized parameters start frozen, as in MLX
(``unfreeze`` makes them trainable again).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import kiln.core as mx
from kiln.nn.layers.base import Module
from kiln.utils import tree_map_with_path

__all__ = ["QuantizedLinear", "QuantizedEmbedding", "QQLinear", "quantize"]

_DEFAULTS = {"affine": (64, 4), "mxfp4": (32, 4), "mxfp8": (32, 8), "nvfp4": (16, 4)}


def _defaults(group_size, bits, mode):
    if mode not in _DEFAULTS:
        raise ValueError(f"[quantize] Invalid quantization mode '{mode}'.")
    gs, b = _DEFAULTS[mode]
    return (gs if group_size is None else group_size), (b if bits is None else bits)


def _set_quantized(layer, w):
    parts = mx.quantize(w, layer.group_size, layer.bits, mode=layer.mode)
    layer.weight = parts[0]
    layer.scales = parts[1]
    if layer.mode == "affine":
        layer.biases = parts[2]


class QuantizedLinear(Module):
    """``y = x W^T + b`` with ``W`` quantized (see :func:`kiln.core.quantize`).

    Args:
        input_dims: input features.
        output_dims: output features.
        bias: whether to add a bias (trainable).
        group_size: the quantization group size (default per mode).
        bits: bits per weight (default per mode).
        mode: ``"affine"``, ``"mxfp4"``, ``"mxfp8"`` or ``"nvfp4"``.
    """

    def __init__(self, input_dims: int, output_dims: int, bias: bool = True, group_size: Optional[int] = None,
                 bits: Optional[int] = None, mode: str = "affine") -> None:
        super().__init__()
        self.group_size, self.bits = _defaults(group_size, bits, mode)
        self.mode = mode
        scale = math.sqrt(1 / input_dims)
        _set_quantized(self, mx.random.uniform(low=-scale, high=scale, shape=(output_dims, input_dims)))
        if bias:
            self.bias = mx.zeros((output_dims,))
        self.freeze()
        if bias:
            self.unfreeze(recurse=False, keys=["bias"])

    def _extra_repr(self) -> str:
        out_dims, in_dims = self.weight.shape
        in_dims = in_dims * 32 // self.bits
        return (f"input_dims={in_dims}, output_dims={out_dims}, bias={'bias' in self}, "
                f"group_size={self.group_size}, bits={self.bits}, mode={self.mode}")

    def __call__(self, x):
        y = mx.quantized_matmul(x, self["weight"], scales=self["scales"], biases=self.get("biases"),
                                transpose=True, group_size=self.group_size, bits=self.bits, mode=self.mode)
        if "bias" in self:
            y = y + self["bias"]
        return y

    @classmethod
    def from_linear(cls, linear_layer: Module, group_size: Optional[int] = None, bits: Optional[int] = None,
                    mode: str = "affine") -> "QuantizedLinear":
        """A ``QuantizedLinear`` with the quantized weight (and the bias) of ``linear_layer``."""
        out_dims, in_dims = linear_layer.weight.shape
        ql = cls(in_dims, out_dims, False, group_size, bits, mode)
        _set_quantized(ql, linear_layer.weight)
        if "bias" in linear_layer:
            ql.bias = linear_layer.bias
        ql.freeze()
        if "bias" in ql:
            ql.unfreeze(recurse=False, keys=["bias"])
        return ql


class QuantizedEmbedding(Module):
    """An ``Embedding`` whose table is quantized.

    Args:
        num_embeddings: vocabulary size.
        dims: size of each vector.
        group_size, bits, mode: the quantization (see :func:`kiln.core.quantize`).
    """

    def __init__(self, num_embeddings: int, dims: int, group_size: Optional[int] = None,
                 bits: Optional[int] = None, mode: str = "affine") -> None:
        super().__init__()
        self.group_size, self.bits = _defaults(group_size, bits, mode)
        self.mode = mode
        self.num_embeddings, self.dims = num_embeddings, dims
        _set_quantized(self, mx.random.normal(shape=(num_embeddings, dims), scale=math.sqrt(1 / dims)))
        self.freeze()

    def __call__(self, x):
        # Only the selected rows are dequantized.
        biases = self.get("biases")
        return mx.dequantize(self["weight"][x], scales=self["scales"][x],
                             biases=None if biases is None else biases[x], group_size=self.group_size,
                             bits=self.bits, mode=self.mode)

    def as_linear(self, x):
        """Use the table as a linear layer ``x @ W^T`` (tied output embeddings)."""
        return mx.quantized_matmul(x, self["weight"], scales=self["scales"], biases=self.get("biases"),
                                   transpose=True, group_size=self.group_size, bits=self.bits, mode=self.mode)

    def _extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.dims}, group_size={self.group_size}, bits={self.bits}, "
                f"mode={self.mode}")

    @classmethod
    def from_embedding(cls, embedding_layer: Module, group_size: Optional[int] = None,
                       bits: Optional[int] = None, mode: str = "affine") -> "QuantizedEmbedding":
        """A ``QuantizedEmbedding`` with the quantized table of ``embedding_layer``."""
        n, dims = embedding_layer.weight.shape
        qe = cls(n, dims, group_size, bits, mode)
        _set_quantized(qe, embedding_layer.weight)
        qe.freeze()
        return qe


class QQLinear(Module):
    """A linear layer (no bias) that quantizes its input and its weight.

    In training mode the weight is kept in floating point and quantized on
    the fly (gradients reach it straight through the quantization); in eval
    mode it is stored quantized with its ``scales``.

    Args:
        input_dims: input features.
        output_dims: output features.
        group_size, bits: the quantization (default per mode).
        mode: ``"nvfp4"`` (default) or ``"mxfp8"``.
    """

    def __init__(self, input_dims: int, output_dims: int, group_size: Optional[int] = None,
                 bits: Optional[int] = None, mode: str = "nvfp4") -> None:
        super().__init__()
        if mode not in ("nvfp4", "mxfp8"):
            raise ValueError(f"[QQLinear] Quantization mode '{mode}' is not supported: use 'nvfp4' or "
                             f"'mxfp8'.")
        self.group_size, self.bits = _defaults(group_size, bits, mode)
        self.mode = mode
        scale = math.sqrt(1 / input_dims)
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=(output_dims, input_dims))
        self._quantized = False

    def quantize(self) -> None:
        """Store the weight quantized (eval mode)."""
        if not self._quantized:
            self.weight, self.scales = mx.quantize(self.weight, self.group_size, self.bits, mode=self.mode)
            self._quantized = True
            self.freeze(recurse=False)

    def dequantize(self) -> None:
        """Store the weight in float32 (training mode)."""
        if self._quantized:
            self.weight = mx.dequantize(self.weight, self.scales, None, self.group_size, self.bits,
                                        mode=self.mode, dtype=mx.float32)
            del self["scales"]
            self._quantized = False
            self.unfreeze(recurse=False)

    def _set_training_mode(self, mode: bool):
        super()._set_training_mode(mode)
        if mode:
            self.dequantize()
        else:
            self.quantize()

    def _extra_repr(self) -> str:
        out_dims, in_dims = self.weight.shape
        if self._quantized:
            in_dims = in_dims * 32 // self.bits
        return (f"input_dims={in_dims}, output_dims={out_dims}, group_size={self.group_size}, "
                f"bits={self.bits}, mode={self.mode}")

    def __call__(self, x):
        return mx.qqmm(x, self["weight"], scales=self.get("scales"), group_size=self.group_size,
                       bits=self.bits, mode=self.mode)

    @classmethod
    def from_linear(cls, linear_layer: Module, group_size: Optional[int] = None, bits: Optional[int] = None,
                    mode: str = "nvfp4") -> "QQLinear":
        """A ``QQLinear`` holding the weight of ``linear_layer`` (which must have no bias)."""
        if "bias" in linear_layer:
            raise ValueError("[QQLinear] Linear layers with a bias are not supported.")
        out_dims, in_dims = linear_layer.weight.shape
        layer = cls(in_dims, out_dims, group_size, bits, mode)
        layer.weight = linear_layer.weight
        if not linear_layer.training:
            layer.eval()
        return layer


def _linear_to_quantized(self, group_size: Optional[int] = None, bits: Optional[int] = None,
                         mode: str = "affine", quantize_input: bool = False):
    """Return a quantized approximation of this layer: a ``QuantizedLinear``, or a
    ``QQLinear`` when ``quantize_input`` (nvfp4 and mxfp8 only)."""
    if quantize_input:
        if mode not in ("nvfp4", "mxfp8"):
            raise ValueError(f"[to_quantized] Quantized input is only supported for 'nvfp4' and "
                             f"'mxfp8', got '{mode}'.")
        return QQLinear.from_linear(self, group_size, bits, mode)
    return QuantizedLinear.from_linear(self, group_size, bits, mode)


def _embedding_to_quantized(self, group_size: Optional[int] = None, bits: Optional[int] = None,
                            mode: str = "affine", quantize_input: bool = False):
    """Return a ``QuantizedEmbedding`` approximating this layer."""
    if quantize_input:
        raise ValueError("[to_quantized] Quantized input is not supported for Embedding layers.")
    return QuantizedEmbedding.from_embedding(self, group_size, bits, mode)


def quantize(model: Module, group_size: Optional[int] = None, bits: Optional[int] = None, *,
             mode: str = "affine", quantize_input: bool = False,
             class_predicate: Optional[Callable[[str, Module], Union[bool, dict]]] = None) -> None:
    """Quantize, in place, the leaf modules of ``model`` that ``class_predicate`` selects.

    Args:
        model: the model.
        group_size, bits, mode: the quantization (see :func:`kiln.core.quantize`).
        quantize_input: quantize activations too (``QQLinear``; nvfp4 and mxfp8 only).
        class_predicate: ``(path, module) -> bool or dict``; a dict gives the
            ``to_quantized`` arguments for that module. Default: every module
            with a ``to_quantized`` method.
    """
    if class_predicate is None:
        def class_predicate(path, m):
            return hasattr(m, "to_quantized")

    def maybe_quantize(path, m):
        chosen = class_predicate(path, m)
        if not chosen:
            return m
        if not hasattr(m, "to_quantized"):
            raise ValueError(f"Unable to quantize model of type {type(m)}")
        if isinstance(chosen, dict):
            return m.to_quantized(**chosen)
        return m.to_quantized(group_size=group_size, bits=bits, mode=mode, quantize_input=quantize_input)

    leaves = model.leaf_modules()
    leaves = tree_map_with_path(maybe_quantize, leaves, is_leaf=lambda x: isinstance(x, Module))
    model.update_modules(leaves)
