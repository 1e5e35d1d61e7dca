"""The NCCL backend: collectives on GPU buffers through CuPy's NCCL bindings.

Ranks meet through a small TCP rendezvous: rank 0 makes the NCCL unique id
and hands it to the others at ``KILN_COORDINATOR`` (``host:port``, set by
:mod:`kiln.launch`). Rank, size and local rank come from ``KILN_RANK`` /
``KILN_WORLD_SIZE`` / ``KILN_LOCAL_RANK`` or from the MPI launcher's
variables. Host buffers are uploaded and the results copied back.

Before each payload the ranks all-gather a small descriptor (as on MPI) and
wait for it against the deadline: ranks that disagree fail together, and a
rank that does not answer is reported (the communicator is then aborted so
no kernel waits forever).
"""
from __future__ import annotations

import os
import socket
import struct
import time

import numpy as np

from ._comm import Comm, DistributedError, check_agreement, describe, get_timeout

_UID_BYTES = 128


def available() -> bool:
    """Whether CuPy with NCCL and a GPU are present (never raises)."""
    try:
        from kiln.backend import cuda
        if not cuda.available():
            return False
        from cupy.cuda import nccl
        return bool(getattr(nccl, "available", True))  # CuPy built without NCCL says so here
    except Exception:  # no CuPy / no NCCL build: not available
        return False


def _env_int(*names, default=None):
    for n in names:
        v = os.environ.get(n)
        if v not in (None, ""):
            return int(v)
    return default


def _pack(uid) -> bytes:
    return struct.pack(f"{_UID_BYTES}b", *uid)


def _unpack(data: bytes) -> tuple:
    return struct.unpack(f"{_UID_BYTES}b", data)


def _recv_exact(sock, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("rendezvous closed early")
        out += chunk
    return out


def rendezvous(rank: int, size: int, address: str, make_uid, timeout: float):
    """Rank 0 serves ``make_uid()`` at ``address``; the others fetch it."""
    host, port = address.rsplit(":", 1)
    port = int(port)
    deadline = time.monotonic() + timeout
    if rank == 0:
        uid = make_uid()
        data = _pack(uid)
        with socket.create_server(("", port), reuse_port=False) as srv:
            srv.settimeout(timeout)
            for _ in range(size - 1):
                try:
                    conn, _addr = srv.accept()
                except socket.timeout:
                    raise DistributedError(
                        f"[init] Rank 0 waited {timeout:g} s for the other ranks to join at "
                        f"{address}; some never started.") from None
                with conn:
                    conn.sendall(data)
        return uid
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic())) as s:
                return _unpack(_recv_exact(s, _UID_BYTES))
        except OSError:
            if time.monotonic() > deadline:
                raise DistributedError(
                    f"[init] Rank {rank} could not reach rank 0 at {address} within "
                    f"{timeout:g} s.") from None
            time.sleep(0.05)


def from_environment() -> "NCCLComm":
    """The global NCCL communicator described by the launcher's environment."""
    if not available():
        raise RuntimeError("Cannot initialize nccl distributed backend.")
    import cupy
    from cupy.cuda import nccl
    rank = _env_int("KILN_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", default=0)
    size = _env_int("KILN_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", default=1)
    local = _env_int("KILN_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", default=0)
    cupy.cuda.Device(local % cupy.cuda.runtime.getDeviceCount()).use()
    if size == 1:
        uid = nccl.get_unique_id()
    else:
        address = os.environ.get("KILN_COORDINATOR")
        if not address:
            raise RuntimeError("Cannot initialize nccl distributed backend: KILN_COORDINATOR "
                               "(host:port of rank 0) is not set; start with python -m kiln.launch "
                               "--backend nccl.")
        uid = rendezvous(rank, size, address, nccl.get_unique_id, get_timeout())
    return NCCLComm(nccl.NcclCommunicator(size, uid, rank), rank, size)


