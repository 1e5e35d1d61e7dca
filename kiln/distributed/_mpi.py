"""The MPI backend: collectives through mpi4py on host buffers.

GPU buffers are copied to the host and back (the MPI wheels are not
CUDA-aware). Each call first exchanges a small descriptor with a
non-blocking collective that is polled against a deadline: ranks that
disagree about the call fail together with a clear error, and a rank that
died or hangs is named after the timeout instead of blocking forever. The
payload then goes through MPI's blocking collective (its fastest path).
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
import time

import numpy as np

from ._comm import Comm, DistributedError, _explain, check_agreement, describe, get_timeout

_PING_TAG = 0x6B31  # the liveness round after a timeout
_DESC_TAG = 0x6B32  # send/recv handshake
_ACK_TAG = 0x6B33

# Environment variables that say a process was started by an MPI launcher.
LAUNCH_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


def launched() -> bool:
    """Whether this process was started by mpirun/mpiexec."""
    return any(v in os.environ for v in LAUNCH_VARS)


def load():
    """Import mpi4py's MPI module (initialising MPI), or raise RuntimeError."""
    try:
        import mpi4py
        mpi4py.rc.threads = False  # kiln calls MPI from one thread
        mpi4py.rc.finalize = False  # _finalize below does it, with a deadline
        from mpi4py import MPI
    except ImportError as e:
        raise RuntimeError(
            "Cannot initialize MPI: mpi4py is not installed (pip install 'kiln[distributed]').") from e
    if not _finalizing:
        _finalizing.append(True)
        atexit.register(_finalize, MPI)
    return MPI


_finalizing: list = []


def _finalize(MPI) -> None:
    """``MPI_Finalize`` at exit, bounded by the timeout: after a peer died it can
    wait for that peer forever."""
    if MPI.Is_finalized():
        return
    timeout = get_timeout()

    def give_up():
        sys.stderr.write(f"[distributed] MPI_Finalize did not finish within {timeout:g} s "
                         "(another rank died?); exiting without it.\n")
        sys.stderr.flush()
        os._exit(1)

    timer = threading.Timer(timeout, give_up)
    timer.daemon = True
    timer.start()
    try:
        MPI.Finalize()
    finally:
        timer.cancel()


def _to_host(buf):
    """A contiguous host copy (or view) of a NumPy or CuPy buffer."""
    if isinstance(buf, np.ndarray):
        # (np.ascontiguousarray would turn a 0-d array into shape (1,))
        return buf if buf.flags.c_contiguous else buf.copy(order="C")
    return buf.get()


def _as_device(xp, host):
    """``host`` on the device whose namespace is ``xp``."""
    return host if xp is np else xp.asarray(host)


# Half precision has no MPI type: reduce in float32 (exact for max/min, and a
# more accurate sum), then round once.
def _wire(host):
    if host.dtype.name in ("float16", "bfloat16"):
        return host.astype(np.float32)
    return host


