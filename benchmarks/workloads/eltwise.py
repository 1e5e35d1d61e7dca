"""Memory-bound elementwise work on 4M float32, in GB/s: a GELU (tanh approximation) chain, eager
and compiled, plus one elementwise op (``x * x``) and one reduction (``x.sum()``) eager.

The bandwidth counts one read and one write of the array (one read for the reduction). A NumPy memory copy of the same array,
timed in the same process just before, gives the machine's reachable bandwidth to compare with.
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks.common import Case, time_case

SIZES = {"full": {"n": 4 * 2**20, "repeats": 20}, "quick": {"n": 2**16, "repeats": 3}}
RTOL = 1e-5
C = math.sqrt(2.0 / math.pi)


def gelu_tanh(x, tanh):
    """The GELU tanh approximation, written with operators so it runs on any array type."""
    return 0.5 * x * (1.0 + tanh(C * (x + 0.044715 * (x * x * x))))


def make_data(params: dict, rng: np.random.Generator) -> dict:
    return {"x": rng.standard_normal(params["n"]).astype(np.float32)}


def _copy_bandwidth(x: np.ndarray) -> float:
    dst = np.empty_like(x)
    t = time_case(Case("copy", run=lambda: np.copyto(dst, x)), 20, 1.0)
    return 2 * x.nbytes / t["median_s"] / 1e9


def _cases(fw, data, eager, compiled) -> list[Case]:
    x_np = data["x"]
    x = fw.asarray(x_np)
    extra = {"copy_GBps": _copy_bandwidth(x_np)}
    rate = (2 * x_np.nbytes / 1e9, "GB/s")
    cases = [Case("eager", run=lambda: fw.sync(eager(x)), check=lambda: {"y": eager(x)}, rate=rate, extra=extra)]
    if compiled is not None:
        cases.append(Case("compiled", run=lambda: fw.sync(compiled(x)), check=lambda: {"y": compiled(x)},
                          rate=rate, extra=extra))
    # Operators and ``.sum()`` mean the same on every array type here.
    cases.append(Case("x*x", run=lambda: fw.sync(x * x), check=lambda: {"y": x * x}, rate=rate, extra=extra))
    cases.append(Case("sum", run=lambda: fw.sync(x.sum()), check=lambda: {"y": x.sum()},
                      rate=(x_np.nbytes / 1e9, "GB/s"), extra=extra))
    return cases


def build_mlx(fw, data, params):
    mx = fw.mx
    fn = lambda x: gelu_tanh(x, mx.tanh)  # noqa: E731
    return _cases(fw, data, fn, mx.compile(fn) if hasattr(mx, "compile") else None)


def build_jax(fw, data, params):
    fn = lambda x: gelu_tanh(x, fw.jnp.tanh)  # noqa: E731
    return _cases(fw, data, fn, fw.jax.jit(fn))


def build_torch(fw, data, params):
    fn = lambda x: gelu_tanh(x, fw.torch.tanh)  # noqa: E731
    return _cases(fw, data, fn, fw.torch.compile(fn))


def build_numpy(fw, data, params):
    return _cases(fw, data, lambda x: gelu_tanh(x, np.tanh), None)
