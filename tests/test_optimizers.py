"""kiln.optimizers vs real MLX: several steps from the same parameters and
gradients, schedules, clipping, state save/load."""
from __future__ import annotations

import numpy as np
import pytest

import kiln.core as mx
import kiln.nn as nn
import kiln.optimizers as optim
from kiln.utils import tree_flatten, tree_map, tree_unflatten

try:
    import mlx.core as mlx_core
    import mlx.optimizers as mlx_optim
    from mlx.utils import tree_map as mlx_tree_map
except Exception:  # pragma: no cover
    mlx_core = mlx_optim = None

needs_mlx = pytest.mark.skipif(mlx_optim is None, reason="real MLX not installed")

SHAPES = {"w": (4, 3), "b": (3,), "layers": [{"k": (2, 2, 3)}, {"s": (5, 2)}]}

CONFIGS = [
    ("SGD", lambda o: o.SGD(0.1)),
    ("SGD_momentum", lambda o: o.SGD(0.1, momentum=0.9, weight_decay=0.01, dampening=0.1)),
    ("SGD_nesterov", lambda o: o.SGD(0.05, momentum=0.8, nesterov=True)),
    ("RMSprop", lambda o: o.RMSprop(0.01, alpha=0.9)),
    ("Adagrad", lambda o: o.Adagrad(0.1)),
    ("AdaDelta", lambda o: o.AdaDelta(0.5, rho=0.8)),
    ("Adam", lambda o: o.Adam(0.01)),
    ("Adam_bias_correction", lambda o: o.Adam(0.01, betas=[0.8, 0.99], bias_correction=True)),
    ("AdamW", lambda o: o.AdamW(0.01, weight_decay=0.1)),
    ("AdamW_bc", lambda o: o.AdamW(0.02, bias_correction=True)),
    ("Adamax", lambda o: o.Adamax(0.01)),
    ("Lion", lambda o: o.Lion(0.01, weight_decay=0.1)),
    ("Adafactor", lambda o: o.Adafactor()),
    ("Adafactor_lr_beta", lambda o: o.Adafactor(0.01, beta_1=0.9, relative_step=False, weight_decay=0.1)),
    ("Adafactor_warmup", lambda o: o.Adafactor(warmup_init=True, scale_parameter=False)),
    ("Muon", lambda o: o.Muon(0.02)),
    ("Muon_plain", lambda o: o.Muon(0.02, nesterov=False, weight_decay=0.0, ns_steps=3)),
    ("SGD_schedule", lambda o: o.SGD(o.cosine_decay(0.1, 3), momentum=0.5)),
    ("Adam_join", lambda o: o.Adam(o.join_schedules([o.linear_schedule(0, 0.1, 2),
                                                     o.exponential_decay(0.1, 0.5)], [2]))),
    ("Multi", lambda o: o.MultiOptimizer([o.SGD(0.1), o.Adam(0.01)],
                                         [lambda path, g: path.startswith("layers")])),
]


def _tree(rng, shapes):
    return tree_map(lambda s: rng.standard_normal(s).astype(np.float32), shapes,
                    is_leaf=lambda x: isinstance(x, tuple))


