"""Devices, streams, the default device/stream, and memory accounting.

A :class:`Stream` belongs to a :class:`Device`; every op takes ``stream=``
(a stream or a device) and records the stream on the node it builds. The
backend that evaluates a node is the one of its stream's device.
"""
from __future__ import annotations

import enum
import threading

from kiln.backend import backend_available, get_backend, loaded_backends


class DeviceType(enum.Enum):
    cpu = 0
    gpu = 1

    def __repr__(self) -> str:
        return f"DeviceType.{self.name}"

    __str__ = __repr__


cpu = DeviceType.cpu
gpu = DeviceType.gpu


class Device:
    """A device: ``Device(mx.cpu)`` or ``Device(mx.gpu, 0)``."""

    __slots__ = ("type", "index")

    def __init__(self, type: DeviceType, index: int = 0):
        if isinstance(type, str):
            type = DeviceType[type]
        if not isinstance(type, DeviceType):
            raise TypeError(f"[Device] Expected a DeviceType, got {type!r}.")
        self.type = type
        self.index = index

    def __repr__(self) -> str:
        return f"Device({self.type.name}, {self.index})"

    def __eq__(self, other) -> bool:
        if isinstance(other, DeviceType):
            return self.type is other
        return isinstance(other, Device) and other.type is self.type and other.index == self.index

    def __hash__(self) -> int:
        return hash((self.type, self.index))


class Stream:
    """An ordered queue of work on one device."""

    __slots__ = ("device", "index")

    def __init__(self, device: Device, index: int = 0):
        self.device = device
        self.index = index

    def __repr__(self) -> str:
        return f"Stream({self.device!r}, {self.index})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Stream) and other.device == self.device and other.index == self.index

    def __hash__(self) -> int:
        return hash((self.device, self.index))


def is_available(device) -> bool:
    """Whether a backend for ``device`` exists on this machine."""
    dtype = device.type if isinstance(device, Device) else device
    return backend_available(dtype)


class _State(threading.local):
    def __init__(self):
        self.default_device = _initial_device()
        self.default_streams = {}
        self.stream = None  # the current default stream (with-stream overrides)


def _initial_device() -> Device:
    return Device(gpu) if backend_available(gpu) else Device(cpu)


_state = None
_stream_counter = [0]
_streams = {}


def _st():
    global _state
    if _state is None:
        _state = _State()
    return _state


def _check_device(device: Device) -> Device:
    if not is_available(device):
        raise ValueError(
            f"[Device] {device!r} is not available: kiln has no backend for it on this machine "
            "(the GPU backend needs CuPy and an NVIDIA GPU)."
        )
    return device


def default_device() -> Device:
    """The device ops run on when no ``stream=`` is given."""
    return _st().default_device


def set_default_device(device) -> None:
    """Set the default device (a Device or a DeviceType)."""
    if isinstance(device, DeviceType):
        device = Device(device)
    st = _st()
    st.default_device = _check_device(device)
    st.stream = None


def default_stream(device) -> Stream:
    """The default stream of ``device``."""
    if isinstance(device, DeviceType):
        device = Device(device)
    st = _st()
    s = st.default_streams.get(device)
    if s is None:
        s = _streams.get((device, 0))
        if s is None:
            s = Stream(device, 0)
            _streams[(device, 0)] = s
        st.default_streams[device] = s
    return s


def new_stream(device) -> Stream:
    """A new stream on ``device``."""
    if isinstance(device, DeviceType):
        device = Device(device)
    _check_device(device)
    _stream_counter[0] += 1
    return Stream(device, _stream_counter[0])


def current_stream() -> Stream:
    """The stream ops use by default now."""
    st = _st()
    s = st.stream
    if s is None:
        s = default_stream(st.default_device)
        st.stream = s
    return s


def resolve_stream(s) -> Stream:
    """Turn an op's ``stream=`` argument into a Stream."""
    if s is None:
        return current_stream()
    if isinstance(s, Stream):
        return s
    if isinstance(s, DeviceType):
        s = Device(s)
    if isinstance(s, Device):
        _check_device(s)
        return default_stream(s)
    raise TypeError(f"Expected a Stream or a Device for stream=, got {type(s).__name__}.")


def set_default_stream(stream: Stream) -> None:
    """Make ``stream`` the default (and its device the default device)."""
    st = _st()
    st.default_device = _check_device(stream.device)
    st.default_streams[stream.device] = stream
    st.stream = stream


class stream:
    """Context manager: ops inside run on the given stream or device."""

    def __init__(self, s):
        self._s = resolve_stream(s)

    def __enter__(self):
        st = _st()
        self._saved = (st.default_device, st.stream, dict(st.default_streams))
        st.default_device = self._s.device
        st.stream = self._s
        return self._s

    def __exit__(self, *exc):
        st = _st()
        st.default_device, st.stream, st.default_streams = self._saved
        return False


def synchronize(stream=None) -> None:
    """Wait for outstanding work on a stream (CPU work is already synchronous)."""
    s = resolve_stream(stream)
    get_backend(s.device.type).synchronize()


# ---------------------------------------------------------------- memory
class _Memory:
    __slots__ = ("active", "peak", "limit", "cache_limit", "wired_limit")

    def __init__(self):
        self.active = 0
        self.peak = 0
        self.limit = 0
        self.cache_limit = 0
        self.wired_limit = 0


memory = _Memory()


def get_active_memory() -> int:
    """Bytes held by the buffers of live arrays."""
    return memory.active


def get_peak_memory() -> int:
    """The largest value of active memory since start or the last reset."""
    return memory.peak


def reset_peak_memory() -> None:
    """Reset the peak to the current active memory."""
    memory.peak = memory.active


def get_cache_memory() -> int:
    """Bytes held in the allocator's cache (kiln's CPU backend keeps none)."""
    return get_backend(default_device().type).cache_memory()


def set_memory_limit(limit: int) -> int:
    """Set the memory limit; returns the previous one."""
    prev, memory.limit = memory.limit, int(limit)
    return prev


def set_cache_limit(limit: int) -> int:
    """Set the cache limit; returns the previous one."""
    prev, memory.cache_limit = memory.cache_limit, int(limit)
    return prev


def set_wired_limit(limit: int) -> int:
    """Set the wired limit (kept for API compatibility); returns the previous one."""
    prev, memory.wired_limit = memory.wired_limit, int(limit)
    return prev


def clear_cache() -> None:
    """Release cached buffers held by the backends' allocators."""
    for b in loaded_backends():
        b.clear_cache()


# ---------------------------------------------------------------- mx.cuda and mx.metal
def cuda_is_available() -> bool:
    """Whether kiln's CUDA backend (CuPy on an NVIDIA GPU) can be used (``mx.cuda.is_available``)."""
    return backend_available(gpu)


def metal_is_available() -> bool:
    """Always False: kiln runs on CPUs and NVIDIA GPUs (``mx.metal.is_available``)."""
    return False


def metal_device_info() -> dict:
    """``mx.metal.device_info``: empty, there is no Metal device."""
    return {}


def metal_start_capture(path: str) -> None:
    """``mx.metal.start_capture``: not available without a Metal backend."""
    raise RuntimeError("[metal] Capture is not available: kiln has no Metal backend.")


def metal_stop_capture() -> None:
    """``mx.metal.stop_capture``: not available without a Metal backend."""
    raise RuntimeError("[metal] Capture is not available: kiln has no Metal backend.")
