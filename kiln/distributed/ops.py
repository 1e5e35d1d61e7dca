"""The collective ops of ``mx.distributed``: validate, then build a node.

With a group of one process every collective returns its input, as in MLX.
Errors that a rank can see alone are raised here, at the call; the ones that
need the other ranks (their shapes and dtypes, whether they are alive) are
raised on every rank when the node is evaluated.
"""
from __future__ import annotations

from collections.abc import Sequence

from kiln.dtypes import Dtype
from kiln.graph.array import array
from kiln.ops import normalize as _common
from kiln.primitives.distributed import AllGather, AllReduce, Recv, Send, SumScatter

from ._group import Group, default_group

__all__ = ["all_sum", "all_max", "all_min", "all_gather", "sum_scatter", "send", "recv",
           "recv_like"]


def _input(x, name: str) -> array:
    if not isinstance(x, array):
        try:
            x = _common.as_array(x)
        except (TypeError, ValueError) as e:
            raise TypeError(f"[{name}] Expected an array, got {type(x).__name__}.") from e
    return x


def _all_reduce(x, op: str, group, stream) -> array:
    name = "all_" + op
    x = _input(x, name)
    g = default_group(group)
    if g.size() == 1:
        return x
    if op != "sum" and x.dtype.kind == "c":
        raise ValueError(f"[{name}] Not supported for complex arrays ({x.dtype}).")
    return AllReduce(op, g).apply([x], x.shape, x.dtype, _common.get_stream(stream))


def all_sum(x, *, group: Group | None = None, stream=None) -> array:
    """Sum ``x`` over all processes of the group (all-reduce).

    Args:
        x: input array (the same shape and dtype on every rank).
        group: the processes taking part (default: the global group).
        stream: stream or device.

    Returns:
        The elementwise sum of every rank's ``x``.
    """
    return _all_reduce(x, "sum", group, stream)


def all_max(x, *, group: Group | None = None, stream=None) -> array:
    """Elementwise maximum of ``x`` over all processes of the group.

    Args:
        x: input array (the same shape and dtype on every rank).
        group: the processes taking part (default: the global group).
        stream: stream or device.

    Returns:
        The elementwise maximum of every rank's ``x``.
    """
    return _all_reduce(x, "max", group, stream)


def all_min(x, *, group: Group | None = None, stream=None) -> array:
    """Elementwise minimum of ``x`` over all processes of the group.

    Args:
        x: input array (the same shape and dtype on every rank).
        group: the processes taking part (default: the global group).
        stream: stream or device.

    Returns:
        The elementwise minimum of every rank's ``x``.
    """
    return _all_reduce(x, "min", group, stream)


def all_gather(x, *, group: Group | None = None, stream=None) -> array:
    """Concatenate every process's ``x`` along the first axis, in rank order.

    Args:
        x: input array (the same shape on every rank; a 0-d array counts
            as shape ``(1,)``).
        group: the processes taking part (default: the global group).
        stream: stream or device.

    Returns:
        An array whose first axis is ``group.size()`` times longer.
    """
    x = _input(x, "all_gather")
    g = default_group(group)
    if g.size() == 1:
        return x
    prim = AllGather(g)
    return prim.apply([x], prim.output_shapes([x])[0], x.dtype, _common.get_stream(stream))


def sum_scatter(x, *, group: Group | None = None, stream=None) -> array:
    """Sum ``x`` over the group and keep this rank's slice of the first axis.

    Equal to ``all_sum(x)[rank * c:(rank + 1) * c]`` with
    ``c = x.shape[0] // group.size()``, done as one reduce-scatter.

    Args:
        x: input array whose first axis is divisible by the group size.
        group: the processes taking part (default: the global group).
        stream: stream or device.

    Returns:
        An array of shape ``(x.shape[0] // group.size(), *x.shape[1:])``.
    """
    x = _input(x, "sum_scatter")
    g = default_group(group)
    if g.size() == 1:
        return x
    n = g.size()
    if x.ndim == 0 or x.shape[0] % n:
        raise ValueError(
            f"[sum_scatter] The first dimension of the input with shape {x.shape} must be "
            f"divisible by the group size {n}.")
    prim = SumScatter(g)
    return prim.apply([x], prim.output_shapes([x])[0], x.dtype, _common.get_stream(stream))


def _peer(rank, g: Group, name: str, what: str) -> int:
    verb = "send to" if name == "send" else "recv from"
    if g.size() == 1:
        raise ValueError(f"Cannot {verb} a singleton group")
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise TypeError(f"[{name}] {what} must be an int, got {type(rank).__name__}.")
    if not 0 <= rank < g.size():
        raise ValueError(f"[{name}] Invalid {what}={rank} for a group of size {g.size()}.")
    if rank == g.rank():
        raise ValueError(f"[{name}] Rank {rank} cannot {verb} itself.")
    return rank


def send(x, dst: int, *, group: Group | None = None, stream=None) -> array:
    """Send ``x`` to the process of rank ``dst`` in the group.

    Args:
        x: the array to send.
        dst: destination rank in the group.
        group: the group (default: the global group).
        stream: stream or device.

    Returns:
        An array equal to ``x``; the send happens when it is evaluated.
    """
    x = _input(x, "send")
    g = default_group(group)
    dst = _peer(dst, g, "send", "destination")
    return Send(dst, g).apply([x], x.shape, x.dtype, _common.get_stream(stream))


def _recv(shape, dtype, src, group, stream, deps) -> array:
    g = default_group(group)
    src = _peer(src, g, "recv", "source")
    if not isinstance(dtype, Dtype):
        raise TypeError(f"[recv] dtype must be a Dtype, got {type(dtype).__name__}.")
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"[recv] shape must be a sequence of ints, got {shape!r}.") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"[recv] Negative dimensions are not allowed in shape {shape}.")
    prim = Recv(shape, dtype, src, g)
    return prim.apply(deps, shape, dtype, _common.get_stream(stream))


def recv(shape: Sequence[int], dtype: Dtype, src: int, *, group: Group | None = None,
         stream=None) -> array:
    """Receive an array of ``shape`` and ``dtype`` from rank ``src``.

    Args:
        shape: the shape of the incoming array.
        dtype: its dtype.
        src: source rank in the group.
        group: the group (default: the global group).
        stream: stream or device.

    Returns:
        The array rank ``src`` sent.
    """
    return _recv(shape, dtype, src, group, stream, [])


def recv_like(x, src: int, *, group: Group | None = None, stream=None) -> array:
    """Receive an array shaped like ``x`` (same shape and dtype) from rank ``src``.

    Args:
        x: an array giving shape and dtype.
        src: source rank in the group.
        group: the group (default: the global group).
        stream: stream or device.

    Returns:
        The array rank ``src`` sent.
    """
    x = _input(x, "recv_like")
    return _recv(x.shape, x.dtype, src, group, stream, [x])
