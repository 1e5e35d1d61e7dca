"""4-bit affine quantized matmul (group 64) against float32 matmul, at M = 1 (decode) and M = 512.

A 4096 x 4096 weight; ``qmm`` multiplies by the packed weight (``quantized_matmul``, transposed, as
``QuantizedLinear`` does), ``f32`` by the float32 weight it was quantized from. PyTorch has no 4-bit
affine product on the CPU; its nearest equivalent is the int8 dynamically quantized ``Linear``.
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import Case

SIZES = {"full": {"n": 4096, "ms": [1, 512], "repeats": 20},
         "quick": {"n": 512, "ms": [1, 64], "repeats": 3}}
RTOL = 1e-3


def make_data(params: dict, rng: np.random.Generator) -> dict:
    n = params["n"]
    data = {"w": (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)}
    for m in params["ms"]:
        data[f"x{m}"] = rng.standard_normal((m, n)).astype(np.float32)
    return data


def _rate(m, n):
    return (2 * m * n * n / 1e9, "GFLOP/s")


def build_mlx(fw, data, params):
    mx = fw.mx
    n = params["n"]
    w = fw.asarray(data["w"])
    wq, s, b = mx.quantize(w, group_size=64, bits=4)
    mx.eval(wq, s, b)
    cases = []
    for m in params["ms"]:
        x = fw.asarray(data[f"x{m}"])

        def qmm(x=x):
            return mx.quantized_matmul(x, wq, s, b, transpose=True, group_size=64, bits=4)

        def f32(x=x):
            return mx.matmul(x, w.T)

        cases.append(Case(f"qmm M={m}", run=lambda f=qmm: fw.sync(f()), check=lambda f=qmm: {"y": f()},
                          rate=_rate(m, n)))
        cases.append(Case(f"f32 M={m}", run=lambda f=f32: fw.sync(f()), rate=_rate(m, n)))
    return cases


def build_numpy(fw, data, params):
    n = params["n"]
    w = data["w"]
    cases = []
    for m in params["ms"]:
        x = data[f"x{m}"]
        cases.append(Case(f"f32 M={m}", run=lambda x=x: x @ w.T, rate=_rate(m, n)))
    return cases


def build_torch(fw, data, params):
    torch = fw.torch
    n = params["n"]
    w = fw.asarray(data["w"])
    lin = torch.nn.Linear(n, n, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    cases = []
    try:
        qlin = torch.ao.quantization.quantize_dynamic(lin, {torch.nn.Linear}, dtype=torch.qint8)
    except Exception:  # pragma: no cover - builds without the quantized engine
        qlin = None
    for m in params["ms"]:
        x = fw.asarray(data[f"x{m}"])
        if qlin is not None:
            cases.append(Case(f"int8 dyn M={m}", run=lambda x=x: fw.sync(qlin(x)), rate=_rate(m, n),
                              note="int8 dynamic quantization (no 4-bit CPU kernel in PyTorch)"))
        cases.append(Case(f"f32 M={m}", run=lambda x=x: fw.sync(torch.matmul(x, w.T)), rate=_rate(m, n)))
    return cases
