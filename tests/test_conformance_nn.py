"""nn layer checks and low-precision behaviour as in MLX: argument validation of the norms,
BatchNorm's one-value-per-channel check, step's boundary, Dropout keeping the input dtype,
log_softmax of huge equal logits, half-precision statistics, SinusoidalPositionalEncoding.

Each row is an outcome (a value, or the exception's type and message); kiln's must equal the
real MLX's where MLX is importable, and the NumPy-derived expectations hold without it.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import kiln.core as mx
import kiln.nn as nn

try:
    import mlx.core as mlx
    import mlx.nn as mlx_nn
except ImportError:
    mlx = None

needs_mlx = pytest.mark.skipif(mlx is None, reason="real MLX not importable")


def _norms(n):
    return [("LayerNorm", lambda e: n.LayerNorm(16, eps=e)), ("RMSNorm", lambda e: n.RMSNorm(16, eps=e)),
            ("GroupNorm", lambda e: n.GroupNorm(4, 16, eps=e)),
            ("InstanceNorm", lambda e: n.InstanceNorm(16, eps=e)),
            ("BatchNorm", lambda e: n.BatchNorm(16, eps=e))]


def _dtype_name(d):
    return str(d).split(".")[-1]


def _checkerboard(m):
    cb = np.indices((4, 4, 4)).sum(axis=0) % 2
    return m.array(np.stack([np.where(cb, -512, 512), np.where(cb, -256, 256)],
                            axis=-1).astype(np.float16))[None]


def _bn_train(n, m, shape, track):
    b = n.BatchNorm(4, track_running_stats=track)
    b.train()
    return tuple(b(m.ones(shape)).shape)


ROWS = (
    [(f"eps_{name}_{e}", (lambda name=name, e=e: lambda m, n: dict(_norms(n))[name](e).eps)())
     for name, _ in _norms(nn) for e in (-1.0, -1e-30, 0.0, 1e-30, 1.0)]
    + [(f"groupnorm_{g}_{d}", (lambda g=g, d=d: lambda m, n: n.GroupNorm(g, d).dims)())
       for g, d in [(4, 6), (0, 4), (-1, 4), (2, 0), (4, 8)]]
    + [(f"batchnorm_train_{s}_{t}", (lambda s=s, t=t: lambda m, n: _bn_train(n, m, s, t))())
       for s in [(1, 4), (1, 1, 4), (1, 3, 4), (2, 4)] for t in (True, False)]
    + [("step_boundary", lambda m, n: n.step(m.array([0.4, 0.5, 0.6]), threshold=0.5).tolist()),
       ("step_default", lambda m, n: n.step(m.array([-1.0, 0.0, 1.0])).tolist()),
       ("step_dtype", lambda m, n: _dtype_name(n.step(m.array([0, 1, 2]), threshold=1).dtype))]
    + [(f"dropout_{k}_{d}", (lambda k=k, d=d, shape=shape: lambda m, n: _dtype_name(
        getattr(n, k)(0.5)(m.ones(shape, dtype=getattr(m, d))).dtype))())
       for k, shape in [("Dropout", (2, 4)), ("Dropout2d", (2, 4, 4, 2)), ("Dropout3d", (2, 2, 4, 4, 2))]
       for d in ("bfloat16", "float16")]
    + [(f"log_softmax_equal_{v:g}", (lambda v=v: lambda m, n: [
        round(x, 5) for x in n.log_softmax(m.array([[v, v]])).tolist()[0]])())
       for v in (1.0, 1e4, 1e20, 1e36)]
    + [(f"log_softmax_{d}", (lambda d=d: lambda m, n: _dtype_name(
        n.log_softmax(m.array([1.0, 2.0], dtype=getattr(m, d))).dtype))())
       for d in ("float16", "bfloat16")]
    + [(f"half_stats_{k}", (lambda k=k: lambda m, n: (lambda y: (
        _dtype_name(y.dtype), round(y.min().item(), 3), round(y.max().item(), 3)))(
        {"InstanceNorm": n.InstanceNorm(dims=2), "LayerNorm": n.LayerNorm(2)}[k](_checkerboard(m))))())
       for k in ("InstanceNorm", "LayerNorm")]
    + [("sin_pe_2", lambda m, n: [round(v, 5) for v in
                                  n.SinusoidalPositionalEncoding(2)(m.arange(3)).reshape(-1).tolist()]),
       ("instance_norm_2d", lambda m, n: n.InstanceNorm(dims=8)(m.zeros((4, 8))).shape),
       ("instance_norm_3d", lambda m, n: tuple(n.InstanceNorm(dims=8)(m.zeros((2, 3, 8))).shape)),
       ("sin_pe_scale0", lambda m, n: n.SinusoidalPositionalEncoding(16, scale=0.0).scale)]
    + [(f"sin_pe_dims_{d}", (lambda d=d: lambda m, n: n.SinusoidalPositionalEncoding(d).scale)())
       for d in (0, 1, 3, -2)]
)


def _outcome(m, n, fn):
    try:
        return fn(m, n)
    except ValueError as e:
        return f"ValueError: {e}"


@needs_mlx
@pytest.mark.parametrize("name,fn", ROWS, ids=[r[0] for r in ROWS])
def test_matches_mlx(name, fn):
    assert _outcome(mx, nn, fn) == _outcome(mlx, mlx_nn, fn)


def test_expectations_without_mlx():
    got = {name: _outcome(mx, nn, fn) for name, fn in ROWS}
    for name, _ in _norms(nn):
        for e in (-1.0, 0.0):
            assert got[f"eps_{name}_{e}"].startswith(f"ValueError: [{name}] 'eps' must be positive")
        assert got[f"eps_{name}_1e-30"] == 1e-30
    assert got["groupnorm_4_6"].startswith("ValueError")
    assert got["groupnorm_4_8"] == 8
    assert got["batchnorm_train_(1, 4)_True"].startswith("ValueError")
    assert got["batchnorm_train_(1, 3, 4)_True"] == (1, 3, 4)
    assert got["step_boundary"] == [0, 1, 1]
    assert all(got[f"dropout_{k}_{d}"] == d for k in ("Dropout", "Dropout2d", "Dropout3d")
               for d in ("bfloat16", "float16"))
    for v in (1.0, 1e4, 1e20, 1e36):
        assert got[f"log_softmax_equal_{v:g}"] == [round(-math.log(2), 5)] * 2
    # the checkerboard normalises to exactly +-1 per channel
    assert got["half_stats_InstanceNorm"] == ("float16", -1.0, 1.0)
    x = np.arange(3.0)[:, None]
    assert got["sin_pe_2"] == [round(v, 5) for v in np.concatenate([np.sin(x), np.cos(x)], 1).ravel()]
    assert got["sin_pe_scale0"] == 0.0
    assert got["sin_pe_dims_3"].startswith("ValueError")


def test_group_norm_half_precision_statistics_do_not_overflow():
    # MLX's GroupNorm returns zeros here (its float16 statistics overflow); kiln computes the
    # statistics in float32 (docs/differences-transforms.md).
    x = _checkerboard(mx)
    y = np.array(nn.GroupNorm(1, 2)(x))
    xn = np.array(x).astype(np.float64).reshape(1, -1)
    want = ((xn - xn.mean()) / np.sqrt(xn.var() + 1e-5)).reshape(y.shape)
    np.testing.assert_allclose(y, want, rtol=2e-3, atol=2e-3)


def test_transformer_keeps_parameterless_custom_modules():
    model = nn.Transformer(dims=32, num_heads=4, num_encoder_layers=1, num_decoder_layers=1,
                           custom_encoder=nn.Identity(), custom_decoder=nn.Identity())
    assert isinstance(model.encoder, nn.Identity) and isinstance(model.decoder, nn.Identity)
