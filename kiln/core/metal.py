"""``mx.metal``: kiln has no Metal backend; these exist so MLX code runs."""
from .device import (clear_cache, get_active_memory, get_cache_memory, get_peak_memory,
                     reset_peak_memory, set_cache_limit, set_memory_limit, set_wired_limit)

__all__ = ["is_available", "device_info", "clear_cache", "get_active_memory", "get_cache_memory",
           "get_peak_memory", "reset_peak_memory", "set_cache_limit", "set_memory_limit",
           "set_wired_limit", "start_capture", "stop_capture"]


def is_available() -> bool:
    """Always False: kiln runs on CPUs and NVIDIA GPUs."""
    return False


def device_info() -> dict:
    return {}


def start_capture(path: str) -> None:
    raise RuntimeError("[metal] Capture is not available: kiln has no Metal backend.")


def stop_capture() -> None:
    raise RuntimeError("[metal] Capture is not available: kiln has no Metal backend.")
