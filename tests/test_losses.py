"""kiln.nn.losses vs real MLX and NumPy, with reductions, weights, label
smoothing, axes, stability at extremes and errors."""
from __future__ import annotations

import numpy as np
import pytest

import kiln.core as mx
import kiln.nn.losses as L

try:
    import mlx.core as mlx_core
    import mlx.nn.losses as ML
except Exception:  # pragma: no cover
    mlx_core = ML = None

needs_mlx = pytest.mark.skipif(ML is None, reason="real MLX not installed")


def _inputs():
    r = np.random.default_rng(0)
    f = lambda *s: r.standard_normal(s).astype(np.float32)  # noqa: E731
    lg = f(4, 5)
    probs = np.exp(f(4, 5))
    probs /= probs.sum(-1, keepdims=True)
    return dict(
        lg=lg, t=r.integers(0, 5, 4).astype(np.int32), pr=probs, w=np.abs(f(4)), x=f(4, 5),
        p01=1 / (1 + np.exp(-f(4, 5))), t01=(r.random((4, 5)) > 0.5).astype(np.float32),
        sgn=np.sign(f(4, 5)), var=np.abs(f(4, 5)) + 0.1, logp=np.log(probs),
        logq=np.log(np.roll(probs, 1, axis=-1)),
    )


CASES = [
    ("cross_entropy", ("lg", "t"), {}),
    ("cross_entropy", ("lg", "t"), dict(weights="w", label_smoothing=0.3, reduction="mean")),
    ("cross_entropy", ("lg", "pr"), dict(reduction="sum")),
    ("cross_entropy", ("lg", "pr"), dict(label_smoothing=0.2)),
    ("binary_cross_entropy", ("lg", "t01"), {}),
    ("binary_cross_entropy", ("p01", "t01"), dict(with_logits=False, reduction="none")),
    ("l1_loss", ("lg", "x"), {}),
    ("mse_loss", ("lg", "x"), dict(reduction="sum")),
    ("nll_loss", ("logp", "t"), dict(reduction="mean")),
    ("gaussian_nll_loss", ("lg", "x", "var"), dict(full=True)),
    ("kl_div_loss", ("logp", "logq"), {}),
    ("smooth_l1_loss", ("lg", "x"), dict(beta=0.5)),
    ("triplet_loss", ("lg", "x", "pr"), {}),
    ("triplet_loss", ("lg", "x", "pr"), dict(p=3, margin=0.5, reduction="mean")),
    ("hinge_loss", ("lg", "sgn"), {}),
    ("huber_loss", ("lg", "x"), dict(delta=0.7)),
    ("log_cosh_loss", ("lg", "x"), {}),
    ("cosine_similarity_loss", ("lg", "x"), dict(axis=-1)),
    ("margin_ranking_loss", ("lg", "x", "sgn"), dict(margin=0.1)),
]
IDS = [f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)]


def _call(lib, mod, name, args, kw, data):
    kw = {k: (lib.array(data[v]) if k == "weights" else v) for k, v in kw.items()}
    return getattr(mod, name)(*[lib.array(data[a]) for a in args], **kw)


@needs_mlx
@pytest.mark.parametrize("name,args,kw", CASES, ids=IDS)
def test_loss_matches_mlx(name, args, kw):
    data = _inputs()
    out = _call(mx, L, name, args, kw, data)
    ref = _call(mlx_core, ML, name, args, kw, data)
    assert out.shape == ref.shape
    np.testing.assert_allclose(np.array(out), np.array(ref), rtol=1e-5, atol=1e-6)


@needs_mlx
@pytest.mark.parametrize("name,args,kw", CASES, ids=IDS)
def test_loss_grad_matches_mlx(name, args, kw):
    data = _inputs()

    def grad(lib, mod):
        arrs = [lib.array(data[a]) for a in args]
        kws = {k: (lib.array(data[v]) if k == "weights" else v) for k, v in kw.items()}

        def f(x):
            return lib.sum(getattr(mod, name)(x, *arrs[1:], **kws))

        return lib.grad(f)(arrs[0])

    np.testing.assert_allclose(np.array(grad(mx, L)), np.array(grad(mlx_core, ML)), rtol=1e-4, atol=1e-5)


def test_cross_entropy_vs_numpy():
    d = _inputs()
    lg, t = d["lg"].astype(np.float64), d["t"]
    logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    ref = -logp[np.arange(4), t]
    np.testing.assert_allclose(np.array(L.cross_entropy(mx.array(d["lg"]), mx.array(t))), ref, rtol=1e-5)
    # Label smoothing equals the cross entropy against the smoothed distribution.
    onehot = np.eye(5)[t]
    smooth = 0.9 * onehot + 0.1 / 5
    ref = -(smooth * logp).sum(-1)
    out = L.cross_entropy(mx.array(d["lg"]), mx.array(t), label_smoothing=0.1)
    np.testing.assert_allclose(np.array(out), ref, rtol=1e-5)


def test_stable_at_extremes():
    big = mx.array([[1000.0, -1000.0]])
    assert np.isfinite(np.array(L.cross_entropy(big, mx.array([1])))).all()
    bce = L.binary_cross_entropy(mx.array([1000.0, -1000.0]), mx.array([0.0, 1.0]), reduction="none")
    np.testing.assert_allclose(np.array(bce), [1000.0, 1000.0])
    probs = L.binary_cross_entropy(mx.array([0.0, 1.0]), mx.array([1.0, 0.0]), with_logits=False,
                                   reduction="none")
    np.testing.assert_allclose(np.array(probs), [100.0, 100.0])
    np.testing.assert_allclose(np.array(L.log_cosh_loss(mx.array([500.0]), mx.array([0.0]))),
                               [500 - np.log(2)], rtol=1e-6)


def test_reductions_and_errors():
    a, b = mx.array([[1.0, 2.0], [3.0, 4.0]]), mx.array([[0.0, 0.0], [1.0, 1.0]])
    none = np.array(L.mse_loss(a, b, reduction="none"))
    assert float(L.mse_loss(a, b)) == pytest.approx(none.mean())
    assert float(L.mse_loss(a, b, reduction="sum")) == pytest.approx(none.sum())
    with pytest.raises(ValueError):
        L.mse_loss(a, b, reduction="avg")
    with pytest.raises(ValueError):
        L.l1_loss(a, mx.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        L.cross_entropy(a, mx.array([0, 1]), label_smoothing=1.0)
    with pytest.raises(ValueError):
        L.cross_entropy(a, mx.array([0, 1]), weights=mx.array([1.0]))
