"""``mx.cuda``: re-exports."""
from kiln.device import cuda_is_available as is_available  # noqa: F401
from kiln.device import cuda_matmul_precision as matmul_precision  # noqa: F401
from kiln.device import cuda_set_matmul_precision as set_matmul_precision  # noqa: F401

__all__ = ["is_available", "matmul_precision", "set_matmul_precision"]