class NCCLComm(Comm):
    """A group of processes on an NCCL communicator (one GPU per rank)."""

    backend = "nccl"

    def __init__(self, comm, rank: int, size: int):
        import cupy
        from cupy.cuda import nccl
        self.cupy, self.nccl, self.comm = cupy, nccl, comm
        self.rank, self.size = rank, size
        self.seq = 0
        self.check = os.environ.get("KILN_DISTRIBUTED_CHECK", "1") != "0"
        self._types = {"int8": nccl.NCCL_INT8, "uint8": nccl.NCCL_UINT8,
                       "int32": nccl.NCCL_INT32, "uint32": nccl.NCCL_UINT32,
                       "int64": nccl.NCCL_INT64, "uint64": nccl.NCCL_UINT64,
                       "float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
                       "float64": nccl.NCCL_FLOAT64}
        self._ops = {"sum": nccl.NCCL_SUM, "max": nccl.NCCL_MAX, "min": nccl.NCCL_MIN}

    # ------------------------------------------------------------ helpers
    def _device(self, buf):
        """``buf`` as a contiguous CuPy array (uploading host buffers)."""
        return self.cupy.ascontiguousarray(self.cupy.asarray(buf))

    def _wire(self, x, op):
        """A dtype NCCL can reduce, plus the way back to ``x``'s dtype."""
        name = x.dtype.name
        if name in self._types:
            return x, self._ops[op]
        if name == "bool":  # sum of booleans is "any"
            return x.view(self.cupy.uint8), self._ops["min" if op == "min" else "max"]
        if name in ("int16", "uint16"):
            return x.astype(self.cupy.int32 if name == "int16" else self.cupy.uint32), self._ops[op]
        if name == "complex64":  # only sums: real and imaginary parts add separately
            return x.view(self.cupy.float32), self._ops[op]
        raise TypeError(f"[distributed] NCCL cannot reduce {name} arrays.")

    def _stream(self):
        return self.cupy.cuda.get_current_stream()

    def _wait(self, stream, name: str) -> None:
        """Wait for ``stream`` against the deadline; abort the communicator if it passes."""
        if stream.done:
            return
        timeout = get_timeout()
        deadline = time.monotonic() + timeout
        while not stream.done:
            if time.monotonic() > deadline:
                try:
                    self.comm.abort()
                except Exception:  # aborting is best effort; the error below matters
                    pass
                raise DistributedError(
                    f"[{name}] Rank {self.rank} waited {timeout:g} s for the other ranks of the "
                    "NCCL group, which did not answer: a process died, hangs, or never reached "
                    f"this {name}. Set KILN_DISTRIBUTED_TIMEOUT (seconds) to wait longer.")
            time.sleep(1e-4)

    def _agree(self, name, shape, dtype):
        if not self.check:
            return
        cp = self.cupy
        mine = cp.asarray(describe(name, self.seq, shape, dtype))
        self.seq += 1
        rows = cp.empty((self.size, mine.size), cp.int64)
        s = self._stream()
        self.comm.allGather(mine.data.ptr, rows.data.ptr, mine.size, self.nccl.NCCL_INT64, s.ptr)
        self._wait(s, name)
        check_agreement(name, rows.get())

    # ------------------------------------------------------------ collectives
    def _from_wire(self, out, dtype):
        """Undo ``_wire``: a view for bool/complex64, a cast for 16-bit integers."""
        if out.dtype == dtype:
            return out
        if dtype.name in ("bool", "complex64"):
            return out.view(dtype)
        return out.astype(dtype)

    def _result(self, xp, out):
        return out.get() if xp is np else out

    def all_reduce(self, xp, buf, op):
        name = "all_" + op
        self._agree(name, buf.shape, buf.dtype)
        x = self._device(buf)
        wire, nop = self._wire(x.reshape(-1), op)
        out = self.cupy.empty_like(wire)
        s = self._stream()
        self.comm.allReduce(wire.data.ptr, out.data.ptr, wire.size, self._types[wire.dtype.name],
                            nop, s.ptr)
        self._wait(s, name)
        return self._result(xp, self._from_wire(out, x.dtype).reshape(x.shape))

    def all_gather(self, xp, buf):
        self._agree("all_gather", buf.shape, buf.dtype)
        x = self._device(buf)
        shape = (self.size * x.shape[0],) + x.shape[1:] if x.ndim else (self.size,)
        out = self.cupy.empty(shape, x.dtype)
        s = self._stream()
        # Raw bytes: gathering needs no arithmetic, so every dtype travels as is.
        self.comm.allGather(x.data.ptr, out.data.ptr, x.nbytes, self.nccl.NCCL_UINT8, s.ptr)
        self._wait(s, "all_gather")
        return self._result(xp, out)

    def sum_scatter(self, xp, buf):
        self._agree("sum_scatter", buf.shape, buf.dtype)
        x = self._device(buf)
        wire, nop = self._wire(x.reshape(-1), "sum")
        n = wire.size // self.size
        out = self.cupy.empty(n, wire.dtype)
        s = self._stream()
        self.comm.reduceScatter(wire.data.ptr, out.data.ptr, n, self._types[wire.dtype.name],
                                nop, s.ptr)
        self._wait(s, "sum_scatter")
        shape = (x.shape[0] // self.size,) + x.shape[1:]
        return self._result(xp, self._from_wire(out, x.dtype).reshape(shape))

    def send(self, xp, buf, dst):
        x = self._device(buf)
        s = self._stream()
        self.comm.send(x.data.ptr, x.nbytes, self.nccl.NCCL_UINT8, dst, s.ptr)
        self._wait(s, "send")

    def recv(self, xp, shape, dtype, src):
        out = self.cupy.empty(shape, dtype)
        s = self._stream()
        self.comm.recv(out.data.ptr, out.nbytes, self.nccl.NCCL_UINT8, src, s.ptr)
        self._wait(s, "recv")
        return self._result(xp, out)

    def split(self, color, key):
        raise RuntimeError("[distributed] Splitting an NCCL group is not supported yet.")
