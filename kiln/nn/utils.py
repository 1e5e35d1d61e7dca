"""Helpers joining modules and transforms: ``value_and_grad`` over a model's
trainable parameters, ``checkpoint`` and ``average_gradients``."""
from __future__ import annotations

from functools import wraps
from typing import TYPE_CHECKING, Callable

import kiln.core as mx
from kiln.utils import tree_flatten, tree_map, tree_unflatten

if TYPE_CHECKING:  # annotations only: kiln.nn.layers imports this module
    from kiln.nn.layers.base import Module

__all__ = ["value_and_grad", "checkpoint", "average_gradients"]


def value_and_grad(model: Module, fn: Callable):
    """Transform ``fn`` to return its value and the gradient with respect to
    ``model.trainable_parameters()``.

    Args:
        model: the model whose trainable parameters are differentiated.
        fn: a scalar function, usually calling ``model``.

    Returns:
        ``g(*args, **kwargs) -> (value, grads)``, ``grads`` shaped like
        ``model.trainable_parameters()``.
    """
    if not callable(fn):
        raise TypeError(f"[value_and_grad] The function to transform must be callable, got {type(fn).__name__}.")

    def inner(params, *args, **kwargs):
        model.update(params)
        return fn(*args, **kwargs)

    value_grad_fn = mx.value_and_grad(inner)

    @wraps(fn)
    def wrapped(*args, **kwargs):
        return value_grad_fn(model.trainable_parameters(), *args, **kwargs)

    return wrapped


def checkpoint(module: Module, fn: Callable = None):
    """Wrap ``module`` (or ``fn`` using it) so that its activations are
    recomputed in the backward pass instead of stored.

    Args:
        module: the module whose parameters the function uses.
        fn: the function to checkpoint (default: ``module.__call__``).

    Returns:
        A function with the signature of ``fn``.
    """
    if fn is None:
        fn = module.__call__

    def inner(params, *args, **kwargs):
        module.update(params)
        return fn(*args, **kwargs)

    checkpointed = mx.checkpoint(inner)

    @wraps(fn)
    def wrapped(*args, **kwargs):
        return checkpointed(module.trainable_parameters(), *args, **kwargs)

    return wrapped


def average_gradients(gradients, group=None, all_reduce_size: int = 32 * 1024**2,
                      communication_stream=None, *, communication_type=None):
    """Average ``gradients`` over the processes of a distributed group.

    Small arrays are packed together so that each all-reduce moves about
    ``all_reduce_size`` bytes: consecutive arrays of one dtype (in the tree's
    flattening order) join a bucket until it holds at least that many bytes;
    a bucket of one array is reduced as it is, a larger one is flattened,
    concatenated, reduced once and split back. With one process the
    gradients are returned unchanged.

    Args:
        gradients: a tree of arrays (the same structure on every process).
        group: the distributed group (default: the global group).
        all_reduce_size: bytes per bucket; ``<= 0`` reduces each array alone.
        communication_stream: the stream the reductions run on.
        communication_type: dtype to communicate in (a kiln extension;
            results are cast back).

    Returns:
        The averaged gradients, in the same tree structure.
    """
    group = group or mx.distributed.init()
    n = group.size()
    if n == 1:
        return gradients

    def average(x):
        y = x.astype(communication_type) if communication_type is not None else x
        return (mx.distributed.all_sum(y, group=group, stream=communication_stream) / n).astype(x.dtype)

    if all_reduce_size <= 0:
        return tree_map(average, gradients)
    flat = tree_flatten(gradients)
    if not flat:
        return gradients
    buckets, current, size = [], [], 0
    for key, value in flat:
        if current and (size >= all_reduce_size or value.dtype != current[0][1].dtype):
            buckets.append(current)
            current, size = [], 0
        current.append((key, value))
        size += value.nbytes
    buckets.append(current)
    out = []
    for bucket in buckets:
        if len(bucket) == 1:
            key, value = bucket[0]
            out.append((key, average(value)))
            continue
        keys, values = zip(*bucket)
        big = average(mx.concatenate([v.reshape(-1) for v in values]))
        parts = mx.split(big, _cumsum([v.size for v in values])[:-1])
        out.extend((k, p.reshape(v.shape)) for k, p, v in zip(keys, parts, values))
    return tree_unflatten(out)


def _cumsum(xs):
    out, total = [], 0
    for x in xs:
        total += x
        out.append(total)
    return out
