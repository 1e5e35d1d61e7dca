"""Tensor-parallel and fully sharded layers (``mlx.nn``'s distributed layers).

* :class:`AllToShardedLinear`: every rank holds a slice of the output
  features; its input is whole, its output sharded. The input's gradient is
  summed over the group in the backward pass.
* :class:`ShardedToAllLinear`: every rank holds a slice of the input
  features; partial products are summed over the group (``all_sum``).
* :func:`shard_linear` / :func:`shard_inplace` turn existing layers (or any
  module's parameters) into shards; ``segments`` keeps fused weights (say a
  QKV projection) sharded segment by segment.
* :class:`FullyShardedModule` (:func:`fully_shard`): each rank stores a slice
  of every parameter along axis 0; the forward pass all-gathers them, so the
  backward pass reduce-scatters the gradients (``all_gather``'s VJP).

The quantized variants need ``mx.quantize``/``mx.quantized_matmul`` and are
not here yet.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import kiln.core as mx
from kiln.nn.layers.base import Module
from kiln.nn.layers.linear import Linear
from kiln.utils import tree_flatten, tree_map, tree_map_with_path

__all__ = ["AllToShardedLinear", "ShardedToAllLinear", "shard_linear", "shard_inplace",
           "FullyShardedModule", "fully_shard", "sum_gradients"]

_SHARDINGS = ("all-to-sharded", "sharded-to-all")


def sum_gradients(group=None) -> Callable:
    """A function that is the identity forward and sums its cotangent over
    ``group`` backward (the input side of an all-to-sharded layer).

    Args:
        group: the group (default: the global group).

    Returns:
        ``f(x) -> x``.
    """
    group = group or mx.distributed.init()
    if group.size() == 1:
        return lambda x: x

    @mx.custom_function
    def f(x):
        return x

    @f.vjp
    def f_vjp(primals, cotangent, output):
        return mx.distributed.all_sum(cotangent, group=group)

    return f


def _split(w, segments, axis: int) -> list:
    """``w`` cut along ``axis`` into ``segments`` equal parts, or at the
    fractions of its length that the list ``segments`` gives."""
    if isinstance(segments, int):
        return mx.split(w, segments, axis=axis)
    n = w.shape[axis]
    return mx.split(w, [int(f * n) for f in segments], axis=axis)


def _shard_array(w, axis: int, segments, group):
    """This rank's part of each segment of ``w`` along ``axis``, concatenated."""
    n, r = group.size(), group.rank()
    parts = []
    for seg in _split(w, segments, axis):
        if seg.shape[axis] % n:
            raise ValueError(
                f"[shard] Cannot shard a segment of size {seg.shape[axis]} (axis {axis} of a "
                f"weight of shape {w.shape}) across a group of size {n}.")
        parts.append(mx.split(seg, n, axis=axis)[r])
    return parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=axis)


def _predicate(sharding, segments) -> Callable:
    """The ``(path, weight) -> (axis, segments) | None`` rule of a sharding name."""
    if callable(sharding):
        return sharding
    if sharding == "all-to-sharded":
        return lambda path, w: (0, segments) if path.endswith("weight") or w.ndim > 1 else (-1, segments)
    if sharding == "sharded-to-all":
        return lambda path, w: (-1, segments) if w.ndim > 1 else None
    raise ValueError(f"Sharding type sharding={sharding!r} not supported, choose one of "
                     "'all-to-sharded' or 'sharded-to-all'")


def _shard_tree(parameters: dict, predicate: Callable, group) -> dict:
    def one(path, w):
        if not isinstance(w, mx.array):
            return w
        rule = predicate(path, w)
        if rule is None:
            return w
        axis, segs = (rule, 1) if isinstance(rule, int) else rule
        return _shard_array(w, axis, segs, group)

    return tree_map_with_path(one, parameters)


