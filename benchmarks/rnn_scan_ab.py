"""Interleaved A/B of the ``rnn_scan`` workload: kiln's ``mx.scan`` and ``jax.lax.scan`` in one process.

On a loaded machine the per-framework runs of ``run.py`` can see very different loads; alternating
the two in one process, round by round, gives a ratio both saw under the same conditions. Run it
with an interpreter that has JAX and kiln's requirements (e.g. the JAX venv of ``run.py``)::

    PYTHONPATH=. benchmarks/.venvs/jax/bin/python benchmarks/rnn_scan_ab.py [rounds]
"""

from __future__ import annotations

import statistics
import sys
import time
from types import SimpleNamespace

import numpy as np


def main() -> None:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_platforms", "cpu")
    import kiln.core as mx
    from benchmarks.workloads import rnn_scan as w

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    params = w.SIZES["full"]
    data = w.make_data(params, np.random.default_rng(0))
    fk = SimpleNamespace(mx=mx, sync=lambda *t: mx.eval(*t))
    kiln_cases = {c.variant: c for c in w.build_mlx(fk, data, params)}
    fj = SimpleNamespace(jax=jax, jnp=jnp, asarray=jnp.asarray,
                         sync=lambda *t: [leaf.block_until_ready() for leaf in jax.tree_util.tree_leaves(t)])
    jax_case = w.build_jax(fj, data, params)[0]
    runs = {"kiln scan+compile": kiln_cases["scan+compile"].run, "kiln scan": kiln_cases["scan"].run,
            "jax lax.scan+jit": jax_case.run}
    for run in runs.values():
        run()  # warm-up and compilation
    times: dict = {k: [] for k in runs}
    for _ in range(rounds):
        for k, run in runs.items():
            t = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - t)
    for k, v in times.items():
        print(f"{k}: median {statistics.median(v) * 1e3:.0f} ms, min {min(v) * 1e3:.0f} ms")
    ratios = [a / b for a, b in zip(times["kiln scan+compile"], times["jax lax.scan+jit"])]
    print(f"kiln scan+compile / jax lax.scan+jit: {statistics.median(ratios):.2f} (median of per-round ratios)")


if __name__ == "__main__":
    main()
