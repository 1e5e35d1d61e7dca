"""GPU side of the eager work: TF32 switch, in-place reuse, lowerings and weight-gradient layout
on ``mx.gpu`` against ``mx.cpu``. Every GPU test skips without CuPy and a GPU (CI)."""
from __future__ import annotations

import numpy as np
import pytest

import kiln.core as mx

HAS_GPU = mx.cuda.is_available()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and an NVIDIA GPU")


def test_precision_switch_validates():
    before = mx.cuda.matmul_precision()
    assert before in ("float32", "tf32")
    with pytest.raises(ValueError, match="set_matmul_precision"):
        mx.cuda.set_matmul_precision("fp8")
    assert mx.cuda.matmul_precision() == before


@needs_gpu
def test_tf32_switch_changes_products_within_tolerance():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 512)).astype(np.float32)
    b = rng.standard_normal((512, 512)).astype(np.float32)
    ref = a.astype(np.float64) @ b
    rel = lambda x: np.linalg.norm(np.array(x) - ref) / np.linalg.norm(ref)  # noqa: E731
    assert mx.cuda.matmul_precision() == "float32"
    full = rel(mx.matmul(mx.array(a), mx.array(b), stream=mx.gpu))
    mx.cuda.set_matmul_precision("tf32")
    try:
        tf = rel(mx.matmul(mx.array(a), mx.array(b), stream=mx.gpu))
    finally:
        mx.cuda.set_matmul_precision("float32")
    assert full < 1e-5 and 1e-5 < tf < 3e-3


@needs_gpu
def test_inplace_chain_on_gpu():
    xn = np.random.default_rng(1).standard_normal(1 << 16).astype(np.float32)
    x = mx.array(xn)
    held = mx.exp(x, stream=mx.gpu)
    y = mx.tanh((held * 0.5 + 1.0) * 2.0, stream=mx.gpu)
    z = mx.tanh(mx.exp(x, stream=mx.gpu) * 0.5 + 1.0, stream=mx.gpu)
    mx.eval(y, z, held)
    e = np.exp(xn)
    np.testing.assert_allclose(np.array(held), e, rtol=1e-5)
    np.testing.assert_allclose(np.array(y), np.tanh((e * 0.5 + 1) * 2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(z), np.tanh(e * 0.5 + 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.array(x), xn)


@needs_gpu
@pytest.mark.parametrize("e", [2, 3, 4, -1, -2, 0.5, -0.5])
def test_lowered_powers_gpu(e):
    xn = np.random.default_rng(2).uniform(0.5, 2, (4, 5)).astype(np.float32)
    f = lambda x: mx.sum(x ** e)  # noqa: E731
    with mx.stream(mx.gpu):
        gv = mx.grad(f)(mx.array(xn))
    cv = mx.grad(f)(mx.array(xn, dtype=mx.float32))
    np.testing.assert_allclose(np.array(gv), np.array(cv), rtol=1e-5)


@needs_gpu
def test_weight_grad_gpu():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 7, 4)).astype(np.float32)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    f = lambda w, x: mx.sum(mx.tanh(x @ w.T))  # noqa: E731
    with mx.stream(mx.gpu):
        g = mx.grad(f)(mx.array(w), mx.array(x))
    want = mx.grad(f)(mx.array(w), mx.array(x))
    np.testing.assert_allclose(np.array(g), np.array(want), rtol=1e-4, atol=1e-5)