class AllToShardedLinear(Module):
    """A linear layer whose output features are split across the group.

    Each member holds ``output_dims // group.size()`` rows of the weight (and
    of the bias); the input is the same on every rank and its gradient is
    summed over the group.

    Args:
        input_dims: size of the input features.
        output_dims: size of the (whole) output features.
        bias: whether to add a bias.
        group: the group to shard across (default: the global group).
    """

    def __init__(self, input_dims: int, output_dims: int, bias: bool = True, group=None):
        super().__init__()
        scale = math.sqrt(1.0 / input_dims)
        self.group = group or mx.distributed.init()
        n = self.group.size()
        if output_dims % n:
            raise ValueError(f"Cannot shard the output of size {output_dims} across {n} devices.")
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=(output_dims // n, input_dims))
        if bias:
            self.bias = mx.random.uniform(low=-scale, high=scale, shape=(output_dims // n,))

    def _extra_repr(self) -> str:
        out, inp = self.weight.shape
        return f"input_dims={inp}, output_dims={out * self.group.size()}, bias={'bias' in self}"

    def __call__(self, x):
        x = sum_gradients(self.group)(x)
        if "bias" in self:
            return mx.addmm(self["bias"], x, self["weight"].T)
        return x @ self["weight"].T

    @classmethod
    def from_linear(cls, linear_layer: Module, *, segments: Union[int, list] = 1, group=None):
        """Shard an existing ``Linear`` (rows of its weight, and its bias)."""
        group = group or mx.distributed.init()
        out, inp = linear_layer.weight.shape
        layer = cls(inp, out, "bias" in linear_layer, group)
        layer.update(_shard_tree(linear_layer.parameters(), _predicate("all-to-sharded", segments), group))
        return layer


class ShardedToAllLinear(Module):
    """A linear layer whose input features are split across the group.

    Each member holds ``input_dims // group.size()`` columns of the weight
    and multiplies its slice of the input; the partial results are summed
    over the group, so every rank ends with the same whole output.

    Args:
        input_dims: size of the (whole) input features.
        output_dims: size of the output features.
        bias: whether to add a bias.
        group: the group to shard across (default: the global group).
    """

    def __init__(self, input_dims: int, output_dims: int, bias: bool = True, group=None):
        super().__init__()
        scale = math.sqrt(1.0 / input_dims)
        self.group = group or mx.distributed.init()
        n = self.group.size()
        if input_dims % n:
            raise ValueError(f"The input of size {input_dims} cannot be sharded across {n} devices.")
        self.weight = mx.random.uniform(low=-scale, high=scale, shape=(output_dims, input_dims // n))
        if bias:
            self.bias = mx.random.uniform(low=-scale, high=scale, shape=(output_dims,))

    def _extra_repr(self) -> str:
        out, inp = self.weight.shape
        return f"input_dims={inp * self.group.size()}, output_dims={out}, bias={'bias' in self}"

    def __call__(self, x):
        x = mx.distributed.all_sum(x @ self["weight"].T, group=self.group)
        if "bias" in self:
            x = x + self["bias"]
        return x

    @classmethod
    def from_linear(cls, linear_layer: Module, *, segments: Union[int, list] = 1, group=None):
        """Shard an existing ``Linear`` (columns of its weight; the bias stays whole)."""
        group = group or mx.distributed.init()
        out, inp = linear_layer.weight.shape
        layer = cls(inp, out, "bias" in linear_layer, group)
        layer.update(_shard_tree(linear_layer.parameters(), _predicate("sharded-to-all", segments), group))
        return layer


def shard_linear(module: Module, sharding: str, *, segments: Union[int, list] = 1, group=None):
    """A new sharded layer made from the linear layer ``module`` (which is left as is).

    Args:
        module: a ``Linear`` layer.
        sharding: ``"all-to-sharded"`` or ``"sharded-to-all"``.
        segments: how many equal segments (or at which fractions) the weight
            is cut before sharding, for fused weights.
        group: the group to shard across (default: the global group).

    Returns:
        An :class:`AllToShardedLinear` or :class:`ShardedToAllLinear`.
    """
    _predicate(sharding, segments)  # validates the name
    if not isinstance(module, Linear):
        raise ValueError(f"[shard_linear] Cannot shard a {type(module).__name__}; only Linear "
                         "layers can be sharded (quantized layers are not supported yet).")
    cls = AllToShardedLinear if sharding == "all-to-sharded" else ShardedToAllLinear
    return cls.from_linear(module, segments=segments, group=group)


def shard_inplace(module: Module, sharding: Union[str, Callable], *, segments: Union[int, list] = 1,
                  group=None) -> None:
    """Replace ``module``'s parameters by this rank's shards, in place.

    The module's own code is unchanged, so it must do the communication
    itself for the result to be right.

    Args:
        module: any module.
        sharding: ``"all-to-sharded"``, ``"sharded-to-all"`` or a callable
            ``(path, weight) -> axis | (axis, segments) | None``.
        segments: segments for a named ``sharding``.
        group: the group to shard across (default: the global group).
    """
    group = group or mx.distributed.init()
    module.update(_shard_tree(module.parameters(), _predicate(sharding, segments), group))


class FullyShardedModule(Module):
    """Wrap a module so each member of the group stores a shard of its parameters.

    Every parameter is cut along axis 0 (its length there must be divisible
    by the group size). The forward pass all-gathers the full parameters
    (cast to ``compute_dtype`` if given) and calls the module; the gradients
    of the shards are therefore summed over the group and scattered, so each
    rank updates only its own shard.

    Args:
        module: the module to wrap.
        group: the group to shard across (default: the global group).
        compute_dtype: dtype of the gathered parameters in the forward pass.
    """

    def __init__(self, module: Module, group=None, compute_dtype=None):
        super().__init__()
        self._group = group or mx.distributed.init()
        self._compute_dtype = compute_dtype
        n, r = self._group.size(), self._group.rank()

        def shard(path, w):
            if w.ndim == 0 or w.shape[0] % n:
                raise ValueError(
                    f"[fully_shard] The parameter {path} of shape {w.shape} cannot be sharded "
                    f"along axis 0 across a group of size {n}.")
            return mx.split(w, n, axis=0)[r]

        module.update(tree_map_with_path(shard, module.parameters()))
        self.module = module
        self._count = len(tree_flatten(module.parameters()))

    def _extra_repr(self) -> str:
        return f"num_sharded_params={self._count}"

    def _gathered(self) -> dict:
        group, dt = self._group, self._compute_dtype

        def gather(w):
            full = mx.distributed.all_gather(w, group=group)
            return full.astype(dt) if dt is not None else full

        return tree_map(gather, self.module.parameters())

    def __call__(self, *args, **kwargs):
        shards = self.module.parameters()
        self.module.update(self._gathered())
        try:
            return self.module(*args, **kwargs)
        finally:
            self.module.update(shards)


def fully_shard(module: Module, *, group=None, compute_dtype=None) -> Module:
    """Wrap ``module`` in a :class:`FullyShardedModule` (unchanged for one process).

    Args:
        module: the module to wrap.
        group: the group to shard across (default: the global group).
        compute_dtype: dtype of the gathered parameters in the forward pass.

    Returns:
        The wrapped module, or ``module`` itself when the group has one process.
    """
    group = group or mx.distributed.init()
    if group.size() == 1:
        return module
    return FullyShardedModule(module, group=group, compute_dtype=compute_dtype)


