"""Distributed benchmarks: ``all_sum`` bus bandwidth against mpi4py on NumPy
buffers, and data-parallel ``mlp_train`` throughput at 1 and 2 processes.

``python -m benchmarks.distributed [--quick] [--nproc 2] [--out FILE]`` starts
itself under ``python -m kiln.launch``; rank 0 writes the JSON (default
``benchmarks/results/distributed.json``) and prints a Markdown table.

Bus bandwidth is the NCCL-tests convention: ``bytes / time * 2 (n - 1) / n``
for an all-reduce. kiln's and mpi4py's calls alternate within each size so
that the load of the machine hits both alike. Times are the best of the
repeats (on a shared machine the minimum is the least disturbed figure);
the medians are kept in the JSON too.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

SIZES_MB = [1, 4, 16, 64, 256]
QUICK_MB = [1, 4, 16]
MLP = {"sizes": [784, 1024, 1024, 10], "batch": 256}


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bandwidth(sizes_mb, repeats: int) -> list:
    import kiln.core as mx
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    n = comm.Get_size()
    g = mx.distributed.init()
    rows = []
    for mb in sizes_mb:
        count = mb * 2**20 // 4
        a = np.random.default_rng(comm.Get_rank()).standard_normal(count).astype(np.float32)
        out = np.empty_like(a)
        x = mx.array(a)
        mx.eval(x)

        def raw():  # into a buffer allocated once
            comm.Allreduce(a, out, op=MPI.SUM)

        def raw_alloc():  # a new result buffer per call, as a functional op needs
            comm.Allreduce(a, np.empty_like(a), op=MPI.SUM)

        def kiln():
            mx.eval(mx.distributed.all_sum(x, group=g))

        raw(), raw_alloc(), kiln()  # warm up (connections, first touch)
        t_raw, t_alloc, t_kiln = [], [], []
        for _ in range(repeats):
            for fn, ts in ((raw, t_raw), (raw_alloc, t_alloc), (kiln, t_kiln)):
                comm.Barrier()
                ts.append(_median_time(fn, 1))
        factor = 2 * (n - 1) / n
        tr, ta, tk = (float(np.min(t)) for t in (t_raw, t_alloc, t_kiln))
        rows.append({"MB": mb, "mpi4py_ms": tr * 1e3, "mpi4py_alloc_ms": ta * 1e3,
                     "kiln_ms": tk * 1e3, "median_ms": {
                         "mpi4py": float(np.median(t_raw)) * 1e3,
                         "mpi4py_alloc": float(np.median(t_alloc)) * 1e3,
                         "kiln": float(np.median(t_kiln)) * 1e3},
                     "mpi4py_busbw_GBs": a.nbytes / tr * factor / 1e9,
                     "kiln_busbw_GBs": a.nbytes / tk * factor / 1e9,
                     "overhead": tk / tr - 1, "overhead_vs_alloc": tk / ta - 1})
    return rows


def mlp_throughput(steps: int, quick: bool) -> dict:
    """Examples/s of data-parallel SGD steps on the global batch split across ranks."""
    import kiln.core as mx
    import kiln.nn as nn
    import kiln.optimizers as optim
    g = mx.distributed.init()
    n, r = g.size(), g.rank()
    sizes = [64, 32, 32, 10] if quick else MLP["sizes"]
    batch = 32 if quick else MLP["batch"]
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    ys = rng.integers(0, sizes[-1], batch).astype(np.int32)
    part = slice(r * batch // n, (r + 1) * batch // n)
    x, y = mx.array(xs[part]), mx.array(ys[part])
    mx.random.seed(0)
    layers = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(i, o), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    opt = optim.Adam(learning_rate=1e-3)
    step = nn.value_and_grad(model, lambda m, a, b: nn.losses.cross_entropy(m(a), b, reduction="mean"))

    def train():
        loss, grads = step(model, x, y)
        grads = nn.average_gradients(grads)
        opt.update(model, grads)
        mx.eval(loss, model.parameters(), opt.state)

    for _ in range(2):
        train()
    t = _median_time(train, steps)
    return {"procs": n, "batch": batch, "ms_per_step": t * 1e3, "examples_per_s": batch / t}


def _worker(args) -> None:
    import kiln.core as mx
    g = mx.distributed.init()
    result = {"nproc": g.size()}
    if g.size() > 1:
        result["all_sum"] = bandwidth(QUICK_MB if args.quick else SIZES_MB, 3 if args.quick else 15)
    result["mlp_train"] = mlp_throughput(3 if args.quick else 10, args.quick)
    if g.rank() == 0:
        with open(args.out, "w") as f:
            json.dump(result, f)


def _launch(n: int, args, out: str) -> dict:
    cmd = [sys.executable, "-m", "kiln.launch", "-n", str(n), "--timeout", "120", "-m",
           "benchmarks.distributed", "--worker", "--out", out] + (["--quick"] if args.quick else [])
    env = dict(os.environ)
    for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(v, None)
    subprocess.run(cmd, check=True, env=env)
    with open(out) as f:
        return json.load(f)


def report(res: dict) -> str:
    lines = [f"all_sum on {res['nproc']} processes (float32, CPU, MPI):", "",
             "| MB | mpi4py ms | mpi4py+alloc ms | kiln ms | mpi4py bus GB/s | kiln bus GB/s "
             "| kiln vs mpi4py | kiln vs mpi4py+alloc |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in res["all_sum"]:
        lines.append(f"| {row['MB']} | {row['mpi4py_ms']:.2f} | {row['mpi4py_alloc_ms']:.2f} | "
                     f"{row['kiln_ms']:.2f} | {row['mpi4py_busbw_GBs']:.2f} | "
                     f"{row['kiln_busbw_GBs']:.2f} | {100 * row['overhead']:+.1f}% | "
                     f"{100 * row['overhead_vs_alloc']:+.1f}% |")
    lines += ["", "| mlp_train, data parallel | ms/step | examples/s |", "|---|---:|---:|"]
    for m in res["mlp_train"]:
        lines.append(f"| {m['procs']} process{'es' if m['procs'] > 1 else ''}, global batch "
                     f"{m['batch']} | {m['ms_per_step']:.1f} | {m['examples_per_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "distributed.json"))
    args = p.parse_args()
    if args.worker:
        _worker(args)
        return
    one = _launch(1, args, args.out + ".1")
    many = _launch(args.nproc, args, args.out + f".{args.nproc}")
    os.remove(args.out + ".1")
    os.remove(args.out + f".{args.nproc}")
    res = {"nproc": args.nproc, "all_sum": many["all_sum"],
           "mlp_train": [one["mlp_train"], many["mlp_train"]],
           "load_avg_1min": os.getloadavg()[0], "quick": args.quick}
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print(report(res))


if __name__ == "__main__":
    main()
