"""Parameter initialisers (the ``mlx.nn.init`` API).

Each function returns an initialiser: a callable taking an array and
returning a new array of the same shape drawn from the named distribution.
"""
from __future__ import annotations

import math
from typing import Callable, Literal

import kiln.core as mx

__all__ = [
    "constant", "normal", "uniform", "identity", "glorot_normal", "glorot_uniform",
    "he_normal", "he_uniform", "orthogonal", "sparse",
]


def constant(value: float, dtype=mx.float32) -> Callable:
    """Initialiser filling with ``value``."""

    def initializer(a):
        return mx.full(a.shape, value, dtype=dtype)

    return initializer


def normal(mean: float = 0.0, std: float = 1.0, dtype=mx.float32) -> Callable:
    """Initialiser drawing from ``N(mean, std^2)``."""

    def initializer(a):
        return mx.random.normal(shape=a.shape, scale=std, loc=mean, dtype=dtype)

    return initializer


def uniform(low: float = 0.0, high: float = 1.0, dtype=mx.float32) -> Callable:
    """Initialiser drawing from ``U(low, high)``."""

    def initializer(a):
        return mx.random.uniform(low, high, a.shape, dtype=dtype)

    return initializer


def identity(dtype=mx.float32) -> Callable:
    """Initialiser returning the identity matrix (square 2-D arrays only)."""

    def initializer(a):
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"The input array must be a square matrix but got shape {a.shape}.")
        return mx.eye(n=a.shape[0], dtype=dtype)

    return initializer


def _fans(x):
    """Fan in and out of a weight of shape ``[out, *receptive, in]``."""
    if x.ndim < 2:
        raise ValueError(
            "Glorot / He initialization requires at least 2 dimensional input"
            f" but input with {x.ndim} dimensions."
        )
    fan_in, fan_out = x.shape[-1], x.shape[0]
    receptive = math.prod(x.shape[1:-1]) if x.ndim > 2 else 1
    return fan_in * receptive, fan_out * receptive


def glorot_normal(dtype=mx.float32) -> Callable:
    """Glorot (Xavier) normal: ``std = gain * sqrt(2 / (fan_in + fan_out))``."""

    def initializer(a, gain: float = 1.0):
        fan_in, fan_out = _fans(a)
        std = gain * math.sqrt(2.0 / (fan_in + fan_out))
        return mx.random.normal(shape=a.shape, dtype=dtype) * std

    return initializer


def glorot_uniform(dtype=mx.float32) -> Callable:
    """Glorot (Xavier) uniform: ``U(-l, l)``, ``l = gain * sqrt(6 / (fan_in + fan_out))``."""

    def initializer(a, gain: float = 1.0):
        fan_in, fan_out = _fans(a)
        limit = gain * math.sqrt(6.0 / (fan_in + fan_out))
        return mx.random.uniform(-limit, limit, a.shape, dtype=dtype)

    return initializer


def _fan(a, mode):
    fan_in, fan_out = _fans(a)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise ValueError(f"Invalid mode: {mode}. Valid modes are: fan_in, fan_out")


def he_normal(dtype=mx.float32) -> Callable:
    """He (Kaiming) normal: ``std = gain / sqrt(fan)``."""

    def initializer(a, mode: Literal["fan_in", "fan_out"] = "fan_in", gain: float = 1.0):
        std = gain / math.sqrt(_fan(a, mode))
        return mx.random.normal(shape=a.shape, dtype=dtype) * std

    return initializer


def he_uniform(dtype=mx.float32) -> Callable:
    """He (Kaiming) uniform: ``U(-l, l)``, ``l = gain * sqrt(3 / fan)``."""

    def initializer(a, mode: Literal["fan_in", "fan_out"] = "fan_in", gain: float = 1.0):
        limit = gain * math.sqrt(3.0 / _fan(a, mode))
        return mx.random.uniform(-limit, limit, a.shape, dtype=dtype)

    return initializer


def orthogonal(gain: float = 1.0, dtype=mx.float32) -> Callable:
    """Orthogonal initialiser (2-D): rows or columns orthonormal, times ``gain``."""

    def initializer(a):
        if a.ndim != 2:
            raise ValueError(
                f"Orthogonal initialization requires a 2D array but got a {a.ndim}D array."
            )
        rows, cols = a.shape
        n = max(rows, cols)
        q, r = mx.linalg.qr(mx.random.normal(shape=(n, min(rows, cols))), stream=mx.cpu)
        # Fix the signs so the distribution is uniform over orthogonal matrices.
        q = q * mx.sign(mx.diag(r))
        q = q if rows >= cols else q.T
        return (gain * q[:rows, :cols]).astype(dtype)

    return initializer


def sparse(sparsity: float, mean: float = 0.0, std: float = 1.0, dtype=mx.float32) -> Callable:
    """Sparse normal initialiser: in each row a ``sparsity`` fraction of the
    entries (rounded up) are zero, the rest drawn from ``N(mean, std^2)``."""

    def initializer(a):
        if a.ndim != 2:
            raise ValueError("Only tensors with 2 dimensions are supported")
        rows, cols = a.shape
        num_zeros = int(math.ceil(sparsity * cols))
        values = mx.random.normal(shape=a.shape, scale=std, loc=mean, dtype=dtype)
        # A random rank per entry of each row; the lowest ranks become zeros.
        ranks = mx.argsort(mx.argsort(mx.random.uniform(shape=a.shape), axis=1), axis=1)
        return mx.where(ranks < num_zeros, mx.zeros_like(values), values)

    return initializer
