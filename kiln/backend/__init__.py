"""Backends: the protocol a device backend meets, and the registry that loads one per device type.

A backend is a module named after its device (``cpu.py``, ``cuda.py``) that provides the names of
``Backend`` below. It imports no primitive and no op: ``overrides`` is keyed by primitive *name*
(``"Matmul"``), so the graph floor can look a node's primitive up without the backend knowing
the class. The registry maps a device type's name (``"cpu"``, ``"gpu"``) to the module that
serves it; ``register`` adds one.
"""
from __future__ import annotations

import importlib
from typing import Any, Protocol


class Backend(Protocol):
    """What the graph and device floors use of a backend module."""

    name: str
    xp: Any  # the array namespace primitives compute with (NumPy, or CuPy behind shims)
    overrides: dict  # primitive name -> fn(prim, xp, *buffers), where ``xp`` alone is not enough

    def from_host(self, buf): ...
    def to_host(self, buf): ...
    def adopt(self, bufs) -> list: ...
    def synchronize(self) -> None: ...
    def cache_memory(self) -> int: ...
    def clear_cache(self) -> None: ...


class _MultiDevice:
    """``on`` is set once a non-CPU backend is loaded (only then can buffers live elsewhere)."""

    __slots__ = ("on",)

    def __init__(self):
        self.on = False


multi_device = _MultiDevice()

# device type name -> (module path, availability check or None)
_registry: dict = {
    "cpu": ("kiln.backend.cpu", None),
    "gpu": ("kiln.backend.cuda", "available"),
}
_loaded: dict = {}


def register(device_name: str, module: str, available: str | None = None) -> None:
    """Serve device type ``device_name`` with backend module ``module``.

    Args:
        device_name: the device type's name (``DeviceType.name``).
        module: the dotted path of a module meeting ``Backend``.
        available: the name of a function in that module that says whether it can run here.
    """
    _registry[device_name] = (module, available)
    _loaded.pop(device_name, None)


def _module(device_name: str):
    entry = _registry.get(device_name)
    if entry is None:
        raise ValueError(f"[device] No backend is registered for device type {device_name}.")
    return importlib.import_module(entry[0]), entry[1]


def backend_available(device_type) -> bool:
    """Whether the backend of ``device_type`` can run on this machine."""
    try:
        mod, check = _module(device_type.name)
    except Exception:
        return False
    return True if check is None else bool(getattr(mod, check)())


def get_backend(device_type) -> Backend:
    """The backend module serving ``device_type``, loaded on first use."""
    name = device_type.name
    b = _loaded.get(name)
    if b is None:
        b, check = _module(name)
        if check is not None and not getattr(b, check)():
            raise ValueError("[gpu] No GPU backend: CuPy and an NVIDIA GPU are required.")
        if name != "cpu":
            multi_device.on = True
        _loaded[name] = b
    return b


def loaded_backends() -> list:
    """The backend modules loaded so far."""
    return list(_loaded.values())
