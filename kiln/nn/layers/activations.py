"""Activation functions, each as a function and as a parameter-free layer
(``PReLU`` is the one with a parameter)."""
from __future__ import annotations

import math

import kiln.core as mx
from kiln.nn.layers.base import Module

__all__ = [
    "sigmoid", "relu", "relu2", "relu6", "leaky_relu", "log_softmax", "elu", "softmax",
    "softplus", "softsign", "softshrink", "celu", "silu", "log_sigmoid", "gelu",
    "gelu_approx", "gelu_fast_approx", "glu", "step", "selu", "prelu", "mish", "hardswish",
    "hard_tanh", "hard_shrink", "softmin", "tanh",
    "Sigmoid", "ReLU", "ReLU2", "ReLU6", "LeakyReLU", "LogSoftmax", "ELU", "Softmax",
    "Softplus", "Softsign", "Softshrink", "CELU", "SiLU", "LogSigmoid", "GELU", "GLU",
    "Step", "SELU", "PReLU", "Mish", "Hardswish", "HardTanh", "HardShrink", "Softmin", "Tanh",
]


def sigmoid(x):
    """Logistic sigmoid ``1 / (1 + exp(-x))``."""
    return mx.sigmoid(x)


def relu(x):
    """Rectified linear unit ``max(x, 0)``."""
    return mx.maximum(x, 0)


def relu2(x):
    """Squared ReLU ``max(x, 0)^2``."""
    return mx.square(mx.maximum(x, 0))


def relu6(x):
    """ReLU clipped at 6: ``min(max(x, 0), 6)``."""
    return mx.minimum(mx.maximum(x, 0), 6.0)


def leaky_relu(x, negative_slope=0.01):
    """``max(negative_slope * x, x)``."""
    return mx.maximum(negative_slope * x, x)


def log_softmax(x, axis=-1):
    """``x - logsumexp(x)`` along ``axis`` (numerically stable)."""
    # Shift by the max first: x - logsumexp(x) loses log(n) when |x| dwarfs it (1e20 - 1e20).
    y = x - mx.stop_gradient(mx.max(x, axis=axis, keepdims=True))
    return y - mx.log(mx.sum(mx.exp(y), axis=axis, keepdims=True))


def elu(x, alpha=1.0):
    """Exponential linear unit: ``x`` if positive, else ``alpha * (exp(x) - 1)``."""
    return mx.where(x > 0, x, alpha * (mx.exp(x) - 1))


def softmax(x, axis=-1):
    """Softmax along ``axis``."""
    return mx.softmax(x, axis=axis)


def softplus(x):
    """``log(1 + exp(x))``, computed as ``logaddexp(x, 0)`` to avoid overflow."""
    return mx.logaddexp(x, 0)


def softsign(x):
    """``x / (1 + |x|)``."""
    return mx.divide(x, 1 + mx.abs(x))


def softshrink(x, lambd: float = 0.5):
    """``x - sign(x) * lambd`` where ``|x| > lambd``, else 0."""
    return mx.where(mx.abs(x) > lambd, x - mx.sign(x) * lambd, 0)


def celu(x, alpha=1.0):
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""
    return mx.maximum(x, 0.0) + alpha * (mx.exp(mx.minimum(x, 0.0) / alpha) - 1)


def silu(x):
    """Sigmoid linear unit (swish) ``x * sigmoid(x)``."""
    return x * mx.sigmoid(x)


def log_sigmoid(x):
    """``log(sigmoid(x)) = -softplus(-x)`` (stable for large ``|x|``)."""
    return -softplus(-x)


def gelu(x):
    """Gaussian error linear unit ``x * Phi(x)`` with the exact erf."""
    return x * (1 + mx.erf(x / math.sqrt(2))) / 2


def gelu_approx(x):
    """GELU with the tanh approximation."""
    return 0.5 * x * (1 + mx.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * (x * x * x))))


def gelu_fast_approx(x):
    """GELU approximated as ``x * sigmoid(1.702 x)``."""
    return x * mx.sigmoid(1.702 * x)


def glu(x, axis: int = -1):
    """Gated linear unit: split ``x`` in two along ``axis``, ``a * sigmoid(b)``."""
    a, b = mx.split(x, indices_or_sections=2, axis=axis)
    return a * mx.sigmoid(b)


def step(x, threshold: float = 0.0):
    """1 where ``x >= threshold`` (the boundary included, as MLX), else 0."""
    return mx.where(x >= threshold, 1, 0)


def selu(x):
    """Scaled ELU with the self-normalising constants."""
    return elu(x, 1.67326) * 1.0507


def prelu(x, alpha):
    """Parametric ReLU ``max(0, x) + alpha * min(0, x)``."""
    return mx.maximum(0, x) + alpha * mx.minimum(0, x)


def mish(x):
    """``x * tanh(softplus(x))``."""
    return x * mx.tanh(softplus(x))


