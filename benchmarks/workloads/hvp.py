"""Hessian-vector product ``jvp(grad(f))`` of ``f(x) = sum(tanh(A x)) + |x|^2 / 2`` in 1000 dimensions."""

from __future__ import annotations

import numpy as np

from benchmarks.common import Case

SIZES = {"full": {"n": 1000, "repeats": 50}, "quick": {"n": 50, "repeats": 3}}
RTOL = 1e-4


def make_data(params: dict, rng: np.random.Generator) -> dict:
    n = params["n"]
    return {
        "a": (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32),
        "x": rng.standard_normal(n).astype(np.float32),
        "v": rng.standard_normal(n).astype(np.float32),
    }


def f(a, x, tanh):
    return tanh(a @ x).sum() + 0.5 * (x * x).sum()


def _cases(fw, data, hvp, hvp_compiled) -> list[Case]:
    a, x, v = (fw.asarray(data[k]) for k in ("a", "x", "v"))
    cases = [Case("eager", run=lambda: fw.sync(hvp(a, x, v)), check=lambda: {"hvp": hvp(a, x, v)},
                  per=(1, "us/hvp"))]
    if hvp_compiled is not None:
        cases.append(Case("compiled", run=lambda: fw.sync(hvp_compiled(a, x, v)),
                          check=lambda: {"hvp": hvp_compiled(a, x, v)}, per=(1, "us/hvp")))
    return cases


def build_mlx(fw, data, params):
    mx = fw.mx

    def hvp(a, x, v):
        grad = mx.grad(lambda x: f(a, x, mx.tanh))
        return mx.jvp(grad, [x], [v])[1][0]

    return _cases(fw, data, hvp, mx.compile(hvp) if hasattr(mx, "compile") else None)


def build_jax(fw, data, params):
    jax, jnp = fw.jax, fw.jnp

    def hvp(a, x, v):
        return jax.jvp(jax.grad(lambda x: f(a, x, jnp.tanh)), (x,), (v,))[1]

    return _cases(fw, data, hvp, jax.jit(hvp))


def build_torch(fw, data, params):
    torch = fw.torch

    def hvp(a, x, v):
        return torch.func.jvp(torch.func.grad(lambda x: f(a, x, torch.tanh)), (x,), (v,))[1]

    return _cases(fw, data, hvp, torch.compile(hvp))


def build_numpy(fw, data, params):
    """The Hessian written out: ``A^T diag(tanh'') A v + v``."""

    def hvp(a, x, v):
        s = np.tanh(a @ x)
        return a.T @ (-2 * s * (1 - s * s) * (a @ v)) + v

    return _cases(fw, data, hvp, None)
