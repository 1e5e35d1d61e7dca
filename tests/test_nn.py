"""kiln.nn layers vs real MLX (same weights copied across) and NumPy.

Each case builds the same layer in ``kiln.nn`` and ``mlx.nn``, copies the
MLX weights into the kiln layer with ``load_weights``, and compares the
outputs (and, once ``mx.grad`` exists, the parameter gradients).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import pytest

import kiln.core as mx
import kiln.nn as nn
from kiln.utils import tree_flatten

try:
    import mlx.core as mlx_core
    import mlx.nn as mlx_nn
    from mlx.utils import tree_flatten as mlx_tree_flatten
except Exception:  # pragma: no cover
    mlx_core = mlx_nn = None

needs_mlx = pytest.mark.skipif(mlx_nn is None, reason="real MLX not installed")


@dataclasses.dataclass
class LayerCase:
    """One layer: ``make(nn_module)`` builds it in either library;
    ``call(layer, m, *xs)`` runs it; ``inputs(rng)`` gives NumPy inputs."""

    name: str
    make: Callable
    inputs: Callable
    call: Callable = lambda layer, m, *xs: layer(*xs)
    train: bool = True
    rtol: float = 1e-4
    atol: float = 1e-5
    grad: bool = True

    def __repr__(self):
        return self.name


def _f(*shape):
    return lambda rng: [rng.standard_normal(shape).astype(np.float32)]


def _ints(high, *shape):
    return lambda rng: [rng.integers(0, high, shape).astype(np.int32)]


def _first(out):
    return out[0] if isinstance(out, tuple) else out


ACTS = ["relu", "relu6", "relu2", "leaky_relu", "elu", "celu", "selu", "gelu", "gelu_approx",
        "gelu_fast_approx", "silu", "mish", "sigmoid", "log_sigmoid", "softplus", "softsign",
        "softshrink", "hard_shrink", "hard_tanh", "hardswish", "tanh", "softmax",
        "log_softmax", "softmin", "glu"]

ACT_LAYERS = [("ReLU", ()), ("ReLU6", ()), ("ReLU2", ()), ("LeakyReLU", (0.2,)), ("ELU", (0.5,)),
              ("CELU", (1.5,)), ("SELU", ()), ("GELU", ()), ("GELU", ("precise",)),
              ("GELU", ("fast",)), ("SiLU", ()), ("Mish", ()), ("PReLU", ()), ("GLU", ()),
              ("Sigmoid", ()), ("LogSigmoid", ()), ("Softplus", ()), ("Softsign", ()),
              ("Softshrink", (0.3,)), ("HardShrink", ()), ("HardTanh", ()), ("Hardswish", ()),
              ("Tanh", ()), ("Step", (0.1,)), ("Softmax", ()), ("LogSoftmax", ()), ("Softmin", ())]

CASES = [
    LayerCase(f"{n}{args}", lambda m, n=n, a=args: getattr(m, n)(*a), _f(3, 6),
              grad=n != "Step")
    for n, args in ACT_LAYERS
] + [
    LayerCase("Linear", lambda m: m.Linear(5, 3), _f(2, 4, 5)),
    LayerCase("Linear_nobias", lambda m: m.Linear(5, 3, bias=False), _f(4, 5)),
    LayerCase("Bilinear", lambda m: m.Bilinear(3, 4, 2),
              lambda rng: _f(2, 3)(rng) + _f(2, 4)(rng)),
    LayerCase("Embedding", lambda m: m.Embedding(10, 4), _ints(10, 2, 3)),
    LayerCase("Embedding_as_linear", lambda m: m.Embedding(10, 4), _f(2, 4),
              call=lambda layer, m, x: layer.as_linear(x)),
    LayerCase("Identity", lambda m: m.Identity(3, foo=1), _f(2, 3), grad=False),
    LayerCase("Sequential", lambda m: m.Sequential(m.Linear(4, 6), m.ReLU(), m.Linear(6, 2)),
              _f(3, 4)),
    LayerCase("Conv1d", lambda m: m.Conv1d(3, 4, 3, stride=2, padding=1), _f(2, 9, 3)),
    LayerCase("Conv1d_groups", lambda m: m.Conv1d(4, 6, 3, dilation=2, groups=2), _f(2, 9, 4)),
    LayerCase("Conv2d", lambda m: m.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=1), _f(2, 7, 6, 3)),
    LayerCase("Conv3d", lambda m: m.Conv3d(2, 3, 2, padding=1), _f(1, 4, 4, 3, 2)),
    LayerCase("ConvTranspose1d", lambda m: m.ConvTranspose1d(3, 2, 3, stride=2, padding=1),
              _f(2, 5, 3)),
    LayerCase("ConvTranspose2d", lambda m: m.ConvTranspose2d(3, 2, 3, stride=2, padding=1),
              _f(1, 4, 3, 3)),
    # MLX 0.32's input gradient with output_padding has the wrong shape, so
    # only the forward pass is compared there.
    LayerCase("ConvTranspose2d_outpad", lambda m: m.ConvTranspose2d(3, 2, 3, stride=2, output_padding=1),
              _f(1, 4, 3, 3), grad=False),
    LayerCase("ConvTranspose3d", lambda m: m.ConvTranspose3d(2, 2, 2), _f(1, 3, 3, 2, 2)),
    LayerCase("MaxPool1d", lambda m: m.MaxPool1d(3, 2, 1), _f(2, 8, 3)),
    LayerCase("MaxPool2d", lambda m: m.MaxPool2d(2), _f(2, 6, 5, 3)),
    LayerCase("MaxPool2d_pad", lambda m: m.MaxPool2d((3, 2), (2, 1), (1, 0)), _f(1, 7, 5, 2)),
    LayerCase("MaxPool3d", lambda m: m.MaxPool3d(2, 1), _f(1, 4, 3, 3, 2)),
    LayerCase("AvgPool1d", lambda m: m.AvgPool1d(2), _f(2, 7, 3)),
    LayerCase("AvgPool2d_pad", lambda m: m.AvgPool2d(3, 2, 1), _f(1, 6, 7, 2)),
    LayerCase("AvgPool3d", lambda m: m.AvgPool3d((2, 1, 2)), _f(1, 4, 3, 4, 2)),
    LayerCase("Upsample_nearest", lambda m: m.Upsample(2), _f(1, 3, 4, 2)),
    LayerCase("Upsample_nearest_frac", lambda m: m.Upsample((1.5, 0.5)), _f(1, 4, 4, 2)),
    LayerCase("Upsample_linear", lambda m: m.Upsample(2, "linear"), _f(1, 3, 4, 2)),
    LayerCase("Upsample_linear_ac", lambda m: m.Upsample(1.5, "linear", True), _f(1, 4, 2)),
    LayerCase("Upsample_cubic", lambda m: m.Upsample(2, "cubic"), _f(1, 3, 4, 2)),
    LayerCase("Upsample_cubic_ac", lambda m: m.Upsample((2, 3), "cubic", True), _f(1, 3, 2, 2)),
    LayerCase("LayerNorm", lambda m: m.LayerNorm(6), _f(2, 3, 6)),
    LayerCase("LayerNorm_noaffine", lambda m: m.LayerNorm(6, affine=False), _f(2, 6)),
    LayerCase("RMSNorm", lambda m: m.RMSNorm(6), _f(2, 3, 6)),
    LayerCase("GroupNorm", lambda m: m.GroupNorm(2, 6), _f(2, 3, 4, 6)),
    LayerCase("GroupNorm_pt", lambda m: m.GroupNorm(3, 6, pytorch_compatible=True), _f(2, 5, 6)),
    LayerCase("InstanceNorm", lambda m: m.InstanceNorm(3, affine=True), _f(2, 4, 5, 3)),
    LayerCase("BatchNorm_train", lambda m: m.BatchNorm(4), _f(6, 3, 4)),
    LayerCase("BatchNorm_eval", lambda m: m.BatchNorm(4), _f(5, 4), train=False),
    LayerCase("BatchNorm_nostats", lambda m: m.BatchNorm(4, track_running_stats=False), _f(5, 4)),
    LayerCase("Dropout_eval", lambda m: m.Dropout(0.5), _f(4, 5), train=False),
    LayerCase("RNN", lambda m: m.RNN(3, 4), _f(2, 5, 3)),
    LayerCase("RNN_unbatched_relu", lambda m: m.RNN(3, 4, nonlinearity=m.relu), _f(5, 3)),
    LayerCase("GRU", lambda m: m.GRU(3, 4), _f(2, 5, 3)),
    LayerCase("GRU_hidden", lambda m: m.GRU(3, 4), lambda rng: _f(2, 5, 3)(rng) + _f(2, 4)(rng)),
    LayerCase("GRU_nobias", lambda m: m.GRU(3, 4, bias=False), _f(5, 3)),
    LayerCase("LSTM", lambda m: m.LSTM(3, 4), _f(2, 5, 3), call=lambda layer, m, x: layer(x)[0]),
    LayerCase("LSTM_cell", lambda m: m.LSTM(3, 4), lambda rng: _f(2, 5, 3)(rng) + _f(2, 4)(rng) * 2,
              call=lambda layer, m, x, h, c: layer(x, h, c)[1]),
    LayerCase("MultiHeadAttention", lambda m: m.MultiHeadAttention(8, 2, bias=True), _f(2, 5, 8),
              call=lambda layer, m, x: layer(x, x, x)),
    LayerCase("MultiHeadAttention_mask", lambda m: m.MultiHeadAttention(8, 4, key_input_dims=6),
              lambda rng: _f(2, 5, 8)(rng) + _f(2, 3, 6)(rng),
              call=lambda layer, m, q, kv: layer(q, kv, kv, mask=m.array(np.tril(np.ones((5, 3), bool))))),
    LayerCase("MultiHeadAttention_causal", lambda m: m.MultiHeadAttention(8, 2), _f(1, 4, 8),
              call=lambda layer, m, x: layer(
                  x, x, x, layer.create_additive_causal_mask(4))),
    LayerCase("TransformerEncoderLayer", lambda m: m.TransformerEncoderLayer(8, 2, 16), _f(2, 4, 8),
              call=lambda layer, m, x: layer(x, None)),
    LayerCase("TransformerEncoderLayer_post", lambda m: m.TransformerEncoderLayer(
        8, 2, norm_first=False, activation=m.gelu), _f(2, 4, 8),
        call=lambda layer, m, x: layer(x, None)),
    LayerCase("TransformerEncoder", lambda m: m.TransformerEncoder(2, 8, 2, 16), _f(2, 4, 8),
              call=lambda layer, m, x: layer(x, layer.layers[0].attention.create_additive_causal_mask(4))),
    LayerCase("TransformerDecoder_post", lambda m: m.TransformerDecoder(1, 8, 2, 16, norm_first=False),
              lambda rng: _f(2, 4, 8)(rng) + _f(2, 3, 8)(rng),
              call=lambda layer, m, x, mem: layer(x, mem, None, None)),
    LayerCase("Transformer", lambda m: m.Transformer(8, 2, 1, 1, 16),
              lambda rng: _f(2, 3, 8)(rng) + _f(2, 4, 8)(rng),
              call=lambda layer, m, s, t: layer(s, t, None, None, None)),
    LayerCase("RoPE", lambda m: m.RoPE(4), _f(2, 3, 5, 6), call=lambda layer, m, x: layer(x, offset=2)),
    LayerCase("RoPE_traditional", lambda m: m.RoPE(6, traditional=True, base=100, scale=0.5),
              _f(2, 5, 6), grad=False),
    LayerCase("SinusoidalPositionalEncoding", lambda m: m.SinusoidalPositionalEncoding(8),
              lambda rng: [rng.uniform(0, 10, (5,)).astype(np.float32)], grad=False),
    LayerCase("SinusoidalPositionalEncoding_cos", lambda m: m.SinusoidalPositionalEncoding(
        6, cos_first=True, full_turns=True, scale=1.0), lambda rng: [rng.uniform(0, 3, (2, 4)).astype(np.float32)],
        grad=False),
    LayerCase("ALiBi", lambda m: m.ALiBi(), _f(2, 3, 4, 4), call=lambda layer, m, x: layer(x, offset=0)),
    LayerCase("ALiBi_offset", lambda m: m.ALiBi(), _f(1, 2, 1, 5), call=lambda layer, m, x: layer(x, offset=4)),
]


def _copy_weights(src_mlx, dst_kiln):
    pairs = [(k, mx.array(np.array(v))) for k, v in mlx_tree_flatten(src_mlx.parameters())]
    dst_kiln.load_weights(pairs)


def _pair(case, seed=0):
    mlx_layer = case.make(mlx_nn)
    layer = case.make(nn)
    _copy_weights(mlx_layer, layer)
    mlx_layer.train(case.train)
    layer.train(case.train)
    xs = case.inputs(np.random.default_rng(seed))
    return layer, mlx_layer, xs


@needs_mlx
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_layer_matches_mlx(case):
    layer, mlx_layer, xs = _pair(case)
    assert sorted(k for k, _ in tree_flatten(layer.parameters())) == sorted(
        k for k, _ in mlx_tree_flatten(mlx_layer.parameters()))
    out = _first(case.call(layer, mx, *[mx.array(x) for x in xs]))
    ref = _first(case.call(mlx_layer, mlx_core, *[mlx_core.array(x) for x in xs]))
    assert out.shape == ref.shape
    assert out.dtype == getattr(mx, str(ref.dtype).split(".")[-1])
    np.testing.assert_allclose(np.array(out), np.array(ref), rtol=case.rtol, atol=case.atol)
    if case.name.startswith("BatchNorm"):
        # The running statistics must have moved the same way.
        for k, v in mlx_tree_flatten(mlx_layer.parameters()):
            np.testing.assert_allclose(np.array(dict(tree_flatten(layer.parameters()))[k]),
                                       np.array(v), rtol=1e-5, atol=1e-6)


@needs_mlx
@pytest.mark.parametrize("case", [c for c in CASES if c.grad], ids=repr)
def test_layer_grads_match_mlx(case):
    layer, mlx_layer, xs = _pair(case)

    floats = [i for i, x in enumerate(xs) if x.dtype.kind == "f"]

    def grads(lib, model):
        arrs = [lib.array(x) for x in xs]

        def loss(params, float_inputs):
            model.update(params)
            inputs = list(arrs)
            for i, x in zip(floats, float_inputs):
                inputs[i] = x
            out = _first(case.call(model, lib, *inputs))
            return (out * lib.cos(out)).sum()

        fn = lib.value_and_grad(loss, argnums=(0, 1))
        return fn(model.trainable_parameters(), [arrs[i] for i in floats])

    v, (gp, gx) = grads(mx, layer)
    rv, (rgp, rgx) = grads(mlx_core, mlx_layer)
    np.testing.assert_allclose(v.item(), rv.item(), rtol=1e-4, atol=1e-4)
    ref = dict(mlx_tree_flatten((rgp, rgx)))
    got = dict(tree_flatten((gp, gx)))
    assert sorted(got) == sorted(ref)
    for k in ref:
        np.testing.assert_allclose(np.array(got[k]), np.array(ref[k]), rtol=1e-3, atol=1e-4, err_msg=k)


# -- NumPy references ---------------------------------------------------------
def _np_act(name, x):
    from scipy.special import erf, expit, log_softmax, softmax

    sp = np.logaddexp(x, 0)
    table = {
        "relu": np.maximum(x, 0), "relu6": np.clip(x, 0, 6), "relu2": np.maximum(x, 0) ** 2,
        "leaky_relu": np.where(x > 0, x, 0.01 * x), "elu": np.where(x > 0, x, np.expm1(x)),
        "celu": np.maximum(x, 0) + np.minimum(0, np.expm1(x)),
        "selu": 1.0507 * np.where(x > 0, x, 1.67326 * np.expm1(x)),
        "gelu": x * (1 + erf(x / np.sqrt(2))) / 2,
        "gelu_approx": 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
        "gelu_fast_approx": x * expit(1.702 * x), "silu": x * expit(x),
        "mish": x * np.tanh(sp), "sigmoid": expit(x), "log_sigmoid": -np.logaddexp(0, -x),
        "softplus": sp, "softsign": x / (1 + np.abs(x)),
        "softshrink": np.where(np.abs(x) > 0.5, x - np.sign(x) * 0.5, 0),
        "hard_shrink": np.where(np.abs(x) > 0.5, x, 0), "hard_tanh": np.clip(x, -1, 1),
        "hardswish": x * np.clip(x + 3, 0, 6) / 6, "tanh": np.tanh(x),
        "softmax": softmax(x, -1), "log_softmax": log_softmax(x, -1), "softmin": softmax(-x, -1),
        "glu": x[..., :3] * expit(x[..., 3:]),
    }
    return table[name]


@pytest.mark.parametrize("name", ACTS)
def test_activation_vs_numpy(name):
    x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32) * 3
    out = getattr(nn, name)(mx.array(x))
    assert out.shape == x.shape[:-1] + ((3,) if name == "glu" else (6,))
    np.testing.assert_allclose(np.array(out), _np_act(name, x.astype(np.float64)), rtol=1e-5, atol=1e-5)


def test_activations_stable_at_extremes():
    x = mx.array([-1000.0, 1000.0])
    np.testing.assert_allclose(np.array(nn.softplus(x)), [0, 1000])
    np.testing.assert_allclose(np.array(nn.log_sigmoid(x)), [-1000, 0])
    np.testing.assert_allclose(np.array(nn.log_softmax(x)), [-2000, 0])


def test_linear_vs_numpy():
    layer = nn.Linear(4, 3)
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    w, b = np.array(layer.weight), np.array(layer.bias)
    np.testing.assert_allclose(np.array(layer(mx.array(x))), x @ w.T + b, rtol=1e-5, atol=1e-6)
    bound = 1 / np.sqrt(4)
    assert np.all(np.abs(w) <= bound) and w.shape == (3, 4) and layer.weight.dtype == mx.float32


def test_norms_vs_numpy():
    x = np.random.default_rng(3).standard_normal((3, 4, 6)).astype(np.float32)
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(np.array(nn.LayerNorm(6)(mx.array(x))), ref, rtol=1e-4, atol=1e-5)
    ref = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(np.array(nn.RMSNorm(6)(mx.array(x))), ref, rtol=1e-4, atol=1e-5)


def test_pooling_vs_numpy():
    x = np.random.default_rng(4).standard_normal((2, 6, 4, 3)).astype(np.float32)
    ref_max = x.reshape(2, 3, 2, 2, 2, 3).max(axis=(2, 4))
    ref_avg = x.reshape(2, 3, 2, 2, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(np.array(nn.MaxPool2d(2)(mx.array(x))), ref_max)
    np.testing.assert_allclose(np.array(nn.AvgPool2d(2)(mx.array(x))), ref_avg, rtol=1e-6)


def test_batchnorm_running_stats_and_eval():
    bn = nn.BatchNorm(3, momentum=0.5)
    x = np.random.default_rng(5).standard_normal((8, 3)).astype(np.float32) * 2 + 1
    bn(mx.array(x))
    np.testing.assert_allclose(np.array(bn.running_mean), 0.5 * x.mean(0), rtol=1e-5)
    var = x.var(0, ddof=1)  # the running variance is unbiased
    np.testing.assert_allclose(np.array(bn.running_var), 0.5 + 0.5 * var, rtol=1e-5)
    assert "running_mean" not in tree_flatten(bn.trainable_parameters(), destination={})
    bn.eval()
    ref = (x - 0.5 * x.mean(0)) / np.sqrt(0.5 + 0.5 * var + 1e-5)
    np.testing.assert_allclose(np.array(bn(mx.array(x))), ref, rtol=1e-4, atol=1e-5)


def test_dropout_train_and_eval():
    d = nn.Dropout(0.25)
    x = mx.ones((200, 50))
    y = np.array(d(x))
    kept = y != 0
    assert 0.65 < kept.mean() < 0.85
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    d.eval()
    np.testing.assert_array_equal(np.array(d(x)), np.array(x))
    y2 = np.array(nn.Dropout2d(0.5)(mx.ones((2, 4, 4, 8))))
    # Whole channels are kept or dropped together.
    assert np.all((y2 == y2[:, :1, :1, :]))
    with pytest.raises(ValueError):
        nn.Dropout(1.0)


def test_causal_mask_and_errors():
    m = np.array(nn.MultiHeadAttention.create_additive_causal_mask(3))
    assert np.all(m[np.tril_indices(3)] == 0) and np.all(m[np.triu_indices(3, 1)] < -1e30)
    with pytest.raises(ValueError):
        nn.MultiHeadAttention(6, 4)
    with pytest.raises(ValueError):
        nn.GELU(approx="bad")


@pytest.mark.parametrize("name", ["constant", "normal", "uniform", "identity", "glorot_normal",
                                  "glorot_uniform", "he_normal", "he_uniform", "orthogonal", "sparse"])
def test_init(name):
    a = mx.zeros((64, 64))
    make = {"constant": lambda: nn.init.constant(0.5), "sparse": lambda: nn.init.sparse(0.25)}.get(
        name, lambda: getattr(nn.init, name)())
    w = np.array(make()(a))
    assert w.shape == (64, 64)
    fan = 64
    if name == "constant":
        assert np.all(w == 0.5)
    elif name == "identity":
        np.testing.assert_array_equal(w, np.eye(64))
    elif name == "orthogonal":
        np.testing.assert_allclose(w @ w.T, np.eye(64), atol=1e-4)
    elif name == "sparse":
        assert np.all((w == 0).sum(1) == 16)
    elif name == "uniform":
        assert w.min() >= 0 and w.max() < 1 and abs(w.mean() - 0.5) < 0.05
    else:
        std = {"normal": 1.0, "glorot_normal": np.sqrt(2 / (2 * fan)),
               "glorot_uniform": np.sqrt(6 / (2 * fan)) / np.sqrt(3),
               "he_normal": 1 / np.sqrt(fan), "he_uniform": np.sqrt(3 / fan) / np.sqrt(3)}[name]
        assert abs(w.std() / std - 1) < 0.1


def test_init_errors():
    with pytest.raises(ValueError):
        nn.init.identity()(mx.zeros((2, 3)))
    with pytest.raises(ValueError):
        nn.init.glorot_uniform()(mx.zeros((3,)))


# -- Module tree operations ---------------------------------------------------
def _make_model(m):
    class Block(m.Module):
        def __init__(self):
            super().__init__()
            self.w = m.zeros((2,))
            self.d = {"a": m.ones((1,)), "b": [m.ones((3,))]}
            self.layers = [m.Linear(2, 3), m.Sequential(m.ReLU(), m.Linear(3, 1))]
            self.norm = m.LayerNorm(1)
            self._private = m.ones((2,))

    return Block


def _names(tree, lib_flatten):
    return [k for k, _ in lib_flatten(tree)]


@needs_mlx
def test_module_trees_match_mlx():
    ours = _make_model(_NS(nn, mx))()
    theirs = _make_model(_NS(mlx_nn, mlx_core))()
    assert _names(ours.parameters(), tree_flatten) == _names(theirs.parameters(), mlx_tree_flatten)
    assert "_private" not in dict(tree_flatten(ours.parameters()))
    is_mod = lambda x: isinstance(x, nn.Module)  # noqa: E731
    is_mlx_mod = lambda x: isinstance(x, mlx_nn.Module)  # noqa: E731
    assert [k for k, _ in tree_flatten(ours.children(), is_leaf=is_mod)] == [
        k for k, _ in mlx_tree_flatten(theirs.children(), is_leaf=is_mlx_mod)]
    assert [k for k, _ in tree_flatten(ours.leaf_modules(), is_leaf=is_mod)] == [
        k for k, _ in mlx_tree_flatten(theirs.leaf_modules(), is_leaf=is_mlx_mod)]
    assert [k for k, _ in ours.named_modules()] == [k for k, _ in theirs.named_modules()]
    assert [type(m).__name__ for m in ours.modules()] == [type(m).__name__ for m in theirs.modules()]
    assert repr(nn.Sequential(nn.Linear(2, 3), nn.ReLU())) == repr(
        mlx_nn.Sequential(mlx_nn.Linear(2, 3), mlx_nn.ReLU()))
    for kwargs in [dict(recurse=False), dict(), dict(keys="w", recurse=False), dict(keys=["bias"])]:
        ours.unfreeze()
        theirs.unfreeze()
        ours.freeze(**kwargs)
        theirs.freeze(**kwargs)
        assert _names(ours.trainable_parameters(), tree_flatten) == _names(
            theirs.trainable_parameters(), mlx_tree_flatten), kwargs
        ours.unfreeze(keys="w", recurse=False)
        theirs.unfreeze(keys="w", recurse=False)
        assert _names(ours.trainable_parameters(), tree_flatten) == _names(
            theirs.trainable_parameters(), mlx_tree_flatten), kwargs
    with pytest.raises(KeyError):
        ours.freeze(keys="nope", strict=True)


class _NS:
    """A namespace exposing one library's nn names plus its array constructors."""

    def __init__(self, nn_mod, core):
        self.__dict__.update({k: getattr(nn_mod, k) for k in dir(nn_mod) if not k.startswith("_")})
        self.zeros, self.ones = core.zeros, core.ones