def hardswish(x):
    """``x * min(max(x + 3, 0), 6) / 6``."""
    return x * mx.minimum(mx.maximum(x + 3, 0), 6) / 6


def hard_tanh(x, min_val=-1.0, max_val=1.0):
    """``x`` clipped to ``[min_val, max_val]``."""
    return mx.minimum(mx.maximum(x, min_val), max_val)


def hard_shrink(x, lambd=0.5):
    """``x`` where ``|x| > lambd``, else 0."""
    return mx.where(mx.abs(x) > lambd, x, 0)


def softmin(x, axis=-1):
    """Softmax of ``-x`` along ``axis``."""
    return mx.softmax(-x, axis=axis)


def tanh(x):
    """Hyperbolic tangent."""
    return mx.tanh(x)


def _layer(name, fn, doc):
    """Build a parameter-free layer class calling ``fn``."""

    def __call__(self, x):
        return fn(x)

    return type(name, (Module,), {"__call__": __call__, "__doc__": doc, "__module__": __name__})


Sigmoid = _layer("Sigmoid", sigmoid, "Applies :func:`sigmoid`.")
ReLU = _layer("ReLU", relu, "Applies :func:`relu`.")
ReLU2 = _layer("ReLU2", relu2, "Applies :func:`relu2`.")
ReLU6 = _layer("ReLU6", relu6, "Applies :func:`relu6`.")
Softplus = _layer("Softplus", softplus, "Applies :func:`softplus`.")
Softsign = _layer("Softsign", softsign, "Applies :func:`softsign`.")
SiLU = _layer("SiLU", silu, "Applies :func:`silu`.")
LogSigmoid = _layer("LogSigmoid", log_sigmoid, "Applies :func:`log_sigmoid`.")
SELU = _layer("SELU", selu, "Applies :func:`selu`.")
Mish = _layer("Mish", mish, "Applies :func:`mish`.")
Hardswish = _layer("Hardswish", hardswish, "Applies :func:`hardswish`.")
HardTanh = _layer("HardTanh", hard_tanh, "Applies :func:`hard_tanh`.")
Tanh = _layer("Tanh", tanh, "Applies :func:`tanh`.")
Softmax = _layer("Softmax", softmax, "Applies :func:`softmax` on the last axis.")
LogSoftmax = _layer("LogSoftmax", log_softmax, "Applies :func:`log_softmax` on the last axis.")
Softmin = _layer("Softmin", softmin, "Applies :func:`softmin` on the last axis.")


class LeakyReLU(Module):
    """Applies :func:`leaky_relu` with slope ``negative_slope``."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self._negative_slope = negative_slope

    def __call__(self, x):
        return leaky_relu(x, self._negative_slope)


class ELU(Module):
    """Applies :func:`elu` with parameter ``alpha``."""

    def __init__(self, alpha=1.0):
        super().__init__()
        self._alpha = alpha

    def __call__(self, x):
        return elu(x, self._alpha)


class CELU(Module):
    """Applies :func:`celu` with parameter ``alpha``."""

    def __init__(self, alpha=1.0):
        super().__init__()
        self._alpha = alpha

    def __call__(self, x):
        return celu(x, self._alpha)


class Softshrink(Module):
    """Applies :func:`softshrink` with threshold ``lambd``."""

    def __init__(self, lambd=0.5):
        super().__init__()
        self.lambd = lambd

    def __call__(self, x):
        return softshrink(x, self.lambd)


class HardShrink(Module):
    """Applies :func:`hard_shrink` with threshold ``lambd``."""

    def __init__(self, lambd=0.5):
        super().__init__()
        self.lambd = lambd

    def __call__(self, x):
        return hard_shrink(x, self.lambd)


class Step(Module):
    """Applies :func:`step` with ``threshold``."""

    def __init__(self, threshold: float = 0.0):
        super().__init__()
        self.threshold = threshold

    def __call__(self, x):
        return step(x, self.threshold)


class GLU(Module):
    """Applies :func:`glu` along ``axis``."""

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def __call__(self, x):
        return glu(x, self.axis)


class PReLU(Module):
    """Parametric ReLU with a learned slope (``num_parameters`` of them,
    initialised to ``init``)."""

    def __init__(self, num_parameters=1, init=0.25):
        super().__init__()
        self.weight = mx.full([num_parameters], init)

    def __call__(self, x):
        return prelu(x, self.weight)


class GELU(Module):
    """Applies GELU.

    Args:
        approx: ``'none'`` (exact erf), ``'precise'`` or ``'tanh'`` (tanh
            approximation), ``'fast'`` (sigmoid approximation).
    """

    def __init__(self, approx="none"):
        super().__init__()
        fns = {"none": gelu, "precise": gelu_approx, "tanh": gelu_approx, "fast": gelu_fast_approx}
        if approx not in fns:
            raise ValueError(
                f"The approximation should be in ['none', 'precise', 'tanh', 'fast'] but '{approx}' was given"
            )
        self._act = fns[approx]

    def __call__(self, x):
        return self._act(x)
