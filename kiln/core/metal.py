"""``mx.metal``: kiln has no Metal backend; these exist so MLX code runs. Re-exports."""
from kiln.device import (clear_cache, get_active_memory, get_cache_memory, get_peak_memory,  # noqa: F401
                         reset_peak_memory, set_cache_limit, set_memory_limit, set_wired_limit)
from kiln.device import metal_device_info as device_info  # noqa: F401
from kiln.device import metal_is_available as is_available  # noqa: F401
from kiln.device import metal_start_capture as start_capture  # noqa: F401
from kiln.device import metal_stop_capture as stop_capture  # noqa: F401

__all__ = ["is_available", "device_info", "clear_cache", "get_active_memory", "get_cache_memory",
           "get_peak_memory", "reset_peak_memory", "set_cache_limit", "set_memory_limit",
           "set_wired_limit", "start_capture", "stop_capture"]
