"""Normalisation layers: LayerNorm, RMSNorm, GroupNorm, BatchNorm,
InstanceNorm (channels-last)."""
from __future__ import annotations

import kiln.core as mx
from kiln.nn.layers.base import Module

__all__ = ["LayerNorm", "RMSNorm", "GroupNorm", "BatchNorm", "InstanceNorm"]


def _check_eps(name: str, eps) -> None:
    # A zero or negative eps leaves rsqrt of zero or of a negative number: NaN rows.
    if not eps > 0:
        raise ValueError(f"[{name}] 'eps' must be positive but got {eps}.")


def _normalize(x, axes, eps):
    # Half-precision statistics overflow (a variance of 512**2 is past float16's max): compute
    # them in float32 and give the result back in the input's dtype.
    low = x.dtype in (mx.float16, mx.bfloat16)
    xs = x.astype(mx.float32) if low else x
    mean = mx.mean(xs, axis=axes, keepdims=True)
    var = mx.var(xs, axis=axes, keepdims=True)
    y = (xs - mean) * mx.rsqrt(var + eps)
    return y.astype(x.dtype) if low else y


class LayerNorm(Module):
    """Normalise the last axis to zero mean and unit variance, then scale and
    shift (weight ones, bias zeros).

    Args:
        dims: size of the last axis.
        eps: added to the variance.
        affine: learn a scale (and bias).
        bias: learn a shift when ``affine``.
    """

    def __init__(self, dims: int, eps: float = 1e-5, affine: bool = True, bias: bool = True):
        super().__init__()
        _check_eps("LayerNorm", eps)
        if affine:
            self.weight = mx.ones((dims,))
            if bias:
                self.bias = mx.zeros((dims,))
        self.eps = eps
        self.dims = dims

    def _extra_repr(self) -> str:
        return f"{self.dims}, eps={self.eps}, affine={'weight' in self}"

    def __call__(self, x):
        y = _normalize(x, -1, self.eps)
        if "weight" in self:
            y = y * self.weight
        if "bias" in self:
            y = y + self.bias
        return y


class RMSNorm(Module):
    """Scale the last axis by its inverse root mean square, then by a learned
    weight (ones).

    Args:
        dims: size of the last axis.
        eps: added to the mean square.
    """

    def __init__(self, dims: int, eps: float = 1e-5):
        super().__init__()
        _check_eps("RMSNorm", eps)
        self.weight = mx.ones((dims,))
        self.eps = eps

    def _extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"

    def __call__(self, x):
        return x * mx.rsqrt(mx.mean(mx.square(x), axis=-1, keepdims=True) + self.eps) * self.weight