def test_module_attributes_update_apply():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert model.training and model.state is model
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    model.layers[0].note = "not a parameter"
    assert "note" not in model.layers[0] and model.layers[0].note == "not a parameter"
    new = mx.ones((3, 2))
    model.update({"layers": [{"weight": new}]})
    assert model.layers[0].weight is new
    with pytest.raises(ValueError):
        model.update({"nope": new})
    with pytest.raises(ValueError):
        model.update({"layers": [{"weight": 1}]})
    model.update({"nope": new}, strict=False)
    model.update_modules({"layers": [nn.Linear(2, 3, bias=False)]})
    assert "bias" not in model.layers[0]
    model.apply(lambda x: x.astype(mx.float16))
    assert all(v.dtype == mx.float16 for _, v in tree_flatten(model.parameters()))
    model.set_dtype(mx.float32)
    assert all(v.dtype == mx.float32 for _, v in tree_flatten(model.parameters()))
    seen = []
    model.apply_to_modules(lambda name, m: seen.append(name))
    assert seen == [k for k, _ in model.named_modules()]
    only_w = model.filter_and_map(lambda m, k, v: k != "bias" and nn.Module.valid_parameter_filter(m, k, v),
                                  is_leaf_fn=lambda m, k, v: isinstance(v, mx.array))
    assert [k for k, _ in tree_flatten(only_w)] == ["layers.0.weight", "layers.2.weight"]


