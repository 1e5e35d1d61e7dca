"""A typical MLX MLP training script (MNIST-style: flattened images, 10 classes)."""
import argparse
import time

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from sklearn.datasets import load_digits


class MLP(nn.Module):
    def __init__(self, num_layers, input_dim, hidden_dim, output_dim):
        super().__init__()
        sizes = [input_dim] + [hidden_dim] * num_layers + [output_dim]
        self.layers = [nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:])]

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = nn.relu(layer(x))
        return self.layers[-1](x)


def loss_fn(model, X, y):
    return nn.losses.cross_entropy(model(X), y, reduction="mean")


def batch_iterate(batch_size, X, y):
    perm = mx.array(np.random.permutation(y.size))
    for s in range(0, y.size, batch_size):
        ids = perm[s: s + batch_size]
        yield X[ids], y[ids]


def main(args):
    np.random.seed(0)
    mx.random.seed(0)
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    train_X, test_X = mx.array(X[:1500]), mx.array(X[1500:])
    train_y, test_y = mx.array(y[:1500]), mx.array(y[1500:])
    model = MLP(2, 64, 128, 10)
    mx.eval(model.parameters())
    optimizer = optim.SGD(learning_rate=0.1, momentum=0.9)
    loss_and_grad_fn = nn.value_and_grad(model, loss_fn)

    def eval_fn(X, y):
        return mx.mean(mx.argmax(model(X), axis=1) == y)

    for epoch in range(args.epochs):
        tic = time.perf_counter()
        for X_b, y_b in batch_iterate(64, train_X, train_y):
            loss, grads = loss_and_grad_fn(model, X_b, y_b)
            optimizer.update(model, grads)
            mx.eval(model.parameters(), optimizer.state)
        accuracy = eval_fn(test_X, test_y)
        print(f"Epoch {epoch}: Test accuracy {accuracy.item():.3f}, Time {time.perf_counter() - tic:.3f} (s)")
    print(f"FINAL {accuracy.item():.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    main(parser.parse_args())
