"""Per-op overhead: 1,000 tiny elementwise ops on a 16-element vector, then one evaluation."""

from __future__ import annotations

import numpy as np

from benchmarks.common import Case

SIZES = {"full": {"n_ops": 1000, "size": 16, "repeats": 20}, "quick": {"n_ops": 100, "size": 16, "repeats": 3}}
RTOL = 1e-4  # XLA reassociates the 1,000-op float32 chain (errors near 2e-5)


def make_data(params: dict, rng: np.random.Generator) -> dict:
    return {"x": rng.standard_normal(params["size"]).astype(np.float32)}


def chain(x, n_ops: int):
    """``n_ops`` ops alternating a multiply and an add (written with operators, so any array works)."""
    for _ in range(n_ops // 2):
        x = x * 0.999
        x = x + 0.001
    return x


def _cases(fw, x, eager, compiled, n_ops: int) -> list[Case]:
    cases = [Case("eager", run=lambda: fw.sync(eager(x)), check=lambda: {"y": eager(x)}, per=(n_ops, "us/op"))]
    if compiled is not None:
        cases.append(Case("compiled", run=lambda: fw.sync(compiled(x)), check=lambda: {"y": compiled(x)},
                          per=(n_ops, "us/op")))
    return cases


def build_mlx(fw, data, params):
    n, mx = params["n_ops"], fw.mx
    fn = lambda x: chain(x, n)  # noqa: E731
    return _cases(fw, mx.array(data["x"]), fn, mx.compile(fn) if hasattr(mx, "compile") else None, n)


def build_jax(fw, data, params):
    n = params["n_ops"]
    fn = lambda x: chain(x, n)  # noqa: E731
    return _cases(fw, fw.asarray(data["x"]), fn, fw.jax.jit(fn), n)


def build_torch(fw, data, params):
    n = params["n_ops"]
    fn = lambda x: chain(x, n)  # noqa: E731
    return _cases(fw, fw.asarray(data["x"]), fn, fw.torch.compile(fn), n)


def build_numpy(fw, data, params):
    n = params["n_ops"]
    return _cases(fw, data["x"], lambda x: chain(x, n), None, n)