class GroupNorm(Module):
    """Normalise groups of channels over the spatial axes and the group.

    Args:
        num_groups: number of groups.
        dims: number of channels (last axis).
        eps: added to the variance.
        affine: learn a per-channel scale and shift.
        pytorch_compatible: groups of consecutive channels (as PyTorch);
            otherwise channel ``c`` is in group ``c % num_groups`` (MLX's
            default).
    """

    def __init__(self, num_groups: int, dims: int, eps: float = 1e-5, affine: bool = True,
                 pytorch_compatible: bool = False):
        super().__init__()
        _check_eps("GroupNorm", eps)
        if not isinstance(num_groups, int) or num_groups <= 0:
            raise ValueError(f"The number of groups ({num_groups}) must be a positive integer.")
        if not isinstance(dims, int) or dims <= 0:
            raise ValueError(f"The number of features ({dims}) must be a positive integer.")
        if dims % num_groups:
            raise ValueError(f"The number of features ({dims}) must be evenly divisible by the "
                             f"number of groups ({num_groups}).")
        if affine:
            self.bias = mx.zeros((dims,))
            self.weight = mx.ones((dims,))
        self.num_groups = num_groups
        self.dims = dims
        self.eps = eps
        self.pytorch_compatible = pytorch_compatible

    def _extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.dims}, eps={self.eps}, affine={'weight' in self}, "
                f"pytorch_compatible={self.pytorch_compatible}")

    def __call__(self, x):
        shape = x.shape
        batch, dims, g = shape[0], shape[-1], self.num_groups
        if self.pytorch_compatible:
            y = x.reshape(batch, -1, g, dims // g)
            y = y.transpose(0, 2, 1, 3).reshape(batch, g, -1)
            y = _normalize(y, -1, self.eps)
            y = y.reshape(batch, g, -1, dims // g).transpose(0, 2, 1, 3).reshape(shape)
        else:
            y = x.reshape(batch, -1, g)
            y = _normalize(y, 1, self.eps).reshape(shape)
        if "weight" in self:
            y = y * self.weight + self.bias
        return y


class BatchNorm(Module):
    """Normalise each feature (last axis) over the batch and spatial axes.

    In training the batch statistics are used and, with
    ``track_running_stats``, folded into ``running_mean``/``running_var``
    (frozen parameters, saved with the weights); in eval mode the running
    statistics are used.

    Args:
        num_features: size of the last axis.
        eps: added to the variance.
        momentum: weight of the new batch in the running statistics.
        affine: learn a scale (ones) and shift (zeros).
        track_running_stats: keep running statistics.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        _check_eps("BatchNorm", eps)
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = mx.ones((num_features,))
            self.bias = mx.zeros((num_features,))
        if track_running_stats:
            self.running_mean = mx.zeros((num_features,))
            self.running_var = mx.ones((num_features,))
            self.freeze(keys=["running_mean", "running_var"], recurse=False)

    def _extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={'weight' in self}, track_running_stats={self.track_running_stats}")

    def unfreeze(self, *args, **kwargs):
        """Unfreeze, keeping the running statistics frozen."""
        super().unfreeze(*args, **kwargs)
        self.freeze(keys=["running_mean", "running_var"], recurse=False, strict=False)
        return self

    def __call__(self, x):
        if x.ndim < 2 or x.ndim > 4:
            raise ValueError(f"Expected input tensor to have 2, 3 or 4 dimensions, but got {x.ndim}")
        axes = tuple(range(x.ndim - 1))
        if self.training and x.size // max(x.shape[-1], 1) <= 1:
            # One value per channel has no variance to normalise by.
            raise ValueError("BatchNorm training requires more than one value per channel.")
        if self.training or not self.track_running_stats:
            mean = mx.mean(x, axis=axes)
            var = mx.var(x, axis=axes)
            if self.training and self.track_running_stats:
                m = self.momentum
                n = x.size // x.shape[-1]
                # The running variance is the unbiased estimate (as in MLX and PyTorch).
                unbiased = var * (n / max(n - 1, 1))
                self.running_mean = (1 - m) * self.running_mean + m * mx.stop_gradient(mean)
                self.running_var = (1 - m) * self.running_var + m * mx.stop_gradient(unbiased)
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean) * mx.rsqrt(var + self.eps)
        if "weight" in self:
            y = y * self.weight + self.bias
        return y


class InstanceNorm(Module):
    """Normalise each channel of each sample over the spatial axes.

    Args:
        dims: number of channels (last axis).
        eps: added to the variance.
        affine: learn a per-channel scale (ones) and shift (zeros).
    """

    def __init__(self, dims: int, eps: float = 1e-5, affine: bool = False):
        super().__init__()
        _check_eps("InstanceNorm", eps)
        if affine:
            self.weight = mx.ones((dims,))
            self.bias = mx.zeros((dims,))
        self.dims = dims
        self.eps = eps

    def _extra_repr(self) -> str:
        return f"{self.dims}, eps={self.eps}, affine={'weight' in self}"

    def __call__(self, x):
        if x.ndim < 3:
            raise ValueError("InstanceNorm expects inputs with at least 3 dimensions (N, ..., C) but "
                             f"the input has {x.ndim} dimensions.")
        axes = tuple(range(1, x.ndim - 1))
        y = _normalize(x, axes, self.eps)
        if "weight" in self:
            y = y * self.weight + self.bias
        return y
