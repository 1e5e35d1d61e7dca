"""Runs one workload on one framework inside that framework's venv and writes the results.

Invoked by ``run.py`` as ``python -m benchmarks.worker --framework F --workload W ...``. The JSON
is rewritten after every variant, so a crash or a time-out still leaves the variants done before.
"""

from __future__ import annotations

import argparse
import importlib
import json
import traceback

import numpy as np

from benchmarks.common import time_case
from benchmarks.frameworks import load


def _error(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip().splitlines()[-1][:300]


def blas_info() -> list:
    """The BLAS libraries loaded in this process and the kernel each runs (threadpoolctl)."""
    import os

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl not installed (pip install .[bench])"}]
    keep = ("internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")
    out = [{k: lib.get(k) for k in keep} for lib in threadpool_info() if lib.get("user_api") == "blas"]
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if os.environ.get(k):
            out.append({"warning": f"{k}={os.environ[k]} is set: BLAS kernels are forced"})
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--framework", required=True)
    p.add_argument("--workload", required=True)
    p.add_argument("--size", default="full")
    p.add_argument("--data", required=True, help="npz with the shared initial weights and inputs")
    p.add_argument("--out", required=True)
    p.add_argument("--check-out", required=True)
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--budget", type=float, default=10.0, help="seconds of timed runs per variant")
    args = p.parse_args()

    result: dict = {"framework": args.framework, "workload": args.workload, "variants": {}}

    def flush() -> None:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)

    try:
        fw = load(args.framework, gpu=args.gpu)
        result["versions"], result["device"] = fw.versions, fw.device
        result["blas"] = blas_info()
        module = importlib.import_module(f"benchmarks.workloads.{args.workload}")
        params = module.SIZES[args.size]
        builder = getattr(module, f"build_{fw.family}", None)
        if builder is None:
            result["skipped"] = "no version for this framework"
            flush()
            return
        data = dict(np.load(args.data))
        cases = builder(fw, data, params)
    except Exception as exc:  # noqa: BLE001 - the cell records the error, the run goes on
        result["error"] = _error(exc)
        flush()
        return
    flush()

    checks: dict[str, np.ndarray] = {}
    for case in cases:
        entry: dict = {"note": case.note} if case.note else {}
        result["variants"][case.variant] = entry
        try:
            if case.check is not None:
                for key, value in case.check().items():
                    checks[f"{case.variant}/{key}"] = np.asarray(fw.to_numpy(value), dtype=np.float64)
                np.savez(args.check_out, **checks)
            if case.memory is not None:
                entry["memory"] = case.memory()
            if case.run is not None:
                repeats = case.repeats or params.get("repeats", 5)
                entry.update(time_case(case, repeats, args.budget))
            entry.update(case.extra)
        except Exception as exc:  # noqa: BLE001
            entry["error"] = _error(exc)
        flush()


if __name__ == "__main__":
    main()
