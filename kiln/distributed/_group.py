"""``Group``, ``init`` and ``is_available``: which processes talk, and over what."""
from __future__ import annotations

import atexit
import importlib.util
import os

from . import _mpi
from ._comm import Comm, SingletonComm

__all__ = ["Group", "init", "is_available"]

BACKENDS = ("any", "mpi", "nccl", "ring", "jaccl")
_ENV_BACKEND = "KILN_DISTRIBUTED_BACKEND"  # set by kiln.launch
_global: list = [None]


class Group:
    """A group of processes that communicate (``mx.distributed.Group``).

    Groups come from :func:`init` and :meth:`split`; collectives take one as
    ``group=`` (default: the global group).
    """

    __slots__ = ("_comm", "__weakref__")

    def __init__(self, comm: Comm):
        self._comm = comm

    def rank(self) -> int:
        """This process's rank in the group."""
        return self._comm.rank

    def size(self) -> int:
        """The number of processes in the group."""
        return self._comm.size

    def split(self, color: int, key: int = -1) -> "Group":
        """Split the group into subgroups by ``color``.

        Args:
            color: processes passing the same color form one subgroup.
            key: orders ranks in the subgroup (smaller first); negative
                keeps the order of this group.

        Returns:
            This process's subgroup.
        """
        return Group(self._comm.split(int(color), int(key)))

    @property
    def backend(self) -> str:
        """The transport: ``"mpi"``, ``"nccl"`` or ``"singleton"`` (a kiln extension)."""
        return self._comm.backend

    def __repr__(self) -> str:
        return f"Group(rank={self.rank()}, size={self.size()}, backend={self.backend!r})"


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(
            "[distributed] The only valid values for backend are 'any', 'mpi', 'nccl', 'jaccl' "
            f"and 'ring' but '{backend}' was provided.")


def is_available(backend: str = "any") -> bool:
    """Whether kiln can use a distributed backend (not whether a group can be made).

    Args:
        backend: ``"any"``, ``"mpi"``, ``"nccl"``, ``"ring"`` or ``"jaccl"``.

    Returns:
        True for ``"any"`` (a single-process group always works), for
        ``"mpi"`` when mpi4py is installed, for ``"nccl"`` when CuPy with
        NCCL and a GPU are present; False for ``"ring"`` and ``"jaccl"``,
        which kiln does not implement.
    """
    _check_backend(backend)
    if backend == "any":
        return True
    if backend == "mpi":
        return importlib.util.find_spec("mpi4py") is not None
    if backend == "nccl":
        from . import _nccl
        return _nccl.available()
    return False


def _make(backend: str) -> Comm:
    """A communicator for ``backend`` ("mpi" or "nccl"); raises RuntimeError."""
    if backend == "mpi":
        if not _mpi.launched():
            raise RuntimeError(
                "Cannot initialize MPI: this process was not started by an MPI launcher "
                "(use python -m kiln.launch -n N script.py).")
        MPI = _mpi.load()
        return _mpi.MPIComm(MPI, MPI.COMM_WORLD)
    if backend == "nccl":
        from . import _nccl
        return _nccl.from_environment()
    raise RuntimeError(f"[distributed] kiln has no '{backend}' backend; use 'mpi' or 'nccl'.")


def _mark_started(rank: int) -> None:
    """Tell ``kiln.launch`` this rank started, and (at a normal exit) that it ended.

    The launcher reports ranks that started but never ended (killed by a
    signal), which the MPI runtime in fault-tolerant mode does not count as a
    failure.
    """
    folder = os.environ.get("KILN_LAUNCH_DIR")
    if not folder or not os.path.isdir(folder):
        return
    open(os.path.join(folder, f"started.{rank}"), "w").close()
    atexit.register(lambda: open(os.path.join(folder, f"ended.{rank}"), "w").close())


def init(strict: bool = False, backend: str = "any") -> Group:
    """Initialise communication and return the global group.

    Args:
        strict: raise when no backend can be initialised (default: fall back
            to a group of one process, whose collectives are identities).
        backend: ``"any"`` (what :mod:`kiln.launch` started, else MPI when
            the process was started by ``mpirun``), ``"mpi"`` or ``"nccl"``.

    Returns:
        The group of all launched processes. The first group made by
        ``backend="any"`` (or any successful call) is returned by later calls.
    """
    _check_backend(backend)
    current = _global[0]
    if current is not None and (backend == "any" or current.backend == backend) \
            and not (strict and current.size() == 1 and current.backend == "singleton"):
        return current
    if backend == "any":
        chosen = os.environ.get(_ENV_BACKEND) or ("mpi" if _mpi.launched() else None)
        candidates = [chosen] if chosen else []
    else:
        candidates = [backend]
    errors = []
    for name in candidates:
        try:
            group = Group(_make(name))
        except RuntimeError as e:
            errors.append(e)
            continue
        _mark_started(group.rank())
        if _global[0] is None or _global[0].size() == 1:
            _global[0] = group
        return group
    if strict:
        if errors:
            raise errors[0]
        raise RuntimeError("[distributed] Couldn't initialize any distributed backend: this "
                           "process was not started by a launcher (python -m kiln.launch).")
    group = Group(SingletonComm())
    if _global[0] is None and backend == "any":
        _global[0] = group
    return group


def default_group(group) -> Group:
    """``group`` itself, or the global group when it is None."""
    if group is None:
        return init()
    if not isinstance(group, Group):
        raise TypeError(f"[distributed] group must be a Group or None, got {type(group).__name__}.")
    return group
