"""kiln: an array framework with lazy evaluation and composable function
transformations, speaking the MLX Python API (``import kiln.core as mx``)."""

__version__ = "0.1.0"
