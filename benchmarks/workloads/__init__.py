"""Workloads: one module each, with ``SIZES``, ``make_data`` and a ``build_<family>`` per framework.

A module defines:

- ``SIZES``: ``{"full": {...}, "quick": {...}}`` parameters (``repeats`` included);
- ``make_data(params, rng) -> dict[str, np.ndarray]``: initial weights and inputs, made once by
  the driver with NumPy so every framework starts from the same numbers;
- ``RTOL``: tolerance of the cross-framework check (error relative to the largest magnitude);
- ``build_mlx(fw, data, params)`` (kiln and MLX), ``build_jax``, ``build_torch``, ``build_numpy``:
  each returns a list of :class:`benchmarks.common.Case`. A missing builder means "no version".
"""

WORKLOADS = (
    "dispatch", "matmul", "eltwise", "mlp_train", "transformer_train",
    "per_example_grads", "hvp", "conv", "checkpoint_memory", "digits_mlp", "rnn_scan",
    "export_import", "quantized_matmul",
)
