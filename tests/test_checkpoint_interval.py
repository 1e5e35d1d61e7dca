"""``mx.checkpoint(fun, interval=k)``: gradients, recomputation counts, peak memory, composition.

The reference for every gradient is the same function without checkpointing (and a NumPy
finite-difference-free check is not needed: the plain gradients are themselves checked against
NumPy and MLX elsewhere).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import kiln.core as mx
import kiln.nn as nn
from kiln.primitives import unary as _unary
from kiln.transforms import _checkpoint_module as ck
from kiln.utils import tree_flatten

RTOL, ATOL = 2e-5, 2e-6


class Dense(nn.Module):
    """tanh(x @ w): one layer of the MLP."""

    def __init__(self, w):
        super().__init__()
        self.w = w

    def __call__(self, x):
        return mx.tanh(x @ self.w)


class TwoInput(nn.Module):
    """A layer of several inputs: the running value, the model input and a mask."""

    def __init__(self, d, rng):
        super().__init__()
        self.a = mx.array((rng.standard_normal((d, d)) / math.sqrt(d)).astype(np.float32))
        self.b = mx.array((rng.standard_normal((d, d)) / math.sqrt(d)).astype(np.float32))

    def __call__(self, x, x0, mask):
        return mx.tanh(x @ self.a + (x0 * mask) @ self.b) + 0.5 * x


def mlp(n=32, d=16, seed=0):
    rng = np.random.default_rng(seed)
    m = nn.Module()
    m.layers = [Dense(mx.array((rng.standard_normal((d, d)) / math.sqrt(d)).astype(np.float32))) for _ in range(n)]
    x = mx.array(rng.standard_normal((8, d)).astype(np.float32))

    def forward(model, x):
        for layer in model.layers:
            x = layer(x)
        return x

    return m, forward, (x,)


def transformer(n=4, d=16, seed=1):
    rng = np.random.default_rng(seed)
    mx.random.seed(seed)
    m = nn.Module()
    m.layers = [nn.TransformerEncoderLayer(d, 2, 32) for _ in range(n)]
    m.norm = nn.LayerNorm(d)
    x = mx.array(rng.standard_normal((2, 5, d)).astype(np.float32))

    def forward(model, x):
        mask = nn.MultiHeadAttention.create_additive_causal_mask(x.shape[1])
        for layer in model.layers:
            x = layer(x, mask)
        return model.norm(x)

    return m, forward, (x,)


def multi_input(n=8, d=12, seed=2):
    rng = np.random.default_rng(seed)
    m = nn.Module()
    m.layers = [TwoInput(d, rng) for _ in range(n)]
    x = mx.array(rng.standard_normal((6, d)).astype(np.float32))
    mask = mx.array((rng.random((6, d)) > 0.3).astype(np.float32))

    def forward(model, x, mask):
        h = x
        for layer in model.layers:
            h = layer(h, x, mask)
        return h

    return m, forward, (x, mask)


MODELS = {"mlp32": mlp, "transformer": transformer, "multi_input": multi_input}
INTERVALS = [1, 2, 4, 7, 32]


def _loss_fn(model, forward):
    def loss(*inputs):
        return (forward(model, *inputs) ** 2).mean()

    return loss


def _grads(model, forward, inputs):
    loss, g = nn.value_and_grad(model, _loss_fn(model, forward))(*inputs)
    mx.eval(loss, g)
    return float(loss.item()), [np.array(v) for _, v in tree_flatten(g)]


def _assert_close(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("interval", INTERVALS)
def test_gradients_match_no_checkpoint(name, interval):
    model, forward, inputs = MODELS[name]()
    want_loss, want = _grads(model, forward, inputs)
    before = ck.stats["recomputed"]
    got_loss, got = _grads(model, mx.checkpoint(forward, interval=interval), inputs)
    assert got_loss == pytest.approx(want_loss, rel=1e-6)
    _assert_close(got, want)
    # One recomputed segment per kept boundary, plus the tail after the last one.
    calls = len(model.layers) + (1 if name == "transformer" else 0)
    assert ck.stats["recomputed"] - before == math.ceil(calls / interval)


def test_each_layer_recomputed_exactly_once(monkeypatch):
    model, forward, inputs = mlp(n=32)
    counts = {"tanh": 0}
    original = _unary.Tanh.eval

    def counting(self, xp, x):
        counts["tanh"] += 1
        return original(self, xp, x)

    monkeypatch.setattr(_unary.Tanh, "eval", counting)
    _grads(model, forward, inputs)
    plain = counts["tanh"]
    assert plain == 32
    for interval in (1, 4, 7, 32):
        counts["tanh"] = 0
        _grads(model, mx.checkpoint(forward, interval=interval), inputs)
        assert counts["tanh"] == 2 * plain, interval


def test_without_module_calls_behaves_as_whole_function():
    rng = np.random.default_rng(3)
    ws = [mx.array((rng.standard_normal((8, 8)) / 3).astype(np.float32)) for _ in range(6)]
    x = mx.array(rng.standard_normal((4, 8)).astype(np.float32))

    def f(ws, x):
        for w in ws:
            x = mx.tanh(x @ w)
        return (x * x).sum()

    want = [np.array(g) for g in mx.grad(f)(ws, x)]
    before = ck.stats["recomputed"]
    got_every = mx.grad(mx.checkpoint(f, interval=3))(ws, x)
    got_whole = mx.grad(mx.checkpoint(f))(ws, x)
    _assert_close([np.array(g) for g in got_every], want)
    _assert_close([np.array(g) for g in got_whole], want)
    assert ck.stats["recomputed"] - before == 1


@pytest.mark.parametrize("bad", [0, -2, 2.5, "4", True, [4]])
def test_invalid_interval(bad):
    with pytest.raises(ValueError, match=r"\[checkpoint\] interval"):
        mx.checkpoint(lambda x: x, interval=bad)


# ------------------------------------------------------------------ composition
def _params_fn(model, forward):
    """A function of (parameters, inputs) for the plain transforms."""
    def f(params, *inputs):
        model.update(params)
        return (forward(model, *inputs) ** 2).mean()

    return f


@pytest.mark.parametrize("interval", [2, 4])
def test_grad_value_and_grad_vjp_jvp(interval):
    model, forward, (x,) = mlp(n=8)
    params = model.trainable_parameters()
    plain = _params_fn(model, forward)
    ckpt = _params_fn(model, mx.checkpoint(forward, interval=interval))
    flat = lambda t: [np.array(v) for _, v in tree_flatten(t)]  # noqa: E731
    _assert_close(flat(mx.grad(ckpt)(params, x)), flat(mx.grad(plain)(params, x)))
    (v1, g1), (v0, g0) = mx.value_and_grad(ckpt)(params, x), mx.value_and_grad(plain)(params, x)
    assert v1.item() == pytest.approx(v0.item(), rel=1e-6)
    _assert_close(flat(g1), flat(g0))
    # vjp and jvp with respect to the input.
    f0 = lambda x: forward(model, x)  # noqa: E731
    f1 = lambda x: mx.checkpoint(forward, interval=interval)(model, x)  # noqa: E731
    c = mx.ones((8, 16))
    _assert_close([np.array(mx.vjp(f1, [x], [c])[1][0])], [np.array(mx.vjp(f0, [x], [c])[1][0])])
    t = mx.full(x.shape, 0.5)
    o1, t1 = mx.jvp(f1, [x], [t])
    o0, t0 = mx.jvp(f0, [x], [t])
    _assert_close([np.array(o1[0]), np.array(t1[0])], [np.array(o0[0]), np.array(t0[0])])


def test_second_order():
    model, forward, (x,) = mlp(n=6)
    f0 = lambda x: (forward(model, x) ** 2).sum()  # noqa: E731
    f1 = lambda x: (mx.checkpoint(forward, interval=2)(model, x) ** 2).sum()  # noqa: E731
    h0 = mx.grad(lambda x: mx.grad(f0)(x).sum())(x)
    h1 = mx.grad(lambda x: mx.grad(f1)(x).sum())(x)
    _assert_close([np.array(h1)], [np.array(h0)])


def test_vmap_per_example_gradients():
    model, forward, (x,) = mlp(n=8)
    params = model.trainable_parameters()

    def per_example(fwd):
        def loss(params, xi):
            model.update(params)
            return (fwd(model, xi[None]) ** 2).mean()

        return mx.vmap(mx.grad(loss), in_axes=(None, 0))(params, x)

    want = per_example(forward)
    got = per_example(mx.checkpoint(forward, interval=4))
    _assert_close([np.array(v) for _, v in tree_flatten(got)], [np.array(v) for _, v in tree_flatten(want)])
    # Against a Python loop over the examples.
    for i in (0, 5):
        gi = mx.grad(_params_fn(model, mx.checkpoint(forward, interval=4)))(params, x[i:i + 1])
        np.testing.assert_allclose(np.array(got["layers"][3]["w"][i]), np.array(gi["layers"][3]["w"]),
                                   rtol=RTOL, atol=ATOL)


def test_compile():
    model, forward, (x,) = mlp(n=8)
    params = model.trainable_parameters()
    step = mx.compile(mx.grad(_params_fn(model, mx.checkpoint(forward, interval=4))))
    want = mx.grad(_params_fn(model, forward))(params, x)
    for _ in range(2):  # the traced call and a cached one
        got = step(params, x)
        _assert_close([np.array(v) for _, v in tree_flatten(got)], [np.array(v) for _, v in tree_flatten(want)])


def test_nested_checkpoints():
    rng = np.random.default_rng(4)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = nn.Linear(8, 8)
            self.l2 = nn.Linear(8, 8)

        def __call__(self, x):
            inner = mx.checkpoint(lambda p, x: mx.tanh(x @ p["weight"].T + p["bias"]))
            h = inner(self.l1.parameters(), x)
            return mx.checkpoint(lambda x: self.l2(mx.tanh(x)), interval=1)(h)

    mx.random.seed(0)
    model = nn.Module()
    model.layers = [Block() for _ in range(6)]
    x = mx.array(rng.standard_normal((3, 8)).astype(np.float32))

    def forward(model, x):
        for layer in model.layers:
            x = layer(x)
        return x

    _, want = _grads(model, forward, (x,))
    _, got = _grads(model, mx.checkpoint(forward, interval=2), (x,))
    _assert_close(got, want)


def test_nn_utils_checkpoint_still_works():
    model, forward, (x,) = mlp(n=4)
    _, want = _grads(model, forward, (x,))
    layer_ck = [nn.utils.checkpoint(layer) for layer in model.layers]

    def forward_ck(model, x):
        for f in layer_ck:
            x = f(x)
        return x

    _, got = _grads(model, forward_ck, (x,))
    _assert_close(got, want)


def test_closure_parameters_get_gradients():
    model, forward, (x,) = mlp(n=8)
    ckpt = mx.checkpoint(lambda x: forward(model, x), interval=4)
    _, want = _grads(model, forward, (x,))
    _, got = _grads(model, lambda _m, x: ckpt(x), (x,))
    _assert_close(got, want)


def test_forward_value_unchanged_outside_transforms():
    model, forward, (x, mask) = multi_input()
    np.testing.assert_allclose(np.array(mx.checkpoint(forward, interval=3)(model, x, mask)),
                               np.array(forward(model, x, mask)), rtol=1e-6)


# ------------------------------------------------------------------ peak memory
def _peak(model, forward, inputs):
    _grads(model, forward, inputs)  # warm-up
    mx.synchronize()
    before = mx.get_active_memory()
    mx.reset_peak_memory()
    loss, g = nn.value_and_grad(model, _loss_fn(model, forward))(*inputs)
    mx.eval(loss, g)
    peak = mx.get_peak_memory() - before
    del loss, g
    return peak


def test_peak_memory_falls_as_the_analysis_says():
    n, d, batch = 32, 64, 256
    model, forward, _ = mlp(n=n, d=d)
    x = mx.array(np.random.default_rng(5).standard_normal((batch, d)).astype(np.float32))
    act = batch * d * 4  # one layer's activation
    grads = n * d * d * 4  # the gradients themselves are live at the end
    none = _peak(model, forward, (x,))
    assert none >= n * act  # every activation is held without checkpointing
    peaks = {k: _peak(model, mx.checkpoint(forward, interval=k), (x,)) for k in (2, 4, 8)}
    for k, p in peaks.items():
        # The kept boundaries (n / k), one recomputed segment (k) and a few working buffers.
        assert p - grads <= (n / k + k + 4) * act, (k, p / act)
    # Compared beyond the gradients (live in both): main's evaluation frees intermediates as it
    # goes, so the unchecked peak is the analysis's n activations plus the gradients.
    assert peaks[4] - grads <= 0.4 * (none - grads)
    assert peaks[4] < peaks[2]


def test_compiled_gradient_keeps_the_savings():
    """Under compile the plan frees as eager eval does (its buffers are seen by tracemalloc)."""
    import tracemalloc

    n, d, batch = 32, 64, 256
    model, forward, _ = mlp(n=n, d=d)
    x = mx.array(np.random.default_rng(6).standard_normal((batch, d)).astype(np.float32))
    params = model.trainable_parameters()

    def traced_peak(fwd):
        step = mx.compile(mx.grad(_params_fn(model, fwd)))
        mx.eval(step(params, x))
        tracemalloc.start()
        try:
            mx.eval(step(params, x))
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    none = traced_peak(forward)
    every4 = traced_peak(mx.checkpoint(forward, interval=4))
    assert none >= n * batch * d * 4  # the plan holds every activation without checkpointing
    assert every4 <= 0.5 * none


def test_dropout_masks_are_replayed_not_redrawn():
    """Recomputation replays the forward graph, random keys included, so masks match."""
    model, forward, (x,) = mlp(n=8)
    drop = nn.Dropout(0.3)

    def forward_drop(model, x):
        for layer in model.layers:
            x = drop(layer(x))
        return x

    mx.random.seed(11)
    _, want = _grads(model, forward_drop, (x,))
    mx.random.seed(11)
    _, got = _grads(model, mx.checkpoint(forward_drop, interval=3), (x,))
    _assert_close(got, want)


def test_jvp_recomputes_nothing(monkeypatch):
    model, forward, (x,) = mlp(n=8)
    counts = {"tanh": 0}
    original = _unary.Tanh.eval

    def counting(self, xp, x):
        counts["tanh"] += 1
        return original(self, xp, x)

    monkeypatch.setattr(_unary.Tanh, "eval", counting)
    t = mx.full(x.shape, 0.25)
    results = []
    for fwd in (forward, mx.checkpoint(forward, interval=2)):
        counts["tanh"] = 0
        out, tan = mx.jvp(lambda x: fwd(model, x), [x], [t])
        mx.eval(out, tan)
        results.append((counts["tanh"], np.array(out[0]), np.array(tan[0])))
    (n0, o0, t0), (n1, o1, t1) = results
    assert n1 == n0 == 8
    _assert_close([o1, t1], [o0, t0])
