"""``mx.cuda``."""


def is_available() -> bool:
    """Whether kiln's CUDA backend (CuPy on an NVIDIA GPU) can be used."""
    from ..backend import backend_available
    from .device import gpu

    return backend_available(gpu)
