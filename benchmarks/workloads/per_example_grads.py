"""Per-example gradients of a small tanh MLP: ``vmap(grad(loss))`` over a batch, and a Python loop.

The loss of one example is the cross-entropy against a one-hot target, written with operators and
``logsumexp`` so that the same expression runs on every framework.
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import Case

SIZES = {
    "full": {"n_in": 32, "hidden": 64, "n_out": 10, "batch": 256, "repeats": 10},
    "quick": {"n_in": 8, "hidden": 16, "n_out": 4, "batch": 8, "repeats": 3},
}
RTOL = 1e-4
# NumPy's hand-batched gradients are the reference for every variant.
CHECK_ALIASES = {"vmap": "by hand", "vmap+compile": "by hand", "loop": "by hand"}
PARAMS = ("w1", "b1", "w2", "b2")


def make_data(params: dict, rng: np.random.Generator) -> dict:
    n_in, hid, n_out, b = params["n_in"], params["hidden"], params["n_out"], params["batch"]
    return {
        "w1": (rng.standard_normal((hid, n_in)) / np.sqrt(n_in)).astype(np.float32),
        "b1": np.zeros(hid, np.float32),
        "w2": (rng.standard_normal((n_out, hid)) / np.sqrt(hid)).astype(np.float32),
        "b2": np.zeros(n_out, np.float32),
        "x": rng.standard_normal((b, n_in)).astype(np.float32),
        "t": np.eye(n_out, dtype=np.float32)[rng.integers(0, n_out, b)],
    }


def example_loss(p, x, t, tanh, logsumexp):
    """Cross-entropy of one example ``x`` against its one-hot target ``t``."""
    z = tanh(x @ p["w1"].T + p["b1"]) @ p["w2"].T + p["b2"]
    return logsumexp(z) - (z * t).sum()


def _cases(fw, data, params, vmapped, vmapped_compiled, single, stack) -> list[Case]:
    p = {k: fw.asarray(data[k]) for k in PARAMS}
    x, t = fw.asarray(data["x"]), fw.asarray(data["t"])
    n = params["batch"]
    per = (n, "us/example")

    def loop():
        grads = [single(p, x[i], t[i]) for i in range(n)]
        return {k: stack([g[k] for g in grads]) for k in PARAMS}

    cases = [Case("vmap", run=lambda: fw.sync(vmapped(p, x, t)), check=lambda: vmapped(p, x, t), per=per)]
    if vmapped_compiled is not None:
        cases.append(Case("vmap+compile", run=lambda: fw.sync(vmapped_compiled(p, x, t)),
                          check=lambda: vmapped_compiled(p, x, t), per=per))
    cases.append(Case("loop", run=lambda: fw.sync(loop()), check=loop, per=per, repeats=3))
    return cases


def build_mlx(fw, data, params):
    mx = fw.mx

    def loss(p, x, t):
        return example_loss(p, x, t, mx.tanh, lambda z: mx.logsumexp(z, axis=-1))

    grad = mx.grad(loss)
    vmapped = mx.vmap(grad, in_axes=(None, 0, 0))
    return _cases(fw, data, params, vmapped, mx.compile(vmapped) if hasattr(mx, "compile") else None, grad,
                  mx.stack)


def build_jax(fw, data, params):
    jax, jnp = fw.jax, fw.jnp

    def loss(p, x, t):
        return example_loss(p, x, t, jnp.tanh, lambda z: jax.nn.logsumexp(z, axis=-1))

    grad = jax.grad(loss)
    vmapped = jax.vmap(grad, in_axes=(None, 0, 0))
    return _cases(fw, data, params, vmapped, jax.jit(vmapped), grad, jnp.stack)


def build_torch(fw, data, params):
    torch = fw.torch

    def loss(p, x, t):
        return example_loss(p, x, t, torch.tanh, lambda z: torch.logsumexp(z, dim=-1))

    grad = torch.func.grad(loss)
    vmapped = torch.func.vmap(grad, in_dims=(None, 0, 0))
    return _cases(fw, data, params, vmapped, torch.compile(vmapped), grad, torch.stack)


def build_numpy(fw, data, params):
    """The per-example gradients written out by hand with batched NumPy ops (the check's reference)."""
    p = {k: data[k] for k in PARAMS}
    x, t = data["x"], data["t"]

    def by_hand():
        h = np.tanh(x @ p["w1"].T + p["b1"])
        z = h @ p["w2"].T + p["b2"]
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        dz = e / e.sum(axis=-1, keepdims=True) - t
        dh = (dz @ p["w2"]) * (1 - h * h)
        return {"w1": dh[:, :, None] * x[:, None, :], "b1": dh, "w2": dz[:, :, None] * h[:, None, :], "b2": dz}

    return [Case("by hand", run=by_hand, check=by_hand, per=(params["batch"], "us/example"))]
