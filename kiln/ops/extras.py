"""Small top-level names of the MLX API: device/stream helpers, window
functions, ``diff``, aliases. Built from other ops."""
from __future__ import annotations

import math
from typing import Union

from kiln import device as _device
from kiln import dtypes as _dt
from kiln.graph.array import array
from kiln.ops import elementwise as _ew
from kiln.ops import reduce as _rd
from kiln.ops import indexing as _ix
from kiln.ops import shape as _sh

__all__ = [
    "device_count", "device_info", "get_memory_limit", "from_dlpack", "StreamContext",
    "clear_streams", "new_thread_local_stream", "new_thread_unsafe_stream", "ThreadLocalStream",
    "ArrayLike", "bartlett", "blackman", "hamming", "hanning", "diff", "cumulative_sum",
    "cumulative_prod",
]

ArrayLike = Union[array, "numpy.ndarray", list, tuple, int, float, bool, complex]  # noqa: F821
StreamContext = _device.stream
ThreadLocalStream = _device.Stream


def device_count(device_type) -> int:
    """Number of devices of ``device_type`` kiln can use."""
    if isinstance(device_type, _device.Device):
        device_type = device_type.type
    if device_type is _device.cpu:
        return 1
    if not _device.is_available(device_type):
        return 0
    from kiln.backend import get_backend

    return get_backend(device_type).device_count()


def device_info(device=None) -> dict:
    """Facts about a device (name, memory)."""
    import os
    import platform

    d = device or _device.default_device()
    if isinstance(d, _device.DeviceType):
        d = _device.Device(d)
    if d.type is _device.cpu:
        try:
            mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            mem = 0
        return {"device_name": platform.processor() or platform.machine(), "architecture": platform.machine(),
                "memory_size": mem}
    from kiln.backend import get_backend

    return get_backend(d.type).device_info()


def get_memory_limit() -> int:
    """The memory limit set with ``set_memory_limit`` (0: none)."""
    return _device.memory.limit


def from_dlpack(x) -> array:
    """An array from an object implementing ``__dlpack__``."""
    return array(x)


def clear_streams() -> None:
    """Forget the streams made with ``new_stream`` (kiln's streams hold no resources)."""


def new_thread_local_stream(device):
    """A new stream on ``device`` (kiln's streams are plain handles)."""
    return _device.new_stream(device)


def new_thread_unsafe_stream(device):
    """A new stream on ``device`` (kiln's streams are plain handles)."""
    return _device.new_stream(device)


def _window(m: int, fn, name: str):
    if m < 1:
        return _sh.zeros((0,), _dt.float32)
    if m == 1:
        return _sh.ones((1,), _dt.float32)
    n = _sh.arange(m, dtype=_dt.float32)
    return fn(n, m - 1)


def hanning(M: int) -> array:
    """The Hann window of ``M`` points."""
    return _window(M, lambda n, d: 0.5 - 0.5 * _ew.cos(2 * math.pi * n / d), "hanning")


def hamming(M: int) -> array:
    """The Hamming window of ``M`` points."""
    return _window(M, lambda n, d: 0.54 - 0.46 * _ew.cos(2 * math.pi * n / d), "hamming")


def blackman(M: int) -> array:
    """The Blackman window of ``M`` points."""
    return _window(M, lambda n, d: 0.42 - 0.5 * _ew.cos(2 * math.pi * n / d)
                   + 0.08 * _ew.cos(4 * math.pi * n / d), "blackman")


def bartlett(M: int) -> array:
    """The Bartlett (triangular) window of ``M`` points."""
    return _window(M, lambda n, d: 1 - _ew.abs(2 * n / d - 1), "bartlett")


def diff(a, n: int = 1, axis: int = -1, prepend=None, append=None, *, stream=None) -> array:
    """The ``n``-th discrete difference along ``axis``."""
    a = array(a) if not isinstance(a, array) else a
    if n < 0:
        raise ValueError(f"[diff] Order must be non-negative, got {n}.")
    parts = [p for p in (prepend, a, append) if p is not None]
    if len(parts) > 1:
        parts = [_sh.broadcast_to(p, a.shape[:axis % a.ndim] + (1,) + a.shape[axis % a.ndim + 1:])
                 if not isinstance(p, array) or p.ndim == 0 else p for p in parts]
        a = _sh.concatenate(parts, axis=axis)
    for _ in range(n):
        m = a.shape[axis]
        a = _ew.subtract(_ix.take(a, _sh.arange(1, m), axis=axis), _ix.take(a, _sh.arange(0, m - 1), axis=axis))
    return a


def cumulative_sum(x, /, *, axis=None, dtype=None, include_initial=False, stream=None) -> array:
    """Array-API cumulative sum (alias of ``cumsum``)."""
    r = _rd.cumsum(_sh.flatten(x) if axis is None else x, axis=0 if axis is None else axis)
    if dtype is not None:
        r = r.astype(dtype)
    return r


def cumulative_prod(x, /, *, axis=None, dtype=None, include_initial=False, stream=None) -> array:
    """Array-API cumulative product (alias of ``cumprod``)."""
    r = _rd.cumprod(_sh.flatten(x) if axis is None else x, axis=0 if axis is None else axis)
    if dtype is not None:
        r = r.astype(dtype)
    return r
