"""Side-by-side benchmarks of kiln against MLX, JAX, PyTorch and NumPy (see README.md)."""
