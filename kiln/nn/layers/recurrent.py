"""Recurrent layers (Elman RNN, GRU, LSTM) over ``NLD`` or ``LD`` inputs,
unrolled in Python over the sequence axis."""
from __future__ import annotations

import math
from typing import Callable, Optional

import kiln.core as mx
from kiln.nn.layers.base import Module

__all__ = ["RNN", "GRU", "LSTM"]


def _uniform(scale, shape):
    return mx.random.uniform(low=-scale, high=scale, shape=shape)


def _check_input(name, x, input_size):
    if x.ndim not in (2, 3) or x.shape[-1] != input_size:
        raise ValueError(
            f"[{name}] expected input of shape (N, L, {input_size}) or (L, {input_size}) but got {x.shape}."
        )


class RNN(Module):
    """Elman RNN: ``h_t = f(W_xh x_t + W_hh h_{t-1} + b)``.

    Args:
        input_size: input features.
        hidden_size: hidden state size.
        bias: whether to learn a bias.
        nonlinearity: ``f`` (default: ``tanh``).

    Call with ``(x, hidden=None)``; returns all hidden states (``NLH``).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: Optional[Callable] = None):
        super().__init__()
        self.nonlinearity = nonlinearity or mx.tanh
        if not callable(self.nonlinearity):
            raise ValueError(f"Nonlinearity must be callable. Current value: {nonlinearity}.")
        scale = 1.0 / math.sqrt(hidden_size)
        self.hidden_size = hidden_size
        self.Wxh = _uniform(scale, (hidden_size, input_size))
        self.Whh = _uniform(scale, (hidden_size, hidden_size))
        if bias:
            self.bias = _uniform(scale, (hidden_size,))

    def _extra_repr(self):
        return (f"input_dims={self.Wxh.shape[1]}, hidden_size={self.hidden_size}, "
                f"nonlinearity={self.nonlinearity}, bias={'bias' in self}")

    def __call__(self, x, hidden=None):
        _check_input("RNN", x, self.Wxh.shape[1])
        x = x @ self.Wxh.T
        if "bias" in self:
            x = x + self.bias
        states = []
        for t in range(x.shape[-2]):
            h = x[..., t, :]
            if hidden is not None:
                h = h + hidden @ self.Whh.T
            hidden = self.nonlinearity(h)
            states.append(hidden)
        return mx.stack(states, axis=-2)


class GRU(Module):
    """Gated recurrent unit (reset ``r``, update ``z``, candidate ``n``):
    ``h_t = (1 - z) * n + z * h_{t-1}``.

    Args:
        input_size: input features.
        hidden_size: hidden state size.
        bias: whether to learn biases (``b`` and ``bhn``).

    Call with ``(x, hidden=None)``; returns all hidden states.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.hidden_size = hidden_size
        scale = 1.0 / math.sqrt(hidden_size)
        self.Wx = _uniform(scale, (3 * hidden_size, input_size))
        self.Wh = _uniform(scale, (3 * hidden_size, hidden_size))
        if bias:
            self.b = _uniform(scale, (3 * hidden_size,))
            self.bhn = _uniform(scale, (hidden_size,))

    def _extra_repr(self):
        return f"input_dims={self.Wx.shape[1]}, hidden_size={self.hidden_size}, bias={'b' in self}"

    def __call__(self, x, hidden=None):
        _check_input("GRU", x, self.Wx.shape[1])
        H = self.hidden_size
        x = x @ self.Wx.T
        if "b" in self:
            x = x + self.b
        w_rz, w_n = self.Wh[: 2 * H], self.Wh[2 * H:]
        states = []
        for t in range(x.shape[-2]):
            xt = x[..., t, :]
            rz = xt[..., : 2 * H]
            if hidden is not None:
                rz = rz + hidden @ w_rz.T
            rz = mx.sigmoid(rz)
            r, z = rz[..., :H], rz[..., H:]
            hn = hidden @ w_n.T if hidden is not None else None
            if "bhn" in self:
                hn = hn + self.bhn if hn is not None else self.bhn
            n = xt[..., 2 * H:]
            if hn is not None:
                n = n + r * hn
            n = mx.tanh(n)
            hidden = (1 - z) * n + (z * hidden if hidden is not None else 0)
            states.append(hidden)
        return mx.stack(states, axis=-2)


class LSTM(Module):
    """Long short-term memory with input, forget, cell and output gates (in
    that order in the weights).

    Args:
        input_size: input features.
        hidden_size: hidden and cell state size.
        bias: whether to learn a bias.

    Call with ``(x, hidden=None, cell=None)``; returns ``(hidden_states,
    cell_states)``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.hidden_size = hidden_size
        scale = 1.0 / math.sqrt(hidden_size)
        self.Wx = _uniform(scale, (4 * hidden_size, input_size))
        self.Wh = _uniform(scale, (4 * hidden_size, hidden_size))
        if bias:
            self.bias = _uniform(scale, (4 * hidden_size,))

    def _extra_repr(self):
        return f"input_dims={self.Wx.shape[1]}, hidden_size={self.hidden_size}, bias={'bias' in self}"

    def __call__(self, x, hidden=None, cell=None):
        _check_input("LSTM", x, self.Wx.shape[1])
        H = self.hidden_size
        x = x @ self.Wx.T
        if "bias" in self:
            x = x + self.bias
        hs, cs = [], []
        for t in range(x.shape[-2]):
            g = x[..., t, :]
            if hidden is not None:
                g = g + hidden @ self.Wh.T
            i = mx.sigmoid(g[..., :H])
            f = mx.sigmoid(g[..., H: 2 * H])
            c_new = mx.tanh(g[..., 2 * H: 3 * H])
            o = mx.sigmoid(g[..., 3 * H:])
            cell = f * cell + i * c_new if cell is not None else i * c_new
            hidden = o * mx.tanh(cell)
            hs.append(hidden)
            cs.append(cell)
        return mx.stack(hs, axis=-2), mx.stack(cs, axis=-2)
