"""An Elman RNN over a long sequence, forward and backward: ``mx.scan`` against a Python loop.

``h[t+1] = tanh(h[t] @ Wh + x[t] @ Wx + b)``; the loss is the mean of the squared hidden states
of every step. One step of work is ``value_and_grad`` of the loss with respect to ``Wh``, ``Wx``
and ``b``. Variants:

- ``scan+compile`` / ``scan``: kiln's ``mx.scan`` (a kiln extension: the cell is traced once),
  compiled and eager; ``jax.lax.scan`` under ``jax.jit`` on JAX;
- ``loop`` / ``loop+compile``: the same recurrence as a Python loop (a graph of ``steps`` cells),
  eager and compiled, on kiln and MLX.

Extra measures (``extra`` of the timed row): ``build_ms`` is the time to build the graph of the
step without evaluating it, at the full length and at a tenth of it (``build_ms_short``): with
``scan`` it does not grow with the sequence length. The ``memory`` rows give the allocator peak of
one step above what was live before (kiln and MLX) and the rise of the peak resident set (all).
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import Case, rss_peak_delta

SIZES = {
    "full": {"steps": 1000, "batch": 32, "hidden": 256, "n_in": 64, "repeats": 5},
    "quick": {"steps": 20, "batch": 4, "hidden": 16, "n_in": 8, "repeats": 3},
}
RTOL = 1e-3
CHECK_ALIASES = {"scan+compile": "loop", "scan": "loop", "loop+compile": "loop", "lax.scan+jit": "loop"}


def make_data(params: dict, rng: np.random.Generator) -> dict:
    h, d = params["hidden"], params["n_in"]
    return {
        "wh": (rng.standard_normal((h, h)) / np.sqrt(h)).astype(np.float32),
        "wx": (rng.standard_normal((d, h)) / np.sqrt(d)).astype(np.float32),
        "b": np.zeros(h, np.float32),
        "h0": np.zeros((params["batch"], h), np.float32),
        "xs": rng.standard_normal((params["steps"], params["batch"], d)).astype(np.float32),
    }


def _check(out) -> dict:
    loss, (gwh, gwx, gb) = out
    return {"loss": loss, "gwh": gwh, "gwx": gwx, "gb": gb}


def build_mlx(fw, data, params):
    mx = fw.mx
    p = [mx.array(data[k]) for k in ("wh", "wx", "b")]
    h0, xs = mx.array(data["h0"]), mx.array(data["xs"])
    has_scan = hasattr(mx, "scan")  # a kiln extension; MLX has no structured control flow

    def loss_loop(wh, wx, b, xs):
        h, total = h0, 0.0
        for t in range(xs.shape[0]):
            h = mx.tanh(h @ wh + xs[t] @ wx + b)
            total = total + (h * h).mean()
        return total / xs.shape[0]

    def loss_scan(wh, wx, b, xs):
        def cell(h, x):
            h = mx.tanh(h @ wh + x @ wx + b)
            return h, (h * h).mean()

        _, per_step = mx.scan(cell, h0, xs)
        return per_step.mean()

    def step_of(loss):
        return mx.value_and_grad(loss, argnums=(0, 1, 2))

    def build_ms(fn, n):
        """Milliseconds to build (not evaluate) one step's graph on the first ``n`` steps."""
        x = xs[:n]
        mx.eval(x)
        t = time.perf_counter()
        fn(*p, x)
        return (time.perf_counter() - t) * 1e3

    def alloc(fn):
        mx.synchronize()
        before = mx.get_active_memory()
        mx.reset_peak_memory()
        fn()
        return mx.get_peak_memory() - before

    variants = {"loop": step_of(loss_loop), "loop+compile": mx.compile(step_of(loss_loop))}
    if has_scan:
        variants = {"scan+compile": mx.compile(step_of(loss_scan)), "scan": step_of(loss_scan), **variants}
    n, short = params["steps"], max(params["steps"] // 10, 1)
    cases = []
    for name, fn in variants.items():
        run = (lambda fn=fn: fw.sync(fn(*p, xs)))
        extra = {}
        if not name.endswith("compile"):
            extra = {"build_ms": build_ms(fn, n), "build_ms_short": build_ms(fn, short)}

        def memory(run=run):
            run()  # warm-up (and compilation) outside the measurement
            return {"alloc": alloc(run), "rss": rss_peak_delta(run)}

        cases.append(Case(name, run=run, check=lambda fn=fn: _check(fn(*p, xs)), per=(n, "us/step"),
                          memory=memory, extra=extra, repeats=3 if name.startswith("loop") else None))
    return cases


def build_jax(fw, data, params):
    jax, jnp = fw.jax, fw.jnp
    p = [fw.asarray(data[k]) for k in ("wh", "wx", "b")]
    h0, xs = fw.asarray(data["h0"]), fw.asarray(data["xs"])

    def loss_scan(wh, wx, b, xs):
        def cell(h, x):
            h = jnp.tanh(h @ wh + x @ wx + b)
            return h, (h * h).mean()

        _, per_step = jax.lax.scan(cell, h0, xs)
        return per_step.mean()

    step = jax.jit(jax.value_and_grad(loss_scan, argnums=(0, 1, 2)))
    run = (lambda: fw.sync(step(*p, xs)))

    def memory():
        run()
        return {"rss": rss_peak_delta(run)}

    return [Case("lax.scan+jit", run=run, check=lambda: _check(step(*p, xs)), per=(params["steps"], "us/step"),
                 memory=memory)]
