"""``mx.cuda``: re-exports."""
from kiln.device import cuda_is_available as is_available  # noqa: F401

__all__ = ["is_available"]
