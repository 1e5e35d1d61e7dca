"""The CPU backend: NumPy is the array namespace."""
from __future__ import annotations

import numpy as np

xp = np
name = "cpu"

# Primitive name -> function(prim, xp, *buffers); filled by modules that need
# CPU-specific kernels (e.g. fused elementwise kernels from codegen).
overrides: dict = {}


def quiet():
    """A context in which NumPy's floating-point warnings are off."""
    return np.errstate(all="ignore")


def from_host(buf):
    """A host (NumPy) buffer as this backend's buffer."""
    return buf


def to_host(buf):
    """This backend's buffer as a NumPy array."""
    return buf


def synchronize() -> None:
    pass


def cache_memory() -> int:
    return 0


def clear_cache() -> None:
    pass


def adopt(bufs):
    """Input buffers as NumPy arrays (those computed on a GPU are copied to the host)."""
    return [b if isinstance(b, np.ndarray) or isinstance(b, np.generic) else b.get() for b in bufs]
