"""``kiln.nn``: neural network layers, losses and initialisers (the
``mlx.nn`` API), built only on the public ``kiln.core`` API."""
from kiln.nn import init, losses  # noqa: F401
from kiln.nn.layers import *  # noqa: F401,F403
from kiln.nn.utils import average_gradients, value_and_grad  # noqa: F401