@needs_mlx
def test_load_weights_errors_match_mlx():
    pairs = lambda lib_nn, lib: [("layers.0.weight", lib.zeros((3, 2)))]  # noqa: E731
    ours = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    theirs = mlx_nn.Sequential(mlx_nn.Linear(2, 3), mlx_nn.ReLU(), mlx_nn.Linear(3, 1))
    full = lambda model, flat, extra: flat(model.parameters()) + extra  # noqa: E731
    attempts = [
        (pairs(nn, mx), pairs(mlx_nn, mlx_core)),
        (full(ours, tree_flatten, [("layers.0.foo", mx.zeros(1))]),
         full(theirs, mlx_tree_flatten, [("layers.0.foo", mlx_core.zeros(1))])),
        ([(k, v.reshape(-1)) for k, v in tree_flatten(ours.parameters())],
         [(k, v.reshape(-1)) for k, v in mlx_tree_flatten(theirs.parameters())]),
    ]
    for a, b in attempts:
        with pytest.raises(ValueError) as ours_err:
            ours.load_weights(a)
        with pytest.raises(ValueError) as their_err:
            theirs.load_weights(b)
        assert str(ours_err.value) == str(their_err.value)
    ours.load_weights(pairs(nn, mx), strict=False)
    assert np.all(np.array(ours.layers[0].weight) == 0)


