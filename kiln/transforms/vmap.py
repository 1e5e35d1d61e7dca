"""``vmap``: trace on placeholders with the mapped axis removed, then replay
each node through its primitive's ``vmap`` rule on the batched inputs."""
from __future__ import annotations

from typing import Callable

from kiln.graph.array import array
from kiln.graph.eval import applications, toposort
from kiln._tree import broadcast_prefix as _broadcast_prefix
from kiln._tree import flatten
from kiln.ops.normalize import shape_str as _shape_str
from kiln.transforms.tracing import keep_graph, placeholder

import kiln.ops as mx


def vmap(fun: Callable, in_axes=0, out_axes=0) -> Callable:
    """Vectorise ``fun`` over an axis of its inputs.

    Args:
        fun: a function of arrays (or trees of arrays).
        in_axes: an int, None, or a prefix tree of the positional arguments
            giving the mapped axis of each input (None: not mapped).
        out_axes: an int, None or a prefix tree of the outputs.
    Returns:
        The vectorised function. Keyword arguments pass through unmapped.
    """

    def wrapped(*args, **kwargs):
        axes_prefix = in_axes
        if isinstance(in_axes, list):
            axes_prefix = tuple(in_axes)
        if isinstance(axes_prefix, tuple) and len(axes_prefix) != len(args):
            raise ValueError(f"[vmap] The number of in axes ({len(axes_prefix)}) must match the number of "
                             f"positional arguments ({len(args)}).")
        leaves, unflatten = flatten(list(args), "vmap", strict=False)
        leaf_axes = _broadcast_prefix(list(axes_prefix) if isinstance(axes_prefix, tuple) else axes_prefix,
                                      list(args), "in_axes")
        size = None
        first = None
        trace_leaves = []
        mapped = {}
        for k, (leaf, ax) in enumerate(zip(leaves, leaf_axes)):
            if not isinstance(leaf, array) or ax is None:
                trace_leaves.append(leaf)
                continue
            nd = leaf.ndim
            if ax < -nd or ax >= nd:
                raise IndexError(f"[vmap] Invalid vectorization axis {ax} for array with shape "
                                 f"{_shape_str(leaf.shape)}")
            ax = ax % nd
            n = leaf.shape[ax]
            if size is None:
                size, first = n, k
            elif n != size:
                raise ValueError(f"[vmap] Inconsistent axis sizes: {size} and {n} (input {first} has "
                                 f"{size} along its mapped axis, input {k} has {n}).")
            shape = leaf.shape[:ax] + leaf.shape[ax + 1:]
            ph = placeholder(shape, leaf.dtype, "vmap", leaf._stream)
            mapped[id(ph)] = (leaf, ax)
            trace_leaves.append(ph)
        if size is None:
            raise ValueError("[vmap] At least one input must be mapped (in_axes cannot all be None).")
        with keep_graph():
            out = fun(*unflatten(trace_leaves), **kwargs)
        out_leaves, out_unflatten = flatten(out, "vmap", strict=False)
        arrays = [o for o in out_leaves if isinstance(o, array)]
        results = replay(arrays, mapped)
        o_axes = _broadcast_prefix(out_axes, out, "out_axes")
        final = []
        j = 0
        for leaf, oax in zip(out_leaves, o_axes):
            if not isinstance(leaf, array):
                final.append(leaf)
                continue
            val, ax = results[j]
            j += 1
            if oax is None:
                if ax is not None:
                    raise ValueError("[vmap] An output with out_axes None must not depend on mapped inputs.")
                final.append(val)
                continue
            nd = val.ndim + (1 if ax is None else 0)
            if oax < -nd or oax >= nd:
                raise IndexError(f"[vmap] Invalid out axis {oax} for output with {nd} dimensions.")
            oax %= nd
            if ax is None:
                val = mx.broadcast_to(mx.expand_dims(val, oax),
                                      val.shape[:oax] + (size,) + val.shape[oax:])
            elif ax != oax:
                val = mx.moveaxis(val, ax, oax)
            final.append(val)
        return out_unflatten(final)

    return wrapped


def replay(outputs, mapped: dict):
    """Replay the graph behind ``outputs`` with placeholders replaced by batched inputs.

    Args:
        outputs: traced output arrays.
        mapped: id(placeholder) -> (batched array, axis).
    Returns:
        For each output, ``(array, axis)`` (axis None where it does not depend on a mapped input).
    """
    for node, group in applications(toposort(outputs)):
        if id(node) in mapped or not node._inputs:
            continue
        inputs = node._inputs
        if not any(id(i) in mapped for i in inputs):
            continue
        new_inputs, axes = [], []
        for i in inputs:
            m = mapped.get(id(i))
            if m is None:
                new_inputs.append(i)
                axes.append(None)
            else:
                new_inputs.append(m[0])
                axes.append(m[1])
        outs, out_axes = node._prim.vmap(new_inputs, axes)
        for s, o, a in zip(group, outs, out_axes):
            mapped[id(s)] = (o, a)
    return [mapped.get(id(o), (o, None)) for o in outputs]
