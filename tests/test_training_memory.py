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


_SIBLING_CYCLE = pytest.mark.xfail(
    reason="an unevaluated multi-output node (here the forward custom_function node that grad never "
    "needs) holds its siblings in a cycle; Python's cyclic GC frees it, not refcounting", strict=True)


@pytest.mark.parametrize("kind", ["compile", "grad", "vmap", "jvp", "nn_step",
                                  pytest.param("custom", marks=_SIBLING_CYCLE),
                                  pytest.param("checkpoint", marks=_SIBLING_CYCLE)])
def test_no_reference_cycles_keep_results_alive(kind):
    # Results must be freed by reference counting alone: a cycle (e.g. a
    # self-referencing closure holding the outputs) keeps buffers alive until
    # the garbage collector happens to run, which inflates memory and time.
    x = mx.array(np.random.default_rng(0).standard_normal(1 << 16).astype(np.float32))
    model = nn.Linear(16, 4)
    opt = optim.SGD(learning_rate=0.1)
    ck = mx.checkpoint(lambda a: mx.sin(a) * 2)
    cf = mx.custom_function(lambda a: mx.exp(a))
    fns = {
        "compile": mx.compile(lambda a: mx.exp(a) * 2),
        "grad": mx.grad(lambda a: mx.sum(mx.exp(a))),
        "vmap": mx.vmap(lambda a: a * 2),
        "jvp": lambda a: mx.jvp(mx.sin, [a], [a])[1][0],
        "custom": lambda a: mx.grad(lambda b: mx.sum(cf(b)))(a),
        "checkpoint": lambda a: mx.grad(lambda b: mx.sum(ck(b)))(a),
    }

    def nn_step(a):
        xb = mx.reshape(a[:64], (4, 16))
        loss, g = nn.value_and_grad(model, lambda m, v: mx.sum(m(v) ** 2))(model, xb)
        opt.update(model, g)
        return loss

    fns["nn_step"] = nn_step
    fn = fns[kind]
    gc.collect()
    gc.disable()
    try:
        y = fn(x)
        mx.eval(y, model.parameters(), opt.state)
        base = mx.get_active_memory()
        for _ in range(20):
            y = fn(x)
            mx.eval(y, model.parameters(), opt.state)
        grown = mx.get_active_memory() - base
    finally:
        gc.enable()
    assert grown <= 4096, grown
