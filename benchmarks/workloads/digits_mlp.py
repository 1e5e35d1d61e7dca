"""Time to 97% test accuracy: a 64-128-128-10 ReLU MLP on scikit-learn's handwritten digits.

Every framework starts from the same weights and sees the same mini-batches in the same order
(the shuffles are made once with NumPy), trains with Adam (bias correction on) at batch 64, and
checks test accuracy after each epoch; the timed unit is one whole run until accuracy reaches 97%
(at most ``max_epochs``). The cross-framework check compares the initial test logits.
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import Case

SIZES = {
    "full": {"hidden": 128, "batch": 64, "max_epochs": 40, "target": 0.97, "lr": 1e-3, "repeats": 3},
    "quick": {"hidden": 16, "batch": 64, "max_epochs": 2, "target": 0.5, "lr": 1e-3, "repeats": 1},
}
RTOL = 1e-4
BETAS, EPS = (0.9, 0.999), 1e-8


def make_data(params: dict, rng: np.random.Generator) -> dict:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int32)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    n_train = 1437  # an 80/20 split
    h = params["hidden"]
    data = {"xtr": x[:n_train], "ytr": y[:n_train], "xte": x[n_train:], "yte": y[n_train:]}
    for i, (n_in, n_out) in enumerate([(64, h), (h, h), (h, 10)]):
        bound = 1 / np.sqrt(n_in)
        data[f"w{i}"] = rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32)
        data[f"b{i}"] = rng.uniform(-bound, bound, n_out).astype(np.float32)
    data["perms"] = np.stack([rng.permutation(n_train) for _ in range(params["max_epochs"])]).astype(np.int32)
    return data


def _batches(data, params, epoch):
    perm = data["perms"][epoch]
    b = params["batch"]
    return [perm[s:s + b] for s in range(0, len(perm), b)]


def _case(train, first_logits) -> list[Case]:
    return [Case("to 97%", run=train, check=lambda: {"logits": first_logits()}, per=(1, "s/run"))]


def build_mlx(fw, data, params):
    mx, nn, optim = fw.mx, fw.nn, fw.optim
    xtr, ytr, xte, yte = (mx.array(data[k]) for k in ("xtr", "ytr", "xte", "yte"))

    def make():
        model = nn.Sequential(nn.Linear(64, params["hidden"]), nn.ReLU(), nn.Linear(params["hidden"], params["hidden"]),
                              nn.ReLU(), nn.Linear(params["hidden"], 10))
        for i, j in enumerate((0, 2, 4)):
            model.layers[j].weight = mx.array(data[f"w{i}"])
            model.layers[j].bias = mx.array(data[f"b{i}"])
        return model

    def train():
        model = make()
        opt = optim.Adam(learning_rate=params["lr"], betas=list(BETAS), eps=EPS, bias_correction=True)
        step = nn.value_and_grad(model, lambda m, a, b: nn.losses.cross_entropy(m(a), b, reduction="mean"))
        for epoch in range(params["max_epochs"]):
            for idx in _batches(data, params, epoch):
                i = mx.array(idx)
                _, grads = step(model, xtr[i], ytr[i])
                opt.update(model, grads)
                mx.eval(model.parameters(), opt.state)
            acc = mx.mean(mx.argmax(model(xte), axis=1) == yte).item()
            if acc >= params["target"]:
                return epoch + 1
        return params["max_epochs"]

    return _case(train, lambda: make()(xte))


def build_torch(fw, data, params):
    torch = fw.torch
    xtr, ytr, xte, yte = (fw.asarray(data[k]) for k in ("xtr", "ytr", "xte", "yte"))
    ytr, yte = ytr.long(), yte.long()

    def make():
        h = params["hidden"]
        model = torch.nn.Sequential(torch.nn.Linear(64, h), torch.nn.ReLU(), torch.nn.Linear(h, h), torch.nn.ReLU(),
                                    torch.nn.Linear(h, 10)).to(xtr.device)
        with torch.no_grad():
            for i, j in enumerate((0, 2, 4)):
                model[j].weight.copy_(fw.asarray(data[f"w{i}"]))
                model[j].bias.copy_(fw.asarray(data[f"b{i}"]))
        return model

    def train():
        model = make()
        opt = torch.optim.Adam(model.parameters(), lr=params["lr"], betas=BETAS, eps=EPS)
        for epoch in range(params["max_epochs"]):
            for idx in _batches(data, params, epoch):
                i = torch.as_tensor(idx, dtype=torch.long, device=xtr.device)
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xtr[i]), ytr[i]).backward()
                opt.step()
            with torch.no_grad():
                acc = (model(xte).argmax(1) == yte).float().mean().item()
            if acc >= params["target"]:
                return epoch + 1
        return params["max_epochs"]

    def logits():
        with torch.no_grad():
            return make()(xte)

    return _case(train, logits)


def build_jax(fw, data, params):
    jax, jnp = fw.jax, fw.jnp
    xtr, ytr, xte, yte = (fw.asarray(data[k]) for k in ("xtr", "ytr", "xte", "yte"))

    def forward(p, x):
        x = jax.nn.relu(x @ p["w0"].T + p["b0"])
        x = jax.nn.relu(x @ p["w1"].T + p["b1"])
        return x @ p["w2"].T + p["b2"]

    def loss(p, x, y):
        z = forward(p, x)
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, y[:, None], axis=1)[:, 0])

    @jax.jit
    def step(p, m, v, t, x, y):
        g = jax.grad(loss)(p, x, y)
        m = jax.tree_util.tree_map(lambda a, b: BETAS[0] * a + (1 - BETAS[0]) * b, m, g)
        v = jax.tree_util.tree_map(lambda a, b: BETAS[1] * a + (1 - BETAS[1]) * b * b, v, g)
        c1, c2 = 1 - BETAS[0] ** t, 1 - BETAS[1] ** t
        p = jax.tree_util.tree_map(lambda w, a, b: w - params["lr"] * (a / c1) / (jnp.sqrt(b / c2) + EPS), p, m, v)
        return p, m, v

    acc_fn = jax.jit(lambda p: jnp.mean(jnp.argmax(forward(p, xte), axis=1) == yte))

    def init():
        return {k: fw.asarray(data[k]) for k in ("w0", "b0", "w1", "b1", "w2", "b2")}

    def train():
        p = init()
        m = jax.tree_util.tree_map(jnp.zeros_like, p)
        v = jax.tree_util.tree_map(jnp.zeros_like, p)
        t = 0
        for epoch in range(params["max_epochs"]):
            for idx in _batches(data, params, epoch):
                t += 1
                i = jnp.asarray(idx)
                p, m, v = step(p, m, v, t, xtr[i], ytr[i])
            if float(acc_fn(p)) >= params["target"]:
                return epoch + 1
        return params["max_epochs"]

    return _case(train, lambda: forward(init(), xte))
