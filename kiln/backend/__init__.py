"""Backends: one small surface per device type, chosen by the node's stream.

A backend provides ``xp`` (the array namespace primitives compute with),
``overrides`` (primitive class -> eval function, where ``xp`` alone is not
enough), ``from_host``/``to_host`` conversions, and memory hooks.
"""
from __future__ import annotations

_loaded = {}


def backend_available(dtype) -> bool:
    name = dtype.name
    if name == "cpu":
        return True
    try:
        from . import cuda
    except Exception:
        return False
    return cuda.available()


def get_backend(dtype):
    name = dtype.name
    b = _loaded.get(name)
    if b is None:
        if name == "cpu":
            from . import cpu as b
        else:
            from . import cuda as b

            if not b.available():
                raise ValueError("[gpu] No GPU backend: CuPy and an NVIDIA GPU are required.")
            from ..core.graph import multi_device

            multi_device.on = True
        _loaded[name] = b
    return b


def loaded_backends():
    return list(_loaded.values())
