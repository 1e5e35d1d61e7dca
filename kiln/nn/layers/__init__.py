"""All layers of ``kiln.nn``."""
from kiln.nn.layers.activations import *  # noqa: F401,F403
from kiln.nn.layers.base import Module  # noqa: F401
from kiln.nn.layers.containers import Sequential  # noqa: F401
from kiln.nn.layers.embedding import Embedding  # noqa: F401
from kiln.nn.layers.linear import Bilinear, Identity, Linear  # noqa: F401
