"""Per-node host-time breakdown of kiln's eager path (CPU or GPU).

For a workload's eager step it reports the number of graph nodes per step, the wall time per
step and per node, and splits the host time (cProfile, run separately so the wall times stay
clean) into: building nodes (ops, ``_make``), kiln's evaluation loop, the backend's kernels
or dispatch (NumPy / CuPy calls, cuBLAS), the optimizer and nn code, and the rest.

    python -m benchmarks.host_profile --workload mlp_train [--gpu] [--steps 20] [--out f.json]
"""
from __future__ import annotations

import argparse
import cProfile
import importlib
import json
import os
import pstats
import time

import numpy as np

from benchmarks.frameworks import load


def _bucket(path: str, func: str) -> str:
    if "/cupy" in path or "cupyx" in path or "cupy_backends" in path:
        return "backend calls (CuPy)"
    if "/numpy/" in path or func.startswith("<method '") or func.startswith("<built-in method numpy"):
        return "backend calls (NumPy)"
    if "kiln/primitives/" in path and func in ("eval", "_matmul", "_erf"):
        return "primitive eval (kernel calls)"
    if "kiln/graph/eval.py" in path or "kiln/backend/" in path:
        return "kiln eval loop"
    if "kiln/ops/" in path or "kiln/graph/array.py" in path or "kiln/primitives/" in path:
        return "kiln node building and rules"
    if "kiln/transforms/" in path:
        return "kiln transforms (grad walk)"
    if "kiln/optimizers" in path or "kiln/nn" in path or "kiln/_tree" in path or "kiln/utils" in path:
        return "kiln nn/optimizers/trees"
    return "other (Python, builtins)"


def count_nodes(mx, run) -> int:
    """Nodes evaluated in one step (the tape length summed over every eval call)."""
    from kiln.graph import eval as E

    seen = [0]
    orig = E._run

    def counting(tape):
        seen[0] += len(tape)
        return orig(tape)

    E._run = counting
    try:
        run()
    finally:
        E._run = orig
    return seen[0]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workload", default="mlp_train")
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--size", default="full")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    fw = load("kiln", gpu=args.gpu)
    mx = fw.mx
    module = importlib.import_module(f"benchmarks.workloads.{args.workload}")
    params = module.SIZES[args.size]
    data = module.make_data(params, np.random.default_rng(0))
    case = [c for c in module.build_mlx(fw, data, params) if c.variant == "eager"][0]
    for _ in range(3):
        case.run()
    nodes = count_nodes(mx, case.run)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        case.run()
        times.append(time.perf_counter() - t)
    step = float(np.median(times))
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(args.steps):
        case.run()
    prof.disable()
    st = pstats.Stats(prof)
    buckets: dict = {}
    total = 0.0
    for (path, _line, func), (_cc, _nc, tt, _ct, _callers) in st.stats.items():
        b = _bucket(path, func)
        buckets[b] = buckets.get(b, 0.0) + tt
        total += tt
    top = sorted(((tt, f"{os.path.basename(path)}:{func}") for (path, _l, func), (_c, _n, tt, _ct, _r)
                  in st.stats.items()), reverse=True)[:12]
    res = {
        "workload": args.workload, "device": fw.device, "nodes_per_step": nodes,
        "step_ms": step * 1e3, "us_per_node_wall": step / max(nodes, 1) * 1e6,
        "load1": os.getloadavg()[0],
        "share": {k: v / total for k, v in sorted(buckets.items(), key=lambda kv: -kv[1])},
        "us_per_node_by_part": {k: step * (v / total) / max(nodes, 1) * 1e6 for k, v in buckets.items()},
        "top_functions_s_per_step": [(name, tt / args.steps) for tt, name in top],
    }
    if args.gpu:
        from kiln.backend import cuda

        res["matmul_precision"] = cuda.matmul_precision()
    print(json.dumps(res, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