class MPIComm(Comm):
    """A group of processes on an ``MPI.Comm``."""

    backend = "mpi"

    def __init__(self, MPI, comm):
        self.MPI = MPI
        self.comm = comm
        comm.Set_errhandler(MPI.ERRORS_RETURN)
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.seq = 0
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
        self._bool_ops = {"sum": MPI.LOR, "max": MPI.LOR, "min": MPI.LAND}

    # ------------------------------------------------------------ faults
    def _wait(self, req, name: str) -> None:
        """Poll ``req`` until done; past the deadline, name the missing ranks."""
        MPI = self.MPI
        try:
            if req.Test():
                return
            timeout = get_timeout()
            deadline = time.monotonic() + timeout
            spins = 0
            while not req.Test():
                if time.monotonic() > deadline:
                    self._fail(name, timeout, None)
                spins += 1
                if spins > 200:  # back off: other ranks may share this core
                    time.sleep(min(1e-3, 2e-6 * spins))
        except MPI.Exception as e:
            self._fail(name, None, e)

    def _failed_ranks(self) -> list:
        """Ranks MPI knows to have died (ULFM), else those that miss a ping round."""
        MPI, comm = self.MPI, self.comm
        try:
            failed = comm.Get_failed()
            n = failed.Get_size()
            if n:
                ranks = MPI.Group.Translate_ranks(failed, list(range(n)), comm.Get_group())
                return sorted(int(r) for r in ranks)
        except (MPI.Exception, NotImplementedError, AttributeError):
            pass
        # Survivors all end up here at about the same time: the ranks that
        # answer none of them are the dead or hung ones.
        peers = [p for p in range(self.size) if p != self.rank]
        boxes = {p: np.zeros(1, np.int64) for p in peers}
        recvs, sends, missing = {}, [], set(peers)
        for p in peers:
            try:
                sends.append(comm.Isend(np.array([self.rank], np.int64), dest=p, tag=_PING_TAG))
                recvs[p] = comm.Irecv(boxes[p], source=p, tag=_PING_TAG)
            except MPI.Exception:
                pass
        deadline = time.monotonic() + min(max(1.0, get_timeout() / 4), 5.0)
        while missing and time.monotonic() < deadline:
            for p in list(missing):
                try:
                    if p in recvs and recvs[p].Test():
                        missing.discard(p)
                except MPI.Exception:
                    recvs.pop(p, None)
            time.sleep(1e-3)
        return sorted(missing)

    def _fail(self, name: str, timeout, exc):
        ranks = self._failed_ranks()
        who = ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks)) if ranks \
            else "another rank"
        if exc is not None:
            msg = (f"[{name}] Communication failed on rank {self.rank}: {who} of the group "
                   f"died or failed ({exc}).")
        else:
            msg = (f"[{name}] Rank {self.rank} waited {timeout:g} s for {who} of the group, "
                   f"which did not answer: the process died, hangs, or never reached this "
                   f"{name}. Set KILN_DISTRIBUTED_TIMEOUT (seconds) to wait longer.")
        raise DistributedError(msg) from exc

    def _agree(self, name: str, shape, dtype) -> None:
        """Exchange descriptors; raises on every rank when they differ."""
        mine = describe(name, self.seq, shape, dtype)
        self.seq += 1
        rows = np.empty((self.size, mine.size), np.int64)
        self._wait(self.comm.Iallgather(mine, rows), name)
        check_agreement(name, rows)

    def _payload(self, name, fn, *args):
        try:
            fn(*args)
        except self.MPI.Exception as e:
            self._fail(name, None, e)

    # ------------------------------------------------------------ collectives
    def all_reduce(self, xp, buf, op):
        name = "all_" + op
        self._agree(name, buf.shape, buf.dtype)
        host = _to_host(buf)
        if host.dtype == np.bool_:
            out = np.empty_like(host)
            self._payload(name, self.comm.Allreduce, host, out, self._bool_ops[op])
        else:
            wire = _wire(host)
            out = np.empty_like(wire)
            self._payload(name, self.comm.Allreduce, wire, out, self._ops[op])
            out = out.astype(host.dtype, copy=False)
        return _as_device(xp, out)

    def all_gather(self, xp, buf):
        self._agree("all_gather", buf.shape, buf.dtype)
        host = _to_host(buf)
        shape = (self.size * host.shape[0],) + host.shape[1:] if host.ndim else (self.size,)
        out = np.empty(shape, host.dtype)
        # Raw bytes: gathering needs no arithmetic, so every dtype travels as is.
        self._payload("all_gather", self.comm.Allgather, host.reshape(-1).view(np.uint8),
                      out.reshape(-1).view(np.uint8))
        return _as_device(xp, out)

    def sum_scatter(self, xp, buf):
        self._agree("sum_scatter", buf.shape, buf.dtype)
        host = _to_host(buf)
        wire = _wire(host) if host.dtype != np.bool_ else host
        out = np.empty((host.shape[0] // self.size,) + host.shape[1:], wire.dtype)
        op = self.MPI.LOR if host.dtype == np.bool_ else self.MPI.SUM
        self._payload("sum_scatter", self.comm.Reduce_scatter_block, wire, out, op)
        return _as_device(xp, out.astype(host.dtype, copy=False))

    def send(self, xp, buf, dst):
        comm = self.comm
        desc = describe("send", 0, buf.shape, buf.dtype)
        ack = np.zeros(1, np.int64)
        r_ack = comm.Irecv(ack, source=dst, tag=_ACK_TAG)
        s_desc = comm.Isend(desc, dest=dst, tag=_DESC_TAG)
        self._wait(s_desc, "send")
        self._wait(r_ack, "send")
        if ack[0] != 1:
            raise DistributedError(
                f"[send] Rank {dst} expected a different array than rank {self.rank} sent "
                f"(shape {tuple(buf.shape)}, dtype {buf.dtype.name}); see the error on rank {dst}.")
        host = _to_host(buf)
        self._payload("send", comm.Send, host.reshape(-1).view(np.uint8), dst, 0)

    def recv(self, xp, shape, dtype, src):
        comm = self.comm
        theirs = np.zeros_like(describe("send", 0, shape, dtype))
        self._wait(comm.Irecv(theirs, source=src, tag=_DESC_TAG), "recv")
        mine = describe("send", 0, shape, dtype)
        ok = bool((theirs == mine).all())
        comm.Isend(np.array([1 if ok else 0], np.int64), dest=src, tag=_ACK_TAG).Wait()
        if not ok:
            raise DistributedError(
                f"[recv] Rank {self.rank} expected an array of shape {tuple(shape)} and dtype "
                f"{np.dtype(dtype).name} from rank {src}, but rank {src} "
                f"sent {_describe_send(theirs)}.")
        out = np.empty(shape, dtype)
        self._payload("recv", comm.Recv, out.reshape(-1).view(np.uint8), src, 0)
        return _as_device(xp, out)

    def split(self, color, key):
        try:
            new = self.comm.Split(color, self.rank if key < 0 else key)
        except self.MPI.Exception as e:
            self._fail("split", None, e)
        return MPIComm(self.MPI, new)


def _describe_send(row) -> str:
    return _explain(row).replace("send of ", "an array of ")
