"""Embedding lookup tables."""
from __future__ import annotations

import math

import kiln.core as mx
from kiln.nn.layers.base import Module

__all__ = ["Embedding"]


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``dims``, indexed by
    integer arrays; initialised from ``N(0, 1/dims)``.

    Args:
        num_embeddings: number of vectors (vocabulary size).
        dims: size of each vector.
    """

    def __init__(self, num_embeddings: int, dims: int):
        super().__init__()
        scale = math.sqrt(1 / dims)
        self.weight = mx.random.normal(shape=(num_embeddings, dims), scale=scale)

    def _extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, {self.weight.shape[1]}"

    def __call__(self, x):
        return self.weight[x]

    def as_linear(self, x):
        """Use the table as a linear layer ``x @ W^T`` (tied output
        embeddings)."""
        return x @ self.weight.T


def _to_quantized(self, group_size=None, bits=None, mode: str = "affine", quantize_input: bool = False):
    """Return a ``QuantizedEmbedding`` approximating this layer."""
    from kiln.nn.layers.quantized import _embedding_to_quantized

    return _embedding_to_quantized(self, group_size, bits, mode, quantize_input)


Embedding.to_quantized = _to_quantized
