"""Optimizer argument checks as in MLX: eps > 0 for the accumulating optimizers (a zero eps
gives 0/0 on a zero gradient), max_norm >= 0 for clip_grad_norm."""
from __future__ import annotations

import numpy as np
import pytest

import kiln.core as mx
import kiln.optimizers as opt

try:
    import mlx.core as mlx
    import mlx.optimizers as mlx_opt
except ImportError:
    mlx = None

ROWS = ([(f"{name}_eps_{e}", (lambda name=name, e=e: lambda m, o: getattr(o, name)(
            learning_rate=1e-2, eps=e).eps)())
         for name in ("RMSprop", "Adagrad", "AdaDelta") for e in (-1.0, 0.0, 1e-8)]
        + [(f"clip_{n}", (lambda n=n: lambda m, o: round(o.clip_grad_norm(
            {"a": m.ones(2)}, n)[1].item(), 5))()) for n in (-1.0, 0.0, 1.0)])


def _outcome(m, o, fn):
    try:
        return fn(m, o)
    except ValueError as e:
        return f"ValueError: {e}"


@pytest.mark.parametrize("name,fn", ROWS, ids=[r[0] for r in ROWS])
def test_checks(name, fn):
    got = _outcome(mx, opt, fn)
    if name.endswith(("-1.0", "_0.0")) and not name.startswith("clip_0"):
        assert isinstance(got, str) and got.startswith("ValueError") and (">0" in got or ">=0" in got)
    else:
        assert not isinstance(got, str)
    if mlx is not None:
        assert got == _outcome(mlx, mlx_opt, fn)


def test_zero_gradient_with_small_eps_stays_finite():
    for o in (opt.RMSprop(learning_rate=1e-2, eps=1e-8), opt.Adagrad(learning_rate=1e-2, eps=1e-8)):
        p = {"w": mx.ones((3,))}
        out = o.apply_gradients({"w": mx.zeros((3,))}, p)
        assert np.isfinite(np.array(out["w"])).all()
