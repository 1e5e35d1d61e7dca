"""Dense float32 matrix multiply, n x n by n x n, in GFLOP/s."""

from __future__ import annotations

import numpy as np

from benchmarks.common import Case

SIZES = {"full": {"ns": [1024, 4096], "repeats": 10}, "quick": {"ns": [128, 256], "repeats": 3}}
RTOL = 1e-4


def make_data(params: dict, rng: np.random.Generator) -> dict:
    data = {}
    for n in params["ns"]:
        data[f"a{n}"] = rng.standard_normal((n, n)).astype(np.float32)
        data[f"b{n}"] = rng.standard_normal((n, n)).astype(np.float32)
    return data


def _cases(fw, data, params, matmul) -> list[Case]:
    cases = []
    for n in params["ns"]:
        a, b = fw.asarray(data[f"a{n}"]), fw.asarray(data[f"b{n}"])
        # Bind the loop's arrays now: a closure over the loop variables would see the last n.
        cases.append(Case(str(n), run=lambda a=a, b=b: fw.sync(matmul(a, b)),
                          check=lambda a=a, b=b: {"c": matmul(a, b)},
                          rate=(2 * n**3 / 1e9, "GFLOP/s"), repeats=3 if n >= 4096 else None))
    return cases


def build_mlx(fw, data, params):
    return _cases(fw, data, params, fw.mx.matmul)


def build_jax(fw, data, params):
    return _cases(fw, data, params, fw.jax.jit(fw.jnp.matmul))


def build_torch(fw, data, params):
    return _cases(fw, data, params, fw.torch.matmul)


def build_numpy(fw, data, params):
    return _cases(fw, data, params, np.matmul)
