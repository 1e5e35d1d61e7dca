"""Benchmark driver: sets up one venv per framework, runs every workload on every framework, checks
that they agree, and writes ``benchmarks/results/latest.json`` and ``docs/benchmarks.md`` (+ plot).

Usage (from the repository root)::

    python benchmarks/run.py                 # everything, full sizes
    python benchmarks/run.py --quick         # small sizes, few repeats (a smoke check)
    python benchmarks/run.py --only matmul,hvp --frameworks kiln,mlx
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import compare  # noqa: E402
from benchmarks.frameworks import FRAMEWORKS  # noqa: E402
from benchmarks.workloads import WORKLOADS  # noqa: E402

VENVS = ROOT / "benchmarks" / ".venvs"
# What each venv installs. NumPy runs in kiln's venv (it needs nothing more than NumPy).
# torch is pinned to the CPU build that is on local disk; a plain `torch` would pull CUDA wheels.
INSTALL = {
    "kiln": [f"-e{ROOT}[fast,bench]"],
    "mlx": ["mlx[cpu]==0.32.4", "threadpoolctl"],
    "jax": ["jax", "threadpoolctl"],
    "torch": ["torch==2.13.0", "threadpoolctl"],
}
INSTALL_GPU = {"jax": ["jax[cuda12]"], "mlx": ["mlx[cuda]==0.32.4"], "kiln": [f"-e{ROOT}[fast,cuda]"]}
PROBE = {"kiln": "kiln.core", "mlx": "mlx.core", "jax": "jax", "torch": "torch", "numpy": "numpy"}
REFERENCE_ORDER = ("numpy", "mlx", "jax", "torch", "kiln")


def venv_name(fw: str) -> str:
    return "kiln" if fw == "numpy" else fw


# Set by --system-python: every framework runs in this interpreter (for machines
# that have the frameworks preinstalled and cannot download, e.g. a GPU box).
_SYSTEM = {"python": None}


def python_of(fw: str) -> Path:
    if _SYSTEM["python"]:
        return Path(_SYSTEM["python"])
    return VENVS / venv_name(fw) / "bin" / "python"


def setup(frameworks: list[str], gpu: bool) -> dict[str, str]:
    """Create missing venvs and install each framework; returns ``{framework: error}`` for failures."""
    failed = {}
    for fw in frameworks:
        py = python_of(fw)
        if py.exists() and subprocess.run([py, "-c", f"import {PROBE[fw]}"], capture_output=True).returncode == 0:
            continue
        name = venv_name(fw)
        print(f"[setup] installing {name} into {VENVS / name} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", VENVS / name], check=True)
        specs = (INSTALL_GPU if gpu else INSTALL).get(name, INSTALL[name])
        proc = subprocess.run([py, "-m", "pip", "install", "-q", *specs], capture_output=True, text=True)
        if proc.returncode != 0:
            failed[fw] = "pip install failed: " + proc.stderr.strip().splitlines()[-1][:200]
            print(f"[setup] {failed[fw]}", flush=True)
    return failed


# Set by some machines for old OpenBLAS builds: they force a current OpenBLAS onto older
# (AVX2) kernels at about half the matmul speed, a setup no user has. Workers run without them
# (the tests do not touch them); each result records the BLAS that ran (threadpoolctl).
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def worker_env() -> dict:
    """The environment of a benchmark worker: ours, less the BLAS kernel overrides."""
    return {k: v for k, v in os.environ.items() if k not in BLAS_OVERRIDES}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_cell(fw: str, workload: str, size: str, data_path: Path, tmp: Path, args) -> tuple[dict, dict]:
    """Run one (framework, workload) worker subprocess; returns its JSON and its check arrays."""
    out, chk = tmp / f"{fw}-{workload}.json", tmp / f"{fw}-{workload}-check.npz"
    cmd = [str(python_of(fw)), "-m", "benchmarks.worker", "--framework", fw, "--workload", workload,
           "--size", size, "--data", str(data_path), "--out", str(out), "--check-out", str(chk),
           "--budget", str(args.budget)] + (["--gpu"] if args.gpu else [])
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout,
                              env=worker_env())
        failure = None if proc.returncode == 0 else (
            f"worker exited {proc.returncode}: " + (proc.stderr.strip().splitlines() or [""])[-1][:200])
    except subprocess.TimeoutExpired:
        failure = f"timed out after {args.timeout:.0f} s"
    result = json.loads(out.read_text()) if out.exists() else {}
    if failure and "error" not in result:
        result["error"] = failure
    result["wall_s"] = time.perf_counter() - t0
    checks = dict(np.load(chk)) if chk.exists() else {}
    return result, checks


def check_agreement(cells: dict, checks: dict, rtol: float, aliases: dict) -> None:
    """Compare every framework's check arrays with the first framework of REFERENCE_ORDER that has them.

    ``aliases`` maps a variant to an equivalent one (``{"compiled": "eager"}``): a framework earlier in
    REFERENCE_ORDER that lacks the variant (NumPy has no ``compiled``) is still the reference through it.
    """

    def arrays(fw: str, variant: str) -> dict:
        return {k.split("/", 1)[1]: v for k, v in checks.get(fw, {}).items() if k.split("/")[0] == variant}

    for variant in {key.split("/")[0] for c in checks.values() for key in c}:
        have = {fw: arrays(fw, variant) for fw in checks if arrays(fw, variant)}
        ref = None
        for fw in REFERENCE_ORDER:
            ref = have.get(fw) or arrays(fw, aliases.get(variant, variant))
            if ref:
                ref_name = fw if fw in have else f"{fw} ({aliases[variant]})"
                break
        for fw, got in have.items():
            ok, err = compare(ref, got, rtol)
            entry = cells[fw].setdefault("variants", {}).setdefault(variant, {})
            entry["check"] = {"ok": ok, "rel_err": err, "against": ref_name}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke check)")
    p.add_argument("--only", default="", help="comma-separated workloads (default: all)")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma-separated frameworks")
    p.add_argument("--gpu", action="store_true", help="run the GPU variants (kiln/MLX on mx.gpu, torch cuda, JAX gpu)")
    p.add_argument("--budget", type=float, default=None, help="seconds of timed runs per variant")
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed per (framework, workload)")
    p.add_argument("--no-setup", action="store_true", help="use the venvs as they are")
    p.add_argument("--system-python", action="store_true",
                   help="run every framework in this interpreter (no venvs; implies --no-setup)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latest.json"))
    p.add_argument("--docs", default=None, help="Markdown report (default: docs/benchmarks.md, not with --quick)")
    args = p.parse_args()
    size = "quick" if args.quick else "full"
    args.budget = args.budget or (1.0 if args.quick else 10.0)
    args.timeout = args.timeout or (180.0 if args.quick else 600.0)
    frameworks = [f for f in args.frameworks.split(",") if f]
    workloads = [w for w in args.only.split(",") if w] or list(WORKLOADS)
    for name in frameworks + workloads:
        if name not in FRAMEWORKS + WORKLOADS:
            p.error(f"unknown framework or workload {name!r}")

    if args.system_python:
        _SYSTEM["python"] = sys.executable
    broken = {} if (args.no_setup or args.system_python) else setup(frameworks, args.gpu)
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "size": size, "gpu": args.gpu, "cpu": cpu_model(), "cores": os.cpu_count(),
        "platform": platform.platform(), "versions": {}, "workloads": {},
    }
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for wl in workloads:
            module = importlib.import_module(f"benchmarks.workloads.{wl}")
            params = module.SIZES[size]
            data_path = tmp / f"{wl}-data.npz"
            np.savez(data_path, **module.make_data(params, np.random.default_rng(0)))
            cells, checks = {}, {}
            for fw in frameworks:
                if fw in broken:
                    cells[fw] = {"error": broken[fw]}
                    continue
                print(f"[{wl}] {fw} ...", end=" ", flush=True)
                cells[fw], checks[fw] = run_cell(fw, wl, size, data_path, tmp, args)
                report["versions"].setdefault(fw, cells[fw].pop("versions", None))
                print(summary(cells[fw]), flush=True)
            check_agreement(cells, checks, module.RTOL, getattr(module, "CHECK_ALIASES", {"compiled": "eager"}))
            report["workloads"][wl] = {"params": params, "results": cells}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # keep the workloads that this run did not redo
        previous = json.loads(out.read_text())
        if previous.get("size") == size and previous.get("gpu") == args.gpu:
            for wl, value in previous.get("workloads", {}).items():
                report["workloads"].setdefault(wl, value)
            for fw, value in previous.get("versions", {}).items():
                report["versions"].setdefault(fw, value)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    docs = args.docs or (None if args.quick else str(ROOT / "docs" / "benchmarks.md"))
    if docs:
        from benchmarks.report import write_markdown

        write_markdown(report, Path(docs))
        print(f"wrote {docs}")


def summary(cell: dict) -> str:
    if "error" in cell:
        return "ERROR " + cell["error"]
    if "skipped" in cell:
        return "skipped"
    parts = []
    for name, v in cell.get("variants", {}).items():
        if "error" in v:
            parts.append(f"{name}: ERROR {v['error'][:80]}")
        elif "median_s" in v:
            parts.append(f"{name}: {v['median_s'] * 1e3:.3g} ms")
        elif "memory" in v:
            parts.append(f"{name}: " + ", ".join(f"{k} {b / 2**20:.1f} MiB" for k, b in v["memory"].items()
                                                 if b is not None))
    return "; ".join(parts)


if __name__ == "__main__":
    main()
