"""Containers of layers."""
from __future__ import annotations

from kiln.nn.layers.base import Module

__all__ = ["Sequential"]


class Sequential(Module):
    """Calls its layers in order, feeding each output to the next.

    Args:
        *modules: the layers (any callables).
    """

    def __init__(self, *modules):
        super().__init__()
        self.layers = list(modules)

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x
