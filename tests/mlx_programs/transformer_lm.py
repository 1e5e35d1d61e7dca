"""A typical small MLX transformer language model on characters."""
import math
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

TEXT = (
    "the quick brown fox jumps over the lazy dog. a stitch in time saves nine. "
    "all that glitters is not gold. the early bird catches the worm. "
) * 20


class TransformerLM(nn.Module):
    def __init__(self, vocab_size, num_layers, dims, num_heads):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dims)
        self.pe = nn.SinusoidalPositionalEncoding(dims)
        self.transformer = nn.TransformerEncoder(num_layers, dims, num_heads, norm_first=True)
        self.out_proj = nn.Linear(dims, vocab_size)

    def __call__(self, x):
        L = x.shape[1]
        mask = nn.MultiHeadAttention.create_additive_causal_mask(L)
        x = self.embedding(x)
        x = x + self.pe(mx.arange(L))
        x = self.transformer(x, mask)
        return self.out_proj(x)


def main():
    np.random.seed(0)
    mx.random.seed(0)
    chars = sorted(set(TEXT))
    data = np.array([chars.index(c) for c in TEXT], dtype=np.int32)
    ctx, bs = 32, 16
    model = TransformerLM(len(chars), 2, 64, 4)
    mx.eval(model.parameters())
    nparams = sum(v.size for _, v in __import__("mlx.utils", fromlist=["tree_flatten"]).tree_flatten(model.parameters()))
    optimizer = optim.AdamW(learning_rate=optim.cosine_decay(3e-3, 150), weight_decay=0.0)

    def loss_fn(model, x, y):
        logits = model(x)
        return nn.losses.cross_entropy(logits, y, reduction="mean")

    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y):
        loss, grads = nn.value_and_grad(model, loss_fn)(model, x, y)
        grads, _ = optim.clip_grad_norm(grads, 1.0)
        optimizer.update(model, grads)
        return loss

    losses = []
    for it in range(150):
        starts = np.random.randint(0, len(data) - ctx - 1, bs)
        x = mx.array(np.stack([data[s: s + ctx] for s in starts]))
        y = mx.array(np.stack([data[s + 1: s + ctx + 1] for s in starts]))
        loss = step(x, y)
        mx.eval(state)
        losses.append(loss.item())
    print(f"PARAMS {nparams} FIRST {np.mean(losses[:5]):.4f} LAST {np.mean(losses[-5:]):.4f} "
          f"UNIFORM {math.log(len(chars)):.4f}")


if __name__ == "__main__":
    main()
