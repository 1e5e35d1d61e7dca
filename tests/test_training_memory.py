"""A 2,000-step training loop keeps kiln's active memory and the process's
resident memory flat after warm-up, eager and compiled (a bounded-growth test)."""
from __future__ import annotations

import gc
import resource
from functools import partial

import numpy as np
import pytest

import kiln.core as mx
import kiln.nn as nn
import kiln.optimizers as optim


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


@pytest.mark.parametrize("compiled", [False, True])
def test_memory_flat_over_2000_steps(compiled):
    rng = np.random.default_rng(0)
    x = mx.array(rng.standard_normal((32, 16)).astype(np.float32))
    y = mx.array(rng.integers(0, 4, (32,)).astype(np.int32))
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = optim.Adam(learning_rate=1e-3)

    def loss_fn(m, a, b):
        return nn.losses.cross_entropy(m(a), b, reduction="mean")

    def step(a, b):
        loss, grads = nn.value_and_grad(model, loss_fn)(model, a, b)
        opt.update(model, grads)
        return loss

    if compiled:
        opt.init(model.trainable_parameters())
        state = [model.state, opt.state]
        step = partial(mx.compile, inputs=state, outputs=state)(step)
    samples = {}
    for i in range(2000):
        loss = step(x, y)
        mx.eval(loss, model.parameters(), opt.state)
        if i in (200, 1999):
            gc.collect()
            samples[i] = (mx.get_active_memory(), _rss_kb())
    (a0, r0), (a1, r1) = samples[200], samples[1999]
    assert a1 <= a0 + 4096, (a0, a1)  # kiln's buffers: no growth beyond noise
    assert r1 <= r0 + 8 * 1024, (r0, r1)  # process RSS: under 8 MB of drift
    assert loss.item() < 1.5