@needs_mlx
@pytest.mark.parametrize("name,make", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_optimizer_matches_mlx(name, make):
    rng = np.random.default_rng(0)
    params = _tree(rng, SHAPES)
    grads = [_tree(rng, SHAPES) for _ in range(4)]
    ours, theirs = make(optim), make(mlx_optim)
    p = tree_map(mx.array, params)
    q = mlx_tree_map(mlx_core.array, params)
    for g in grads:
        p = ours.apply_gradients(tree_map(mx.array, g), p)
        q = theirs.apply_gradients(mlx_tree_map(mlx_core.array, g), q)
        ref = dict(tree_flatten(q))
        got = dict(tree_flatten(p))
        assert sorted(got) == sorted(ref)
        for k in ref:
            np.testing.assert_allclose(np.array(got[k]), np.array(ref[k]), rtol=2e-4, atol=2e-5, err_msg=k)
    assert int(np.array(ours.state["step"] if name != "Multi" else ours.optimizers[0].step)) == 4


def test_sgd_by_hand():
    # One momentum step derived by hand: v = g, p' = p - lr * v.
    opt = optim.SGD(0.5, momentum=0.9)
    p = {"x": mx.array([1.0, 2.0])}
    p = opt.apply_gradients({"x": mx.array([0.2, -0.4])}, p)
    np.testing.assert_allclose(np.array(p["x"]), [0.9, 2.2], rtol=1e-6)
    p = opt.apply_gradients({"x": mx.array([0.2, -0.4])}, p)
    np.testing.assert_allclose(np.array(p["x"]), [0.9 - 0.5 * 0.38, 2.2 + 0.5 * 0.76], rtol=1e-6)


@pytest.mark.parametrize("name", ["step_decay", "exponential_decay", "cosine_decay",
                                  "linear_schedule", "join_schedules"])
def test_schedules(name):
    import math

    make = {
        "step_decay": (lambda o: o.step_decay(0.1, 0.5, 3), lambda s: 0.1 * 0.5 ** (s // 3)),
        "exponential_decay": (lambda o: o.exponential_decay(0.1, 0.9), lambda s: 0.1 * 0.9**s),
        "cosine_decay": (lambda o: o.cosine_decay(0.1, 5, 0.01),
                         lambda s: 0.01 + 0.5 * (1 + math.cos(math.pi * min(s, 5) / 5)) * 0.09),
        "linear_schedule": (lambda o: o.linear_schedule(0.0, 1.0, 4), lambda s: min(s, 4) / 4),
        "join_schedules": (lambda o: o.join_schedules([o.linear_schedule(0.0, 1.0, 2),
                                                       o.exponential_decay(1.0, 0.5)], [2]),
                           lambda s: s / 2 if s < 2 else 0.5 ** (s - 2)),
    }[name]
    sched = make[0](optim)
    for s in range(8):
        np.testing.assert_allclose(float(sched(mx.array(s))), make[1](s), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError):
        optim.linear_schedule(0, 1, 0)
    with pytest.raises(ValueError):
        optim.join_schedules([optim.exponential_decay(1, 1)], [3])


def test_schedule_sets_learning_rate():
    opt = optim.SGD(optim.exponential_decay(1.0, 0.5))
    p = {"x": mx.zeros((2,))}
    for step in range(3):
        p = opt.apply_gradients({"x": mx.ones((2,))}, p)
        assert abs(float(opt.learning_rate) - 0.5**step) < 1e-7
    opt.learning_rate = 0.25
    assert float(opt.learning_rate) == 0.25


def test_clip_grad_norm():
    grads = {"a": mx.array([3.0, 0.0]), "b": [mx.array([[4.0]])]}
    clipped, norm = optim.clip_grad_norm(grads, 1.0)
    assert abs(float(norm) - 5.0) < 1e-6
    np.testing.assert_allclose(np.array(clipped["a"]), [0.6, 0.0], rtol=1e-5)
    same, _ = optim.clip_grad_norm(grads, 10.0)
    np.testing.assert_allclose(np.array(same["b"][0]), [[4.0]])


def test_errors():
    with pytest.raises(ValueError):
        optim.SGD(0.1, nesterov=True)
    with pytest.raises(ValueError):
        optim.MultiOptimizer([optim.SGD(0.1), optim.SGD(0.1)], [])


def test_state_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    params = tree_map(mx.array, _tree(rng, SHAPES))
    opt = optim.Adam(0.01)
    g = tree_map(mx.array, _tree(rng, SHAPES))
    params = opt.apply_gradients(g, params)
    path = str(tmp_path / "opt.safetensors")
    mx.save_safetensors(path, dict(tree_flatten(opt.state)))
    opt2 = optim.Adam(0.01)
    opt2.state = tree_unflatten(list(mx.load(path).items()))
    a = opt.apply_gradients(g, params)
    b = opt2.apply_gradients(g, params)
    for (k, x), (_, y) in zip(tree_flatten(a), tree_flatten(b)):
        np.testing.assert_allclose(np.array(x), np.array(y), rtol=1e-6, err_msg=k)


def test_optimizer_update_model():
    model = nn.Linear(3, 1)
    opt = optim.SGD(0.1)
    x = mx.array(np.random.default_rng(2).standard_normal((8, 3)).astype(np.float32))
    y = mx.sum(x, axis=1, keepdims=True)

    def loss_fn():
        return nn.losses.mse_loss(model(x), y)

    step = nn.value_and_grad(model, loss_fn)
    first, _ = step()
    for _ in range(20):
        loss, grads = step()
        opt.update(model, grads)
    assert float(loss_fn()) < 0.5 * float(first)
