"""``mx.distributed``: groups of processes and the collectives between them,
over MPI (mpi4py, host arrays) or NCCL (CuPy, GPU arrays). Start programs
with ``python -m kiln.launch -n N script.py``; without a launcher ``init()``
gives a group of one process whose collectives are identities."""
from ._comm import DistributedError, get_timeout, set_timeout
from ._group import Group, init, is_available
from .ops import (all_gather, all_max, all_min, all_sum, recv, recv_like, send,
                  sum_scatter)

__all__ = ["Group", "init", "is_available", "all_sum", "all_max", "all_min", "all_gather",
           "sum_scatter", "send", "recv", "recv_like", "DistributedError", "get_timeout",
           "set_timeout"]
