"""The transport under a :class:`~kiln.distributed.Group`: the interface every
backend implements, the singleton one, the shared fault handling (timeouts,
agreement of shapes and dtypes across ranks) and the error type."""
from __future__ import annotations

import os

import numpy as np

__all__ = ["DistributedError", "Comm", "SingletonComm", "get_timeout", "set_timeout",
           "describe", "check_agreement", "dtype_name"]

_ENV_TIMEOUT = "KILN_DISTRIBUTED_TIMEOUT"
_DEFAULT_TIMEOUT = 30.0
_timeout: list = [None]  # set_timeout's value; None reads the environment

# Descriptor of one call on one rank, exchanged before the payload so that
# ranks that disagree (shape, dtype, which collective) fail together.
OPS = ["all_sum", "all_max", "all_min", "all_gather", "sum_scatter", "send", "recv"]
DTYPES = ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
          "float16", "bfloat16", "float32", "float64", "complex64"]
MAX_DIMS = 8
DESC_LEN = 4 + MAX_DIMS


class DistributedError(RuntimeError):
    """A communication failed: the ranks disagree about a call, or a rank
    died or stopped answering within the timeout."""


def get_timeout() -> float:
    """Seconds a rank waits for the others before it reports them
    (``set_timeout``, else ``KILN_DISTRIBUTED_TIMEOUT``, else 30)."""
    if _timeout[0] is not None:
        return _timeout[0]
    value = os.environ.get(_ENV_TIMEOUT)
    if value:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"[distributed] {_ENV_TIMEOUT} must be a number of seconds, "
                             f"got {value!r}.") from None
    return _DEFAULT_TIMEOUT


def set_timeout(seconds: float | None) -> None:
    """Set how long a rank waits for the others (None: back to the default).

    Args:
        seconds: a positive number of seconds, or None.
    """
    if seconds is not None and not seconds > 0:
        raise ValueError(f"[distributed] The timeout must be positive, got {seconds}.")
    _timeout[0] = None if seconds is None else float(seconds)


def dtype_name(dt) -> str:
    return np.dtype(dt).name


def describe(op: str, seq: int, shape, dtype) -> np.ndarray:
    """The int64 descriptor of a call (long shapes are folded into a hash)."""
    d = np.zeros(DESC_LEN, np.int64)
    d[0] = OPS.index(op)
    d[1] = seq
    d[2] = DTYPES.index(dtype_name(dtype))
    d[3] = len(shape)
    dims = list(shape)
    if len(dims) > MAX_DIMS:
        dims = dims[:MAX_DIMS - 1] + [hash(tuple(dims[MAX_DIMS - 1:])) & 0x7FFFFFFFFFFF]
    d[4:4 + len(dims)] = dims
    return d


def _explain(row) -> str:
    ndim = int(row[3])
    dims = [int(v) for v in row[4:4 + min(ndim, MAX_DIMS)]]
    shape = "(" + ", ".join(map(str, dims)) + ("," if ndim == 1 else "") + ")"
    if ndim > MAX_DIMS:
        shape = f"a shape of {ndim} dimensions"
    return f"{OPS[int(row[0])]} of shape {shape} and dtype {DTYPES[int(row[2])]}"


def check_agreement(name: str, rows: np.ndarray) -> None:
    """Raise on every rank when the gathered descriptors differ."""
    if (rows == rows[0]).all():
        return
    if (rows[:, 1] != rows[0, 1]).any():
        seqs = ", ".join(f"rank {r}: call {int(s)}" for r, s in enumerate(rows[:, 1]))
        detail = f"the ranks are at different calls on this group ({seqs})"
    else:
        detail = ", ".join(f"rank {r} called {_explain(row)}" for r, row in enumerate(rows))
    raise DistributedError(
        f"[{name}] The ranks of the group disagree: {detail}. Every rank must make the same "
        "collective calls in the same order, with arrays of the same shape and dtype.")


class Comm:
    """A communicator. Buffers are NumPy or CuPy arrays; ``xp`` is their namespace."""

    rank = 0
    size = 1
    backend = "singleton"

    def all_reduce(self, xp, buf, op: str):
        raise NotImplementedError

    def all_gather(self, xp, buf):
        raise NotImplementedError

    def sum_scatter(self, xp, buf):
        raise NotImplementedError

    def send(self, xp, buf, dst: int) -> None:
        raise NotImplementedError

    def recv(self, xp, shape, dtype, src: int):
        raise NotImplementedError

    def split(self, color: int, key: int) -> "Comm":
        raise RuntimeError("Cannot split the distributed group further.")


class SingletonComm(Comm):
    """The group of one process: every collective is the identity."""

    def all_reduce(self, xp, buf, op):
        return buf

    def all_gather(self, xp, buf):
        return buf

    def sum_scatter(self, xp, buf):
        return buf