@needs_mlx
@pytest.mark.parametrize("ext", ["npz", "safetensors"])
def test_weights_roundtrip_with_mlx(tmp_path, ext):
    ours = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm(3), nn.Linear(3, 2))
    theirs = mlx_nn.Sequential(mlx_nn.Conv2d(2, 3, 3), mlx_nn.BatchNorm(3), mlx_nn.Linear(3, 2))
    # kiln -> file -> MLX
    path = str(tmp_path / f"ours.{ext}")
    ours.save_weights(path)
    theirs.load_weights(path)
    for (k, a), (_, b) in zip(tree_flatten(ours.parameters()), mlx_tree_flatten(theirs.parameters())):
        np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=k)
    # MLX -> file -> kiln
    fresh = mlx_nn.Sequential(mlx_nn.Conv2d(2, 3, 3), mlx_nn.BatchNorm(3), mlx_nn.Linear(3, 2))
    path = str(tmp_path / f"theirs.{ext}")
    fresh.save_weights(path)
    ours.load_weights(path)
    for (k, a), (_, b) in zip(tree_flatten(ours.parameters()), mlx_tree_flatten(fresh.parameters())):
        np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=k)
    with pytest.raises(ValueError):
        ours.save_weights(str(tmp_path / "w.bin"))


def test_value_and_grad_trains_mlp():
    """A short training run: an MLP fits a nonlinear function."""
    import kiln.optimizers as optim

    mx.random.seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (128, 2)).astype(np.float32)
    y = (np.sin(x[:, :1]) * x[:, 1:]).astype(np.float32)
    x, y = mx.array(x), mx.array(y)
    model = nn.Sequential(nn.Linear(2, 32), nn.GELU(), nn.Linear(32, 1))
    opt = optim.Adam(0.02)

    def loss_fn(inputs, targets):
        return nn.losses.mse_loss(model(inputs), targets)

    step = nn.value_and_grad(model, loss_fn)
    first = float(loss_fn(x, y))
    for _ in range(150):
        loss, grads = step(x, y)
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state)
    assert float(loss) < 0.1 * first and float(loss) < 0.03
