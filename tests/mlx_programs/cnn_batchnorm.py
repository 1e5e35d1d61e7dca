"""A typical MLX CNN with BatchNorm, trained with a compiled step capturing state."""
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from sklearn.datasets import load_digits


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm(16)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm(32)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc = nn.Linear(32 * 2 * 2, 10)

    def __call__(self, x):
        x = self.pool(nn.relu(self.bn1(self.conv1(x))))
        x = self.pool(nn.relu(self.bn2(self.conv2(x))))
        return self.fc(x.reshape(x.shape[0], -1))


def main():
    np.random.seed(0)
    mx.random.seed(0)
    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)[..., None]  # NHWC
    y = d.target.astype(np.int32)
    Xtr, ytr, Xte, yte = mx.array(X[:1400]), mx.array(y[:1400]), mx.array(X[1400:]), mx.array(y[1400:])
    model = CNN()
    optimizer = optim.Adam(learning_rate=3e-3)

    def loss_fn(model, x, y):
        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y):
        loss, grads = nn.value_and_grad(model, loss_fn)(model, x, y)
        optimizer.update(model, grads)
        return loss

    losses = []
    for epoch in range(3):
        model.train()
        perm = np.random.permutation(1400)
        for s in range(0, 1400, 100):
            ids = mx.array(perm[s: s + 100])
            loss = step(Xtr[ids], ytr[ids])
            mx.eval(state)
            losses.append(loss.item())
    model.eval()
    acc = mx.mean(mx.argmax(model(Xte), axis=1) == yte).item()
    print(f"FIRST {losses[0]:.4f} LAST {losses[-1]:.4f} ACC {acc:.4f}")


if __name__ == "__main__":
    main()
