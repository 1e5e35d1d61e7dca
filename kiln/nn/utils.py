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
                      communication_type=None, communication_stream=None):
    """Average ``gradients`` over the processes of a distributed group.

    With a single process (the usual case without ``mpirun``) the gradients
    are returned unchanged.

    Args:
        gradients: a tree of arrays.
        group: the distributed group (default: the global group).
        all_reduce_size: bytes per fused all-reduce (0 disables fusing).
        communication_type: optional dtype to communicate in.
        communication_stream: unused; kept for API compatibility.

    Returns:
        The averaged gradients.
    """
    distributed = getattr(mx, "distributed", None)
    if distributed is None:
        return gradients
    group = group or distributed.init()
    n = group.size()
    if n == 1:
        return gradients

    def average(x):
        dt = x.dtype
        y = x.astype(communication_type) if communication_type is not None else x
        return (distributed.all_sum(y, group=group) / n).astype(dt)

    if all_reduce_size <= 0:
        return tree_map(average, gradients)
    # Fuse into one flat buffer per call to cut latency.
    flat = tree_flatten(gradients)
    if not flat:
        return gradients
    keys, values = zip(*flat)
    shapes = [v.shape for v in values]
    sizes = [v.size for v in values]
    big = mx.concatenate([v.reshape(-1) for v in values])
    big = average(big)
    parts = mx.split(big, list(_cumsum(sizes)[:-1]))
    return tree_unflatten([(k, p.reshape(s)) for k, p, s in zip(keys, parts, shapes)])


def _cumsum(xs):
    out, total = [], 0
    for x in xs:
        total += x
        out.append(total)
    return out
