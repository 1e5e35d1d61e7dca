"""Peak memory of the gradient of a 32-layer tanh MLP, with and without gradient checkpointing.

The layers are checkpointed in segments of 8, so only the segment inputs are kept for the
backward pass and each segment is recomputed. Two measures:

- ``alloc``: the framework's own allocator peak above what was live before the step
  (``mx.get_peak_memory()`` after ``mx.reset_peak_memory()``, kiln and MLX only);
- ``rss``: the rise of the process's peak resident set (``VmHWM`` after resetting it through
  ``/proc/self/clear_refs``), for every framework. PyTorch uses ``torch.utils.checkpoint``
  (non-reentrant), JAX ``jax.checkpoint`` under ``jit``.

Each is taken on the second call, after a warm-up call (and compilation). The timing row shows what
the recomputation costs.
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import Case, rss_peak_delta

SIZES = {
    "full": {"layers": 32, "width": 256, "batch": 1024, "segment": 8, "repeats": 5},
    "quick": {"layers": 8, "width": 16, "batch": 32, "segment": 4, "repeats": 3},
}
RTOL = 1e-4


def make_data(params: dict, rng: np.random.Generator) -> dict:
    n, width = params["layers"], params["width"]
    data = {f"w{i}": (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32) for i in range(n)}
    data["x"] = rng.standard_normal((params["batch"], width)).astype(np.float32)
    return data


def segments(params: dict) -> list[range]:
    n, s = params["layers"], params["segment"]
    return [range(i, min(i + s, n)) for i in range(0, n, s)]


def _cases(fw, params, grads: dict, alloc=None) -> list[Case]:
    """``grads`` maps a variant to a function returning the gradient list (evaluated by the case)."""
    cases = []
    for variant, fn in grads.items():
        def memory(fn=fn):
            fw.sync(fn())  # warm-up (and compilation) outside the measurement
            out = {"rss": rss_peak_delta(lambda: fw.sync(fn()))}
            if alloc is not None:
                out["alloc"] = alloc(lambda: fw.sync(fn()))
            return out

        cases.append(Case(variant, run=lambda fn=fn: fw.sync(fn()), check=lambda fn=fn: {"g0": fn()[0]},
                          memory=memory, per=(1, "ms/step")))
    return cases


def build_mlx(fw, data, params):
    mx = fw.mx
    ws = [mx.array(data[f"w{i}"]) for i in range(params["layers"])]
    x = mx.array(data["x"])

    def segment(h, *ws):
        for w in ws:
            h = mx.tanh(h @ w)
        return h

    def loss(ws, checkpoint):
        h = x
        for seg in segments(params):
            fn = mx.checkpoint(segment) if checkpoint else segment
            h = fn(h, *[ws[i] for i in seg])
        return (h * h).mean()

    def alloc(fn):
        mx.synchronize()
        before = mx.get_active_memory()
        mx.reset_peak_memory()
        fn()
        return mx.get_peak_memory() - before

    grad = mx.grad(loss)
    return _cases(fw, params, {"no checkpoint": lambda: grad(ws, False), "checkpoint": lambda: grad(ws, True)},
                  alloc)


def build_jax(fw, data, params):
    jax = fw.jax
    ws = [fw.asarray(data[f"w{i}"]) for i in range(params["layers"])]
    x = fw.asarray(data["x"])

    def segment(h, *ws):
        for w in ws:
            h = jax.numpy.tanh(h @ w)
        return h

    def loss(ws, checkpoint):
        h = x
        for seg in segments(params):
            fn = jax.checkpoint(segment) if checkpoint else segment
            h = fn(h, *[ws[i] for i in seg])
        return (h * h).mean()

    plain = jax.jit(jax.grad(lambda ws: loss(ws, False)))
    ckpt = jax.jit(jax.grad(lambda ws: loss(ws, True)))
    return _cases(fw, params, {"no checkpoint": lambda: plain(ws), "checkpoint": lambda: ckpt(ws)})


def build_torch(fw, data, params):
    torch = fw.torch
    from torch.utils.checkpoint import checkpoint as torch_checkpoint

    ws = [fw.asarray(data[f"w{i}"]).requires_grad_() for i in range(params["layers"])]
    x = fw.asarray(data["x"])

    def segment(h, *ws):
        for w in ws:
            h = torch.tanh(h @ w)
        return h

    def grads(checkpoint):
        h = x
        for seg in segments(params):
            args = [ws[i] for i in seg]
            h = torch_checkpoint(segment, h, *args, use_reentrant=False) if checkpoint else segment(h, *args)
        return torch.autograd.grad((h * h).mean(), ws)

    return _cases(fw, params, {"no checkpoint": lambda: grads(False), "checkpoint": lambda: grads(True)})
