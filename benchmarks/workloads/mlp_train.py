"""One full training step (forward, backward, Adam) of a 784-1024-1024-10 ReLU MLP, batch 256."""

from __future__ import annotations

import numpy as np

from benchmarks.workloads import _train

SIZES = {
    "full": {"sizes": [784, 1024, 1024, 10], "batch": 256, "repeats": 20},
    "quick": {"sizes": [64, 32, 32, 10], "batch": 16, "repeats": 3},
}
RTOL = 1e-4
LR = 1e-3


def make_data(params: dict, rng: np.random.Generator) -> dict:
    sizes = params["sizes"]
    data = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = 1 / np.sqrt(n_in)
        data[f"layers.{i}.weight"] = rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32)
        data[f"layers.{i}.bias"] = rng.uniform(-bound, bound, n_out).astype(np.float32)
    data["x"] = rng.standard_normal((params["batch"], sizes[0])).astype(np.float32)
    data["y"] = rng.integers(0, sizes[-1], params["batch"]).astype(np.int32)
    return data


def _split(data):
    return {k: v for k, v in data.items() if k.startswith("layers.")}, [data["x"], data["y"]]


def _kw(params):
    return {"per": (1, "ms/step"), "rate": (params["batch"], "examples/s")}


def build_mlx(fw, data, params):
    nn = fw.nn

    class MLP(nn.Module):
        def __init__(self, sizes):
            super().__init__()
            self.layers = [nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:])]

        def __call__(self, x):
            for layer in self.layers[:-1]:
                x = nn.relu(layer(x))
            return self.layers[-1](x)

    def loss_fn(model, x, y):
        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    flat, batch = _split(data)
    return _train.mlx_cases(fw, lambda: MLP(params["sizes"]), loss_fn, flat, batch, LR, **_kw(params))


def build_torch(fw, data, params):
    torch, nn = fw.torch, fw.torch.nn

    class MLP(nn.Module):
        def __init__(self, sizes):
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))

        def forward(self, x):
            for layer in self.layers[:-1]:
                x = torch.relu(layer(x))
            return self.layers[-1](x)

    def loss_fn(model, x, y):
        return nn.functional.cross_entropy(model(x), y.long())

    flat, batch = _split(data)
    return _train.torch_cases(fw, lambda: MLP(params["sizes"]), loss_fn, flat, batch, LR, **_kw(params))


def build_jax(fw, data, params):
    jax, jnp = fw.jax, fw.jnp
    n = len(params["sizes"]) - 1

    def loss_fn(p, x, y):
        for i in range(n):
            x = x @ p[f"layers.{i}.weight"].T + p[f"layers.{i}.bias"]
            if i < n - 1:
                x = jax.nn.relu(x)
        logp = jax.nn.log_softmax(x, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))

    flat, batch = _split(data)
    return _train.jax_cases(fw, loss_fn, flat, batch, LR, **_kw(params))


def build_numpy(fw, data, params):
    """Forward and backward written by hand (there is no autodiff in NumPy)."""
    n = len(params["sizes"]) - 1
    flat, (x, y) = _split(data)

    def loss_and_grads(p):
        acts, h = [x], x
        for i in range(n):
            h = h @ p[f"layers.{i}.weight"].T + p[f"layers.{i}.bias"]
            if i < n - 1:
                h = np.maximum(h, 0)
            acts.append(h)
        z = h - h.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        loss = -logp[np.arange(len(y)), y].mean()
        d = np.exp(logp)
        d[np.arange(len(y)), y] -= 1
        d /= len(y)
        grads = {}
        for i in reversed(range(n)):
            if i < n - 1:
                d = d * (acts[i + 1] > 0)
            grads[f"layers.{i}.weight"] = d.T @ acts[i]
            grads[f"layers.{i}.bias"] = d.sum(axis=0)
            d = d @ p[f"layers.{i}.weight"]
        return np.float32(loss), grads

    def trainer(_compiled):
        state = [dict(flat), (0, {k: 0 * v for k, v in flat.items()}, {k: 0 * v for k, v in flat.items()})]

        def run():
            loss, grads = loss_and_grads(state[0])
            state[:] = _train.adam_step(np, state[0], grads, state[1], LR, 0.0)
            return loss

        def check():
            before = run()
            return {"loss": np.array([before, loss_and_grads(state[0])[0]])}

        return run, check

    return _train._cases(trainer, _kw(params), compiled=False)
