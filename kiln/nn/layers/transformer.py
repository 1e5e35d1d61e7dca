"""Multi-head attention and the transformer encoder/decoder stacks."""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import kiln.core as mx
from kiln.nn.layers.activations import relu
from kiln.nn.layers.base import Module
from kiln.nn.layers.dropout import Dropout
from kiln.nn.layers.linear import Linear
from kiln.nn.layers.normalization import LayerNorm
from kiln.nn.utils import checkpoint as _checkpoint

__all__ = [
    "MultiHeadAttention", "TransformerEncoderLayer", "TransformerEncoder",
    "TransformerDecoderLayer", "TransformerDecoder", "Transformer",
]


def _attention(q, k, v, scale, mask):
    """softmax(q k^T * scale + mask) v over the last two axes; a boolean mask
    marks the positions that may be attended to."""
    scores = (q * scale) @ k.swapaxes(-1, -2)
    if mask is not None:
        if mask.dtype == mx.bool_:
            scores = mx.where(mask, scores, mx.array(mx.finfo(scores.dtype).min, scores.dtype))
        else:
            scores = scores + mask
    return mx.softmax(scores, axis=-1, precise=True) @ v


class MultiHeadAttention(Module):
    """Multi-head scaled dot-product attention with input and output
    projections.

    Args:
        dims: model dimension (query/key projection size).
        num_heads: number of heads (must divide ``dims``).
        query_input_dims: query input size (default ``dims``).
        key_input_dims: key input size (default ``dims``).
        value_input_dims: value input size (default ``key_input_dims``).
        value_dims: value projection size (default ``dims``).
        value_output_dims: output size (default ``dims``).
        bias: whether the projections have biases.
    """

    def __init__(self, dims: int, num_heads: int, query_input_dims: Optional[int] = None,
                 key_input_dims: Optional[int] = None, value_input_dims: Optional[int] = None,
                 value_dims: Optional[int] = None, value_output_dims: Optional[int] = None,
                 bias: bool = False):
        super().__init__()
        if dims % num_heads != 0:
            raise ValueError(
                "The input feature dimensions should be divisible by the "
                f"number of heads ({dims} % {num_heads}) != 0"
            )
        query_input_dims = query_input_dims or dims
        key_input_dims = key_input_dims or dims
        value_input_dims = value_input_dims or key_input_dims
        value_dims = value_dims or dims
        value_output_dims = value_output_dims or dims
        self.num_heads = num_heads
        self.query_proj = Linear(query_input_dims, dims, bias=bias)
        self.key_proj = Linear(key_input_dims, dims, bias=bias)
        self.value_proj = Linear(value_input_dims, value_dims, bias=bias)
        self.out_proj = Linear(value_dims, value_output_dims, bias=bias)

    def __call__(self, queries, keys, values, mask=None):
        queries = self.query_proj(queries)
        keys = self.key_proj(keys)
        values = self.value_proj(values)
        h = self.num_heads

        def heads(x):
            *batch, length, d = x.shape
            return x.reshape(*batch, length, h, d // h).swapaxes(-2, -3)

        q, k, v = heads(queries), heads(keys), heads(values)
        scale = math.sqrt(1 / q.shape[-1])
        out = _attention(q, k, v, scale, mask)
        out = out.swapaxes(-2, -3)
        out = out.reshape(*out.shape[:-2], -1)
        return self.out_proj(out)

    @staticmethod
    def create_additive_causal_mask(N: int, dtype=mx.float32):
        """An ``[N, N]`` additive mask: 0 on and below the diagonal, the most
        negative finite value above it."""
        idx = mx.arange(N)
        mask = (idx[:, None] < idx[None]).astype(dtype)
        return mask * mx.finfo(dtype).min


class TransformerEncoderLayer(Module):
    """Self-attention and an MLP, each with a residual connection and
    LayerNorm (before the block when ``norm_first``, else after).

    Args:
        dims: model dimension.
        num_heads: attention heads.
        mlp_dims: hidden size of the MLP (default ``4 * dims``).
        dropout: dropout probability after attention and in the MLP.
        activation: the MLP's activation (default ``relu``).
        norm_first: pre-norm (True) or post-norm.
    """

    def __init__(self, dims: int, num_heads: int, mlp_dims: Optional[int] = None,
                 dropout: float = 0.0, activation: Callable[[Any], Any] = relu,
                 norm_first: bool = True):
        super().__init__()
        mlp_dims = mlp_dims or dims * 4
        self.attention = MultiHeadAttention(dims, num_heads)
        self.ln1 = LayerNorm(dims)
        self.ln2 = LayerNorm(dims)
        self.linear1 = Linear(dims, mlp_dims)
        self.linear2 = Linear(mlp_dims, dims)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = activation
        self.norm_first = norm_first

    def _mlp(self, x):
        return self.linear2(self.dropout2(self.activation(self.linear1(x))))

    def __call__(self, x, mask):
        if self.norm_first:
            y = self.ln1(x)
            x = x + self.dropout1(self.attention(y, y, y, mask))
            return x + self._mlp(self.ln2(x))
        x = self.ln1(x + self.dropout1(self.attention(x, x, x, mask)))
        return self.ln2(x + self._mlp(x))


class TransformerEncoder(Module):
    """A stack of :class:`TransformerEncoderLayer` and a final LayerNorm.

    Args:
        num_layers: number of layers.
        checkpoint: recompute each layer's activations in the backward pass.
        Others as :class:`TransformerEncoderLayer`.
    """

    def __init__(self, num_layers: int, dims: int, num_heads: int, mlp_dims: Optional[int] = None,
                 dropout: float = 0.0, activation=relu, norm_first: bool = True,
                 checkpoint: bool = False):
        super().__init__()
        self.layers = [
            TransformerEncoderLayer(dims, num_heads, mlp_dims, dropout, activation, norm_first)
            for _ in range(num_layers)
        ]
        self.ln = LayerNorm(dims)
        self.checkpoint = checkpoint

    def __call__(self, x, mask):
        for layer in self.layers:
            x = _checkpoint(layer)(x, mask) if self.checkpoint else layer(x, mask)
        return self.ln(x)


class TransformerDecoderLayer(Module):
    """Self-attention, cross-attention over ``memory`` and an MLP, each with a
    residual connection and LayerNorm.

    Args as :class:`TransformerEncoderLayer`.
    """

    def __init__(self, dims: int, num_heads: int, mlp_dims: Optional[int] = None,
                 dropout: float = 0.0, activation: Callable[[Any], Any] = relu,
                 norm_first: bool = True):
        super().__init__()
        mlp_dims = mlp_dims or dims * 4
        self.self_attention = MultiHeadAttention(dims, num_heads)
        self.cross_attention = MultiHeadAttention(dims, num_heads)
        self.ln1 = LayerNorm(dims)
        self.ln2 = LayerNorm(dims)
        self.ln3 = LayerNorm(dims)
        self.linear1 = Linear(dims, mlp_dims)
        self.linear2 = Linear(mlp_dims, dims)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = activation
        self.norm_first = norm_first

    def _mlp(self, x):
        return self.linear2(self.dropout3(self.activation(self.linear1(x))))

    def __call__(self, x, memory, x_mask, memory_mask):
        if self.norm_first:
            y = self.ln1(x)
            x = x + self.dropout1(self.self_attention(y, y, y, x_mask))
            y = self.ln2(x)
            x = x + self.dropout2(self.cross_attention(y, memory, memory, memory_mask))
            return x + self._mlp(self.ln3(x))
        x = self.ln1(x + self.dropout1(self.self_attention(x, x, x, x_mask)))
        x = self.ln2(x + self.dropout2(self.cross_attention(x, memory, memory, memory_mask)))
        return self.ln3(x + self._mlp(x))


class TransformerDecoder(Module):
    """A stack of :class:`TransformerDecoderLayer` and a final LayerNorm.

    Args as :class:`TransformerEncoder`.
    """

    def __init__(self, num_layers: int, dims: int, num_heads: int, mlp_dims: Optional[int] = None,
                 dropout: float = 0.0, activation=relu, norm_first: bool = True,
                 checkpoint: bool = False):
        super().__init__()
        self.layers = [
            TransformerDecoderLayer(dims, num_heads, mlp_dims, dropout, activation, norm_first)
            for _ in range(num_layers)
        ]
        self.ln = LayerNorm(dims)
        self.checkpoint = checkpoint

    def __call__(self, x, memory, x_mask, memory_mask):
        for layer in self.layers:
            if self.checkpoint:
                x = _checkpoint(layer)(x, memory, x_mask, memory_mask)
            else:
                x = layer(x, memory, x_mask, memory_mask)
        return self.ln(x)


class Transformer(Module):
    """Encoder-decoder transformer.

    Args:
        dims: model dimension.
        num_heads: attention heads.
        num_encoder_layers: encoder depth.
        num_decoder_layers: decoder depth.
        mlp_dims: MLP hidden size (default ``4 * dims``).
        dropout: dropout probability.
        activation: MLP activation.
        custom_encoder: replaces the encoder.
        custom_decoder: replaces the decoder.
        norm_first: pre-norm (True) or post-norm.
        checkpoint: recompute activations in the backward pass.

    Call with ``(src, tgt, src_mask, tgt_mask, memory_mask)``.
    """

    def __init__(self, dims: int = 512, num_heads: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, mlp_dims: Optional[int] = None, dropout: float = 0.0,
                 activation: Callable[[Any], Any] = relu, custom_encoder: Optional[Any] = None,
                 custom_decoder: Optional[Any] = None, norm_first: bool = True,
                 checkpoint: bool = False):
        super().__init__()
        # `is None`, not `or`: a Module is a dict, and one without parameters is falsy.
        self.encoder = custom_encoder if custom_encoder is not None else TransformerEncoder(
            num_encoder_layers, dims, num_heads, mlp_dims, dropout, activation, norm_first, checkpoint
        )
        self.decoder = custom_decoder if custom_decoder is not None else TransformerDecoder(
            num_decoder_layers, dims, num_heads, mlp_dims, dropout, activation, norm_first, checkpoint
        )

    def __call__(self, src, tgt, src_mask, tgt_mask, memory_mask):
        memory = self.encoder(src, src_mask)
        return self.decoder(tgt, memory, tgt_mask, memory_mask)
