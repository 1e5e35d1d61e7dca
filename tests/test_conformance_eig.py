"""linalg.eig / linalg.eigvals derivatives (distinct eigenvalues, the usual phase convention:
see kiln/primitives/linalg.py Eig), and the complex abs rule they lean on.

One table of phase-invariant functions drives VJP, JVP, second-order (Hessian-vector) and
per-example (vmap of grad) checks against central differences. Eig's outputs are always
complex64, so the differences are taken with a step of 1e-3 and compared at float32 accuracy.
"""
from __future__ import annotations

import numpy as np
import pytest

import kiln.core as mx

try:
    import mlx.core as mlx
except ImportError:
    mlx = None


def _w(x):
    return mx.linalg.eigvals(x, stream=mx.cpu)


def _v(x):
    return mx.linalg.eig(x, stream=mx.cpu)[1]


WEIGHTS = np.arange(16, dtype=np.float32).reshape(4, 4) / 8

# (name, f: (4, 4) real -> scalar), each invariant under the eigenvectors' phases and the order
# in which the eigenvalues come out
FUNCS = [
    ("sum_real_w", lambda x: mx.sum(mx.real(_w(x)))),
    ("sum_abs2_w", lambda x: mx.sum(mx.abs(_w(x)) ** 2)),
    ("sum_imag2_w", lambda x: mx.sum(mx.imag(_w(x)) ** 2)),
    ("sum_w_cubed", lambda x: mx.sum(mx.real(_w(x) ** 3))),
    ("abs_v_weighted", lambda x: mx.sum(mx.abs(mx.sort(mx.abs(_v(x)) ** 2, axis=0)) * WEIGHTS)),
    ("projector", lambda x: mx.sum(mx.real(
        (lambda w, v: (v * mx.expand_dims(w, 0)) @ mx.conj(mx.swapaxes(v, 0, 1)))(*mx.linalg.eig(
            x, stream=mx.cpu))) * WEIGHTS)),
]

H = 1e-3


def _matrix(seed):
    rng = np.random.default_rng(seed)
    # diagonal shift plus noise: distinct eigenvalues, some complex pairs
    return (np.diag([1.0, 2.5, -1.5, 4.0]) + 0.6 * rng.standard_normal((4, 4))).astype(np.float32)


def _fd_grad(f, a):
    g = np.zeros(a.shape, np.float64)
    for idx in np.ndindex(*a.shape):
        e = np.zeros_like(a)
        e[idx] = H
        g[idx] = (f(mx.array(a + e)).item() - f(mx.array(a - e)).item()) / (2 * H)
    return g


def _close(got, want, what):
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=0, atol=2e-2 * scale,
                               err_msg=what)


@pytest.mark.parametrize("name,f", FUNCS, ids=[c[0] for c in FUNCS])
def test_vjp_and_jvp_against_differences(name, f):
    a = _matrix(0)
    fd = _fd_grad(f, a)
    _close(np.array(mx.grad(f)(mx.array(a))), fd, f"{name} vjp")
    t = np.random.default_rng(5).standard_normal(a.shape).astype(np.float32)
    _, (jv,) = mx.jvp(f, [mx.array(a)], [mx.array(t)])
    _close(jv.item(), float((fd * t).sum()), f"{name} jvp")


@pytest.mark.parametrize("name,f", FUNCS[:4] + FUNCS[5:], ids=[c[0] for c in FUNCS[:4] + FUNCS[5:]])
def test_hessian_vector_product_against_differences(name, f):
    a = _matrix(1)
    u = np.random.default_rng(7).standard_normal(a.shape).astype(np.float32)
    grad = mx.grad(f)
    got = np.array(mx.jvp(grad, [mx.array(a)], [mx.array(u)])[1][0])
    want = (np.array(grad(mx.array(a + H * u)), np.float64)
            - np.array(grad(mx.array(a - H * u)), np.float64)) / (2 * H)
    _close(got, want, f"{name} hvp")
    # reverse-over-reverse agrees with forward-over-reverse
    rr = np.array(mx.grad(lambda x: mx.sum(grad(x) * mx.array(u)))(mx.array(a)))
    _close(rr, got, f"{name} reverse-over-reverse")


@pytest.mark.parametrize("name,f", FUNCS, ids=[c[0] for c in FUNCS])
def test_per_example_gradients(name, f):
    batch = np.stack([_matrix(s) for s in (2, 3, 4)])
    got = np.array(mx.vmap(mx.grad(f))(mx.array(batch)))
    want = np.stack([np.array(mx.grad(f)(mx.array(b))) for b in batch])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_eigenvalue_gradient_closed_form():
    # d(sum w)/dA = I (the trace), whatever the eigenvectors
    a = _matrix(0)
    np.testing.assert_allclose(np.array(mx.grad(lambda x: mx.sum(mx.real(_w(x))))(mx.array(a))),
                               np.eye(4), atol=1e-4)


def test_complex_input_gradient_is_complex():
    rng = np.random.default_rng(0)
    a = (_matrix(0) + 0.3j * rng.standard_normal((4, 4))).astype(np.complex64)
    g = mx.grad(lambda x: mx.sum(mx.real(_w(x))))(mx.array(a))
    assert g.dtype == mx.complex64
    np.testing.assert_allclose(np.array(g), np.eye(4), atol=1e-4)  # trace: conj(I) = I


ABS_CASES = [(3 + 4j, 1.0), (-1 - 2j, 0.5), (0.5j, 2.0)]


@pytest.mark.parametrize("z,c", ABS_CASES)
def test_complex_abs_rules(z, c):
    # d|z| = Re(conj(z) t) / |z|; the VJP of a real cotangent g is g * z / |z|
    t = 0.3 - 0.7j
    _, (jv,) = mx.jvp(mx.abs, [mx.array(z, dtype=mx.complex64)], [mx.array(t, dtype=mx.complex64)])
    assert jv.dtype == mx.float32
    np.testing.assert_allclose(jv.item(), (np.conj(z) * t).real / abs(z), rtol=1e-5)
    _, (vj,) = mx.vjp(mx.abs, [mx.array(z, dtype=mx.complex64)], [mx.array(c)])
    np.testing.assert_allclose(vj.item(), c * z / abs(z), rtol=1e-5)
    if mlx is not None:
        _, (ref,) = mlx.vjp(mlx.abs, [mlx.array(z, dtype=mlx.complex64)], [mlx.array(c)])
        np.testing.assert_allclose(vj.item(), ref.item(), rtol=1e-5)
