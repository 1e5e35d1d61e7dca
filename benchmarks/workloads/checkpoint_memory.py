"""Peak memory of the gradient of a 32-layer tanh MLP, with and without gradient checkpointing.

Variants: no checkpoint; the whole function checkpointed (``mx.checkpoint(f)``); and
``interval=4`` / ``interval=8``: kiln runs the program of MLX's autodiff reference,
``mx.checkpoint(forward, interval=k)`` over a list of layer modules, which keeps every k-th layer
output; MLX 0.32 has no ``interval``, so it (and JAX, ``jax.checkpoint``) checkpoints k-layer
segments, which keeps the same set; PyTorch uses ``checkpoint_sequential`` with 32 / k segments.
Two measures:

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
    "full": {"layers": 32, "width": 256, "batch": 1024, "repeats": 5},
    "quick": {"layers": 8, "width": 16, "batch": 32, "repeats": 3},
}
RTOL = 1e-4


def make_data(params: dict, rng: np.random.Generator) -> dict:
    n, width = params["layers"], params["width"]
    data = {f"w{i}": (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32) for i in range(n)}
    data["x"] = rng.standard_normal((params["batch"], width)).astype(np.float32)
    return data


INTERVALS = (4, 8)
VARIANTS = ("no checkpoint", "whole function", *(f"interval={k}" for k in INTERVALS))


def segments(params: dict, k: int) -> list[range]:
    n = params["layers"]
    return [range(i, min(i + k, n)) for i in range(0, n, k)]


def _interval(variant: str) -> int | None:
    return int(variant.split("=")[1]) if variant.startswith("interval=") else None


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
    mx, nn = fw.mx, fw.nn
    ws = [mx.array(data[f"w{i}"]) for i in range(params["layers"])]
    x = mx.array(data["x"])

    class Layer(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.w = w

        def __call__(self, h):
            return mx.tanh(h @ self.w)

    def forward(layers, h):
        for layer in layers:
            h = layer(h)
        return h

    def segment(h, *ws):
        for w in ws:
            h = mx.tanh(h @ w)
        return h

    def make_loss(variant):
        k = _interval(variant)
        if k is not None and fw.name == "kiln":
            # The program of MLX's autodiff reference: every k-th layer output is kept.
            ckpt = mx.checkpoint(forward, interval=k)
            return lambda ws: (ckpt([Layer(w) for w in ws], x) ** 2).mean()
        if k is not None:
            # MLX 0.32 has no interval: the same kept set by checkpointing k-layer segments.
            def loss(ws):
                h = x
                for seg in segments(params, k):
                    h = mx.checkpoint(segment)(h, *[ws[i] for i in seg])
                return (h * h).mean()

            return loss
        if variant == "whole function":
            whole = mx.checkpoint(lambda ws, h: segment(h, *ws))
            return lambda ws: (whole(ws, x) ** 2).mean()
        return lambda ws: (forward([Layer(w) for w in ws], x) ** 2).mean()

    def alloc(fn):
        mx.synchronize()
        before = mx.get_active_memory()
        mx.reset_peak_memory()
        fn()
        return mx.get_peak_memory() - before

    grads = {v: mx.grad(make_loss(v)) for v in VARIANTS}
    return _cases(fw, params, {v: (lambda g=g: g(ws)) for v, g in grads.items()}, alloc)


def build_jax(fw, data, params):
    jax = fw.jax
    ws = [fw.asarray(data[f"w{i}"]) for i in range(params["layers"])]
    x = fw.asarray(data["x"])

    def segment(h, *ws):
        for w in ws:
            h = jax.numpy.tanh(h @ w)
        return h

    def loss(ws, variant):
        k = _interval(variant)
        if variant == "whole function":
            h = jax.checkpoint(segment)(x, *ws)
        elif k is not None:
            h = x
            for seg in segments(params, k):
                h = jax.checkpoint(segment)(h, *[ws[i] for i in seg])
        else:
            h = segment(x, *ws)
        return (h * h).mean()

    fns = {v: jax.jit(jax.grad(lambda ws, v=v: loss(ws, v))) for v in VARIANTS}
    return _cases(fw, params, {v: (lambda f=f: f(ws)) for v, f in fns.items()})


def build_torch(fw, data, params):
    torch = fw.torch
    from torch.utils.checkpoint import checkpoint as torch_checkpoint
    from torch.utils.checkpoint import checkpoint_sequential

    ws = [fw.asarray(data[f"w{i}"]).requires_grad_() for i in range(params["layers"])]
    x = fw.asarray(data["x"])

    class Layer(torch.nn.Module):
        def __init__(self, w):
            super().__init__()
            self.w = w

        def forward(self, h):
            return torch.tanh(h @ self.w)

    model = torch.nn.Sequential(*[Layer(w) for w in ws])

    def grads(variant):
        k = _interval(variant)
        if k is not None:
            # checkpoint_sequential keeps every segment's input; the last segment is not recomputed.
            h = checkpoint_sequential(model, params["layers"] // k, x, use_reentrant=False)
        elif variant == "whole function":
            h = torch_checkpoint(model, x, use_reentrant=False)
        else:
            h = model(x)
        return torch.autograd.grad((h * h).mean(), ws)

    return _cases(fw, params, {v: (lambda v=v: grads(v)) for v in VARIANTS})
