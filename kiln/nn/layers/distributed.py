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

* :class:`QuantizedAllToShardedLinear` and :class:`QuantizedShardedToAllLinear`
  are the same on a quantized weight (``mx.quantized_matmul``); they need
  kiln's quantization (``mx.quantize``, ``nn.QuantizedLinear``).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import kiln.core as mx
from kiln.nn.layers.base import Module
from kiln.nn.layers.linear import Linear
from kiln.utils import tree_flatten, tree_map, tree_map_with_path

__all__ = ["AllToShardedLinear", "ShardedToAllLinear", "QuantizedAllToShardedLinear",
           "QuantizedShardedToAllLinear", "shard_linear", "shard_inplace", "FullyShardedModule",
           "fully_shard", "sum_gradients"]

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


def _quantized_linear_class():
    """``nn.QuantizedLinear`` when kiln has quantization, else None."""
    try:
        from kiln.nn.layers.quantized import QuantizedLinear
    except ImportError:
        return None
    return QuantizedLinear


class _QuantizedSharded(Module):
    """Shared parts of the quantized sharded layers: a frozen quantized weight
    (``weight``, ``scales``, ``biases`` for affine) and a trainable bias."""

    _sharding = ""

    def __init__(self, input_dims, output_dims, bias, group_size, bits, mode, group, w_shape, b_dims):
        super().__init__()
        if not hasattr(mx, "quantize"):
            raise RuntimeError(f"[{type(self).__name__}] needs mx.quantize, which this kiln lacks.")
        self.group = group
        self.group_size, self.bits, self.mode = group_size, bits, mode
        scale = math.sqrt(1.0 / input_dims)
        parts = mx.quantize(mx.random.uniform(low=-scale, high=scale, shape=w_shape), group_size, bits,
                            mode=mode)
        self.weight, self.scales = parts[0], parts[1]
        if mode == "affine":
            self.biases = parts[2]
        if bias:
            self.bias = mx.zeros((b_dims,))
        self.freeze()
        if bias:
            self.unfreeze(recurse=False, keys=["bias"])

    def _matmul(self, x):
        return mx.quantized_matmul(x, self["weight"], scales=self["scales"], biases=self.get("biases"),
                                   transpose=True, group_size=self.group_size, bits=self.bits,
                                   mode=self.mode)

    def _dims(self):
        out, packed = self.weight.shape
        return packed * 32 // self.bits, out

    def _extra_repr(self) -> str:
        inp, out = self._dims()
        n = self.group.size()
        inp, out = (inp, out * n) if self._sharding == "all-to-sharded" else (inp * n, out)
        return (f"input_dims={inp}, output_dims={out}, bias={'bias' in self}, "
                f"group_size={self.group_size}, bits={self.bits}, mode={self.mode}")

    @classmethod
    def from_quantized_linear(cls, quantized_linear_layer: Module, *, segments: Union[int, list] = 1,
                              group=None):
        """Shard an existing ``QuantizedLinear`` (its packed weight, scales and biases)."""
        group = group or mx.distributed.init()
        ql = quantized_linear_layer
        out, packed = ql.weight.shape
        layer = cls(packed * 32 // ql.bits, out, "bias" in ql, ql.group_size, ql.bits, ql.mode, group)
        params = {k: ql[k] for k in ("weight", "scales", "biases", "bias") if k in ql}
        layer.update(_shard_tree(params, _predicate(cls._sharding, segments), group))
        layer.freeze()
        if "bias" in layer:
            layer.unfreeze(recurse=False, keys=["bias"])
        return layer


class QuantizedAllToShardedLinear(_QuantizedSharded):
    """:class:`AllToShardedLinear` with a quantized weight (frozen, as in
    ``QuantizedLinear``): each rank holds ``output_dims // group.size()`` rows.

    Args:
        input_dims: size of the input features.
        output_dims: size of the (whole) output features.
        bias: whether to add a bias.
        group_size: quantization group size.
        bits: bits per weight.
        mode: quantization mode (see ``mx.quantize``).
        group: the group to shard across (default: the global group).
    """

    _sharding = "all-to-sharded"

    def __init__(self, input_dims: int, output_dims: int, bias: bool = True, group_size: int = 64,
                 bits: int = 4, mode: str = "affine", group=None):
        group = group or mx.distributed.init()
        n = group.size()
        if output_dims % n:
            raise ValueError(f"Cannot shard the output of size {output_dims} across {n} devices.")
        super().__init__(input_dims, output_dims, bias, group_size, bits, mode, group,
                         (output_dims // n, input_dims), output_dims // n)

    def __call__(self, x):
        y = self._matmul(sum_gradients(self.group)(x))
        return y + self["bias"] if "bias" in self else y


class QuantizedShardedToAllLinear(_QuantizedSharded):
    """:class:`ShardedToAllLinear` with a quantized weight (frozen): each rank
    holds ``input_dims // group.size()`` input columns; results are summed.

    Args:
        input_dims: size of the (whole) input features.
        output_dims: size of the output features.
        bias: whether to add a bias.
        group_size: quantization group size.
        bits: bits per weight.
        mode: quantization mode (see ``mx.quantize``).
        group: the group to shard across (default: the global group).
    """

    _sharding = "sharded-to-all"

    def __init__(self, input_dims: int, output_dims: int, bias: bool = True, group_size: int = 64,
                 bits: int = 4, mode: str = "affine", group=None):
        group = group or mx.distributed.init()
        n = group.size()
        if input_dims % n:
            raise ValueError(f"The input of size {input_dims} cannot be sharded across {n} devices.")
        super().__init__(input_dims, output_dims, bias, group_size, bits, mode, group,
                         (output_dims, input_dims // n), output_dims)

    def __call__(self, x):
        y = mx.distributed.all_sum(self._matmul(x), group=self.group)
        return y + self["bias"] if "bias" in self else y


def shard_linear(module: Module, sharding: str, *, segments: Union[int, list] = 1, group=None):
    """A new sharded layer made from the linear layer ``module`` (which is left as is).

    Args:
        module: a ``Linear`` or ``QuantizedLinear`` layer.
        sharding: ``"all-to-sharded"`` or ``"sharded-to-all"``.
        segments: how many equal segments (or at which fractions) the weight
            is cut before sharding, for fused weights.
        group: the group to shard across (default: the global group).

    Returns:
        An :class:`AllToShardedLinear` or :class:`ShardedToAllLinear`, or
        their quantized variants for a ``QuantizedLinear``.
    """
    _predicate(sharding, segments)  # validates the name
    to_sharded = sharding == "all-to-sharded"
    quantized = _quantized_linear_class()
    if quantized is not None and isinstance(module, quantized):
        cls = QuantizedAllToShardedLinear if to_sharded else QuantizedShardedToAllLinear
        return cls.from_quantized_linear(module, segments=segments, group=group)
    if not isinstance(module, Linear):
        raise ValueError(f"[shard_linear] Cannot shard a {type(module).__name__}; only Linear "
                         "and QuantizedLinear layers can be sharded.")
    cls = AllToShardedLinear if to_sharded else ShardedToAllLinear
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


