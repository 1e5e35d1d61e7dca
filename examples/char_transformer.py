"""Train a small character-level transformer language model on Python
standard-library source code with kiln, then print a sample.

    python examples/char_transformer.py [--steps 1200] [--context 48]

The model is a token embedding, a stack of causal pre-norm transformer
layers with rotary position encoding, and a linear head; training uses
AdamW with a warm-up then cosine-decay schedule, all in one compiled step.
This is the README's main job (``bash scripts/train.sh``): it prints the
device, the kernels compiled functions use, the compile time, a progress bar
with loss and tokens/s, the validation loss and a generated sample.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from functools import partial

import numpy as np
from tqdm import tqdm

# Run from a source checkout without installing: put the repository on the path.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import kiln.core as mx  # noqa: E402
import kiln.nn as nn  # noqa: E402
import kiln.optimizers as optim  # noqa: E402

STDLIB_FILES = ["functools.py", "textwrap.py", "string.py", "bisect.py", "heapq.py",
                "fnmatch.py", "shlex.py", "copy.py", "keyword.py", "colorsys.py"]


def load_text(max_chars: int) -> str:
    """Concatenate a few standard-library modules' source."""
    root = os.path.dirname(os.__file__)
    parts = []
    for name in STDLIB_FILES:
        path = os.path.join(root, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                parts.append(f.read())
    return "\n".join(parts)[:max_chars]


class Attention(nn.Module):
    """Causal multi-head self-attention with rotary positions."""

    def __init__(self, dims: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dims, 3 * dims, bias=False)
        self.out = nn.Linear(dims, dims, bias=False)
        self.rope = nn.RoPE(dims // num_heads)

    def __call__(self, x, mask, b, length):
        d = x.shape[-1]
        q, k, v = mx.split(self.qkv(x), 3, axis=-1)

        def heads(t):
            return t.reshape(b, length, self.num_heads, -1).transpose(0, 2, 1, 3)

        q, k, v = heads(q), heads(k), heads(v)
        q, k = self.rope(q), self.rope(k)
        scores = (q * (q.shape[-1] ** -0.5)) @ k.transpose(0, 1, 3, 2) + mask
        y = mx.softmax(scores, axis=-1) @ v
        return self.out(y.transpose(0, 2, 1, 3).reshape(b * length, d))


class Block(nn.Module):
    """Pre-norm attention and MLP with residual connections."""

    def __init__(self, dims: int, num_heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dims)
        self.attn = Attention(dims, num_heads)
        self.ln2 = nn.LayerNorm(dims)
        self.mlp = nn.Sequential(nn.Linear(dims, 4 * dims), nn.GELU(approx="tanh"), nn.Linear(4 * dims, dims))

    def __call__(self, x, mask, b, length):
        x = x + self.attn(self.ln1(x), mask, b, length)
        return x + self.mlp(self.ln2(x))


class CharLM(nn.Module):
    """Embedding, transformer blocks, final norm and a tied output layer."""

    def __init__(self, vocab: int, dims: int, num_heads: int, num_layers: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, dims)
        self.blocks = [Block(dims, num_heads) for _ in range(num_layers)]
        self.ln = nn.LayerNorm(dims)

    def __call__(self, tokens):
        b, length = tokens.shape
        mask = nn.MultiHeadAttention.create_additive_causal_mask(length)
        # Activations are kept as [batch * length, dims] between the blocks so
        # every linear layer is one plain 2-D matrix product.
        x = self.embed(tokens).reshape(b * length, -1)
        for block in self.blocks:
            x = block(x, mask, b, length)
        return self.embed.as_linear(self.ln(x)).reshape(b, length, -1)


def describe_device() -> str:
    """The device kiln runs on by default (the GPU when CuPy sees one), with its name."""
    dev = mx.default_device()
    try:
        name = mx.device_info(dev).get("device_name", "")
    except Exception:  # a device that cannot describe itself is still usable
        name = ""
    return f"{dev}" + (f" ({name})" if name else "")


def describe_kernels() -> str:
    """Which kernels ``mx.compile`` uses here (fused or not), as ``python -m kiln.info`` says."""
    try:
        from kiln.info import describe_kernels as describe
    except ImportError:  # kiln.run maps mlx to kiln; on real MLX there is no kiln.info
        return "compile on"
    return describe()


def fused_kernels_built() -> int:
    """Fused kernels kiln has built so far in this process (0 where it cannot say)."""
    try:
        from kiln.info import fused_kernels_built as count
    except ImportError:
        return 0
    return count()


def sample(model, prompt_ids, length, context, temperature, itos):
    """Generate ``length`` characters after ``prompt_ids``."""
    ids = list(prompt_ids)
    for _ in range(length):
        window = mx.array([ids[-context:]])
        logits = model(window)[:, -1, :]
        nxt = mx.random.categorical(logits * (1 / temperature))
        ids.append(nxt.item())
    return "".join(itos[i] for i in ids)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--context", type=int, default=48)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--max-chars", type=int, default=200_000)
    parser.add_argument("--sample-length", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-batches", type=int, default=4, help="batches in the validation loss")
    parser.add_argument("--no-compile", action="store_true", help="do not use mx.compile")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args()

    mx.random.seed(args.seed)
    text = load_text(args.max_chars)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in text], dtype=np.int32)
    # The text is cut into 50 chunks and every tenth is held out, so the
    # validation text comes from all the modules, not the last one or two.
    chunk = np.arange(len(data)) // max(2 * args.context, len(data) // 50)
    train, valid = data[chunk % 10 != 9], data[chunk % 10 == 9]
    print(f"{len(text):,} characters of stdlib source, vocabulary of {len(chars)}")
    print(f"device: {describe_device()}")
    compiled = hasattr(mx, "compile") and not args.no_compile
    print(f"kernels: {describe_kernels() if compiled else 'not compiled (--no-compile): eager ops'}")

    model = CharLM(len(chars), args.dims, args.heads, args.layers)
    warmup = max(1, args.steps // 10)
    schedule = optim.join_schedules(
        [optim.linear_schedule(args.lr / 10, args.lr, warmup),
         optim.cosine_decay(args.lr, args.steps - warmup, end=args.lr / 10)], [warmup])
    optimizer = optim.AdamW(learning_rate=schedule, weight_decay=0.01)

    def loss_fn(model, x, y):
        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    loss_and_grad = nn.value_and_grad(model, loss_fn)
    state = [model.state, optimizer.state]

    def step(x, y):
        loss, grads = loss_and_grad(model, x, y)
        grads, _ = optim.clip_grad_norm(grads, 1.0)
        optimizer.update(model, grads)
        return loss

    if compiled:
        step = partial(mx.compile, inputs=state, outputs=state)(step)

    rng = np.random.default_rng(args.seed)

    def batch(source):
        starts = rng.integers(0, len(source) - args.context - 1, args.batch_size)
        x = np.stack([source[s:s + args.context] for s in starts])
        y = np.stack([source[s + 1:s + args.context + 1] for s in starts])
        return mx.array(x), mx.array(y)

    def valid_loss():
        # The same held-out windows every time, several batches' worth, so the
        # two numbers printed are comparable and not one batch's noise.
        vrng = np.random.default_rng(1)
        starts = vrng.integers(0, len(valid) - args.context - 1, args.eval_batches * args.batch_size)
        x = mx.array(np.stack([valid[s:s + args.context] for s in starts]))
        y = mx.array(np.stack([valid[s + 1:s + args.context + 1] for s in starts]))
        return loss_fn(model, x, y).item()

    first = valid_loss()
    print(f"initial validation loss {first:.3f} (uniform would be {math.log(len(chars)):.3f})")
    built = fused_kernels_built()
    tic = time.perf_counter()
    # The first call of a compiled step traces and plans it; time it apart
    # from the steady-state steps so the tokens/s shown is the real rate.
    loss = step(*batch(train))
    mx.eval(state)
    first_step = time.perf_counter() - tic
    built = fused_kernels_built() - built
    bar = tqdm(range(1, args.steps), desc="train", unit="step", disable=args.quiet)
    t_steady = time.perf_counter()
    for i in bar:
        loss = step(*batch(train))
        mx.eval(state)
        if i % 10 == 0 or i == args.steps - 1:
            rate = i * args.batch_size * args.context / (time.perf_counter() - t_steady)
            bar.set_postfix(loss=f"{loss.item():.3f}", tokens_per_s=f"{rate:,.0f}")
    bar.close()
    per_step = (time.perf_counter() - t_steady) / max(1, args.steps - 1)
    if compiled:
        # Tracing and planning happen in the first call: what it took beyond a normal step.
        print(f"compile: {max(0.0, first_step - per_step):.2f} s, {built} fused kernels built "
              f"(first step {first_step:.2f} s, then {per_step * 1000:.1f} ms per step)")
    last = valid_loss()
    print(f"final validation loss {last:.3f} after {args.steps} steps "
          f"({time.perf_counter() - tic:.1f} s, "
          f"{args.batch_size * args.context / per_step:,.0f} tokens/s)")
    prompt = [stoi[c] for c in "def "]
    print("sample:\n" + sample(model, prompt, args.sample_length, args.context, args.temperature,
                               chars))
    return first, last


if __name__ == "__main__":
    main()
