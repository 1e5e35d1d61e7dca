"""One AdamW training step of a small causal transformer language model, in tokens/s.

Pre-norm blocks (LayerNorm, 4-head causal attention written with matmul and softmax, LayerNorm,
4x GELU MLP), learned token and position embeddings, a final LayerNorm and an output projection.
The attention is spelled out rather than taken from a fused kernel so that every framework runs
the same arithmetic.
"""

from __future__ import annotations

import numpy as np

from benchmarks.workloads import _train

SIZES = {
    "full": {"layers": 2, "dim": 256, "heads": 4, "seq": 128, "batch": 8, "vocab": 1024, "repeats": 10},
    "quick": {"layers": 1, "dim": 32, "heads": 4, "seq": 16, "batch": 2, "vocab": 64, "repeats": 3},
}
RTOL = 1e-4
LR, WD = 1e-3, 0.01


def make_data(params: dict, rng: np.random.Generator) -> dict:
    d, v, t = params["dim"], params["vocab"], params["seq"]

    def normal(*shape):
        return (0.02 * rng.standard_normal(shape)).astype(np.float32)

    data = {"embed.weight": normal(v, d), "pos_embed.weight": normal(t, d)}
    for i in range(params["layers"]):
        pre = f"layers.{i}."
        for ln in ("ln1", "ln2"):
            data[pre + ln + ".weight"] = np.ones(d, np.float32)
            data[pre + ln + ".bias"] = np.zeros(d, np.float32)
        data[pre + "qkv.weight"] = normal(3 * d, d)
        data[pre + "out.weight"] = normal(d, d)
        data[pre + "fc1.weight"], data[pre + "fc1.bias"] = normal(4 * d, d), np.zeros(4 * d, np.float32)
        data[pre + "fc2.weight"], data[pre + "fc2.bias"] = normal(d, 4 * d), np.zeros(d, np.float32)
    data["ln_f.weight"], data["ln_f.bias"] = np.ones(d, np.float32), np.zeros(d, np.float32)
    data["head.weight"] = normal(v, d)
    tokens = rng.integers(0, v, (params["batch"], t + 1)).astype(np.int32)
    data["_inputs"], data["_targets"] = tokens[:, :-1], tokens[:, 1:]
    data["_mask"] = np.triu(np.full((t, t), -1e9, np.float32), k=1)  # additive causal mask
    return data


def _split(data):
    flat = {k: v for k, v in data.items() if not k.startswith("_")}
    return flat, [data["_inputs"], data["_targets"]]


def _kw(params):
    return {"per": (1, "ms/step"), "rate": (params["batch"] * params["seq"], "tokens/s")}


def build_mlx(fw, data, params):
    mx, nn = fw.mx, fw.nn
    d, h, t = params["dim"], params["heads"], params["seq"]
    mask = mx.array(data["_mask"])

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.out = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
            self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def __call__(self, x):
            b = x.shape[0]
            qkv = self.qkv(self.ln1(x)).reshape(b, t, 3, h, d // h).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            att = mx.softmax(q @ k.swapaxes(-1, -2) * (d // h) ** -0.5 + mask, axis=-1)
            x = x + self.out((att @ v).transpose(0, 2, 1, 3).reshape(b, t, d))
            return x + self.fc2(nn.gelu(self.fc1(self.ln2(x))))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.pos_embed = nn.Embedding(params["vocab"], d), nn.Embedding(t, d)
            self.layers = [Block() for _ in range(params["layers"])]
            self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, params["vocab"], bias=False)

        def __call__(self, tokens):
            x = self.embed(tokens) + self.pos_embed(mx.arange(t))
            for layer in self.layers:
                x = layer(x)
            return self.head(self.ln_f(x))

    def loss_fn(model, x, y):
        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    flat, batch = _split(data)
    return _train.mlx_cases(fw, Model, loss_fn, flat, batch, LR, WD, **_kw(params))


def build_torch(fw, data, params):
    torch, nn = fw.torch, fw.torch.nn
    d, h, t = params["dim"], params["heads"], params["seq"]
    mask = fw.asarray(data["_mask"])

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.out = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
            self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            b = x.shape[0]
            q, k, v = self.qkv(self.ln1(x)).reshape(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
            att = torch.softmax(q @ k.transpose(-1, -2) * (d // h) ** -0.5 + mask, dim=-1)
            x = x + self.out((att @ v).transpose(1, 2).reshape(b, t, d))
            return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.pos_embed = nn.Embedding(params["vocab"], d), nn.Embedding(t, d)
            self.layers = nn.ModuleList(Block() for _ in range(params["layers"]))
            self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, params["vocab"], bias=False)

        def forward(self, tokens):
            x = self.embed(tokens) + self.pos_embed(torch.arange(t, device=tokens.device))
            for layer in self.layers:
                x = layer(x)
            return self.head(self.ln_f(x))

    def loss_fn(model, x, y):
        logits = model(x.long())
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.long().reshape(-1))

    flat, batch = _split(data)
    return _train.torch_cases(fw, Model, loss_fn, flat, batch, LR, WD, **_kw(params))


def build_jax(fw, data, params):
    jax, jnp = fw.jax, fw.jnp
    d, h, t = params["dim"], params["heads"], params["seq"]
    mask = fw.asarray(data["_mask"])

    def layer_norm(p, name, x):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / jnp.sqrt(var + 1e-5) * p[name + ".weight"] + p[name + ".bias"]

    def linear(p, name, x):
        y = x @ p[name + ".weight"].T
        return y + p[name + ".bias"] if name + ".bias" in p else y

    def loss_fn(p, tokens, targets):
        b = tokens.shape[0]
        x = p["embed.weight"][tokens] + p["pos_embed.weight"]
        for i in range(params["layers"]):
            pre = f"layers.{i}."
            q, k, v = linear(p, pre + "qkv", layer_norm(p, pre + "ln1", x)).reshape(
                b, t, 3, h, d // h).transpose(2, 0, 3, 1, 4)
            att = jax.nn.softmax(q @ k.swapaxes(-1, -2) * (d // h) ** -0.5 + mask, axis=-1)
            x = x + linear(p, pre + "out", (att @ v).transpose(0, 2, 1, 3).reshape(b, t, d))
            hidden = jax.nn.gelu(linear(p, pre + "fc1", layer_norm(p, pre + "ln2", x)), approximate=False)
            x = x + linear(p, pre + "fc2", hidden)
        logp = jax.nn.log_softmax(linear(p, "head", layer_norm(p, "ln_f", x)), axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))

    flat, batch = _split(data)
    return _train.jax_cases(fw, loss_fn, flat, batch, LR, WD, **_kw(params))
