"""Train a small CNN with BatchNorm on scikit-learn's 8x8 digits with kiln.

    python examples/digits_cnn.py [--epochs 5] [--batch-size 64] [--lr 3e-3]

The images are channels-last (``N, H, W, C``) as in MLX. Prints the final
test accuracy.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial

import numpy as np
from sklearn.datasets import load_digits
from tqdm import tqdm

# Run from a source checkout without installing: put the repository on the path.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import kiln.core as mx  # noqa: E402
import kiln.nn as nn  # noqa: E402
import kiln.optimizers as optim  # noqa: E402


class CNN(nn.Module):
    """Two conv-BatchNorm-ReLU-maxpool blocks and a linear classifier."""

    def __init__(self, channels: int = 16, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm(channels)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.bn2 = nn.BatchNorm(2 * channels)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(2 * 2 * 2 * channels, num_classes)

    def __call__(self, x):
        x = self.pool(nn.relu(self.bn1(self.conv1(x))))
        x = self.pool(nn.relu(self.bn2(self.conv2(x))))
        return self.head(x.reshape(x.shape[0], -1))


def load_data(seed: int):
    """Digits as ``[N, 8, 8, 1]`` images in [0, 1], split 80/20."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_train = int(0.8 * len(x))
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-compile", action="store_true", help="do not use mx.compile")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args()

    mx.random.seed(args.seed)
    x_train, y_train, x_test, y_test = load_data(args.seed)
    model = CNN(args.channels)
    optimizer = optim.AdamW(learning_rate=args.lr, weight_decay=1e-4)

    def loss_fn(model, x, y):
        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    loss_and_grad = nn.value_and_grad(model, loss_fn)
    # BatchNorm's running statistics are model state too, so they are captured.
    state = [model.state, optimizer.state]

    def step(x, y):
        loss, grads = loss_and_grad(model, x, y)
        optimizer.update(model, grads)
        return loss

    if hasattr(mx, "compile") and not args.no_compile:
        step = partial(mx.compile, inputs=state, outputs=state)(step)

    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    bar = tqdm(range(args.epochs), desc="train", unit="epoch", disable=args.quiet)
    for _ in bar:
        model.train()
        tic = time.perf_counter()
        total, count = 0.0, 0
        order = rng.permutation(len(x_train))
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            loss = step(mx.array(x_train[idx]), mx.array(y_train[idx]))
            mx.eval(state)
            total += loss.item() * len(idx)
            count += len(idx)
        rate = count / (time.perf_counter() - tic)
        bar.set_postfix(loss=f"{total / count:.4f}", samples_per_s=f"{rate:,.0f}")

    model.eval()
    logits = model(mx.array(x_test))
    accuracy = mx.mean(mx.argmax(logits, axis=1) == mx.array(y_test)).item()
    print(f"Final test accuracy: {accuracy * 100:.2f}% ({time.perf_counter() - start:.1f} s of training)")
    return accuracy


if __name__ == "__main__":
    main()
