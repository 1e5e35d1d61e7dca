"""An exported MLP forward pass called after ``import_function``, against calling the function itself.

The same code runs on kiln and on MLX (each exports and imports in its own
format); the ``mlxfn`` variant is kiln running the file the real MLX wrote,
when MLX is importable in kiln's venv.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from benchmarks.common import Case

SIZES = {"full": {"batch": 64, "width": 512, "depth": 4, "repeats": 50},
         "quick": {"batch": 8, "width": 32, "depth": 2, "repeats": 3}}
RTOL = 1e-4


def make_data(params: dict, rng: np.random.Generator) -> dict:
    w, d = params["width"], params["depth"]
    data = {"x": rng.standard_normal((params["batch"], w)).astype(np.float32)}
    for k in range(d):
        data[f"w{k}"] = (rng.standard_normal((w, w)) / np.sqrt(w)).astype(np.float32)
        data[f"b{k}"] = np.zeros(w, np.float32)
    return data


def _mlp(mx, ws, bs):
    def f(x):
        for w, b in zip(ws, bs):
            x = mx.maximum(x @ w + b, 0)
        return mx.sum(x * x, axis=1)
    return f


def build_mlx(fw, data, params):
    mx = fw.mx
    d = params["depth"]
    ws = [mx.array(data[f"w{k}"]) for k in range(d)]
    bs = [mx.array(data[f"b{k}"]) for k in range(d)]
    f = _mlp(mx, ws, bs)
    x = mx.array(data["x"])
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "mlp.fn")
    mx.export_function(path, f, x)
    imported = mx.import_function(path)
    g = lambda x: imported(x)[0]  # noqa: E731
    cases = [Case("direct", run=lambda: fw.sync(f(x)), check=lambda: {"y": f(x)}, per=(1, "us/call")),
             Case("imported", run=lambda: fw.sync(g(x)), check=lambda: {"y": g(x)}, per=(1, "us/call")),
             Case("imported+compile", run=lambda: fw.sync(cg(x)), check=lambda: {"y": cg(x)},
                  per=(1, "us/call"))]
    cg = mx.compile(g)
    if mx.__name__.startswith("kiln"):
        try:
            import mlx.core as real
        except Exception:  # MLX not in this venv: no cross-runtime variant
            return cases
        rf = _mlp(real, [real.array(data[f"w{k}"]) for k in range(d)],
                  [real.array(data[f"b{k}"]) for k in range(d)])
        mpath = os.path.join(tmp, "mlp.mlxfn")
        real.export_function(mpath, rf, real.array(data["x"]))
        from_mlx = mx.import_function(mpath)
        h = lambda x: from_mlx(x)[0]  # noqa: E731
        cases.append(Case("mlxfn", run=lambda: fw.sync(h(x)), check=lambda: {"y": h(x)}, per=(1, "us/call")))
    return cases
