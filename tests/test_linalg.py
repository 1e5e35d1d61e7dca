"""mx.linalg against NumPy/SciPy and MLX: values, dtypes, gradients, vmap, compile, errors.

Factors with sign ambiguities (QR, SVD, eigenvectors) are compared through
invariant forms: absolute values, reconstructions and residuals.
"""
import numpy as np
import pytest
import scipy.linalg as sla

import kiln.core as mx
from harness import OpCase, check_compile, check_forward, check_grads, check_vmap, mlx_core, needs_mlx


INF = float("inf")
TOL = dict(rtol=1e-4, atol=1e-5)  # float32 factorizations


# ---------------------------------------------------------------- input generators
def _eye_for(shape):
    return np.eye(shape[-1]) if len(shape) >= 2 and shape[-1] == shape[-2] else 0.0


def wellcond(rng, shape, dtype):
    """Random square matrices plus n*I: far from singular."""
    return rng.standard_normal(shape) + shape[-1] * _eye_for(shape)


def spd(rng, shape, dtype):
    """Symmetric positive definite: X @ X.T + n*I."""
    x = rng.standard_normal(shape)
    return x @ np.swapaxes(x, -1, -2) + shape[-1] * np.eye(shape[-1])


def lower(rng, shape, dtype):
    return np.tril(rng.standard_normal(shape)) + shape[-1] * np.eye(shape[-1])


def spaced(rng, shape, dtype):
    """Symmetric with well-separated eigenvalues (eigenvector derivatives stay tame)."""
    n = shape[-1]
    q, _ = np.linalg.qr(rng.standard_normal(shape))
    w = np.arange(1, n + 1) * 2.0 + rng.random(shape[:-1]) * 0.5
    return (q * np.expand_dims(w, -2)) @ np.swapaxes(q, -1, -2)


def sym(m, x):
    """Symmetrise inside the function, so finite differences see a function of
    the symmetric matrix (the convention of the Cholesky and eigh rules)."""
    return (x + m.swapaxes(x, -1, -2)) * 0.5


def _ref_qr(x):
    q, r = np.linalg.qr(x)
    return [np.abs(q), np.abs(r), q @ r]


def _ref_svd(x):
    u, s, vt = np.linalg.svd(x)
    k = s.shape[-1]
    return [s, np.abs(u[..., :, :k]), np.abs(vt[..., :k, :])]


def _ref_eigh(x, uplo="L"):
    w, v = np.linalg.eigh(x, UPLO=uplo)
    return [w, np.abs(v)]


def _ref_lu_factor(x):
    lu, piv = sla.lu_factor(x)
    return [lu, piv.astype(np.uint32)]


def _ref_lu(x):
    p, low, up = sla.lu(x, p_indices=True)
    return [p.astype(np.uint32), low, up]


def _ref_slogdet(x):
    s, l = np.linalg.slogdet(x)
    return [s, l]


def _cross_ref(a, b, axis=-1):
    return np.cross(a, b, axis=axis)


# ---------------------------------------------------------------- forward table
FORWARD = [
    OpCase("inv", lambda m, x: m.linalg.inv(x, stream=m.cpu), np.linalg.inv, shapes=((3, 3),), gen=wellcond,
           **TOL),
    OpCase("inv_batch_f64", lambda m, x: m.linalg.inv(x, stream=m.cpu), np.linalg.inv, shapes=((2, 3, 3),),
           dtypes=("float64",), gen=wellcond),
    OpCase("tri_inv", lambda m, x: m.linalg.tri_inv(x, stream=m.cpu), lambda x: np.linalg.inv(np.tril(x)),
           shapes=((3, 3),), gen=wellcond, **TOL),
    OpCase("tri_inv_upper", lambda m, x: m.linalg.tri_inv(x, upper=True, stream=m.cpu),
           lambda x: np.linalg.inv(np.triu(x)), shapes=((2, 3, 3),), gen=wellcond, **TOL),
    OpCase("solve", lambda m, a, b: m.linalg.solve(a, b, stream=m.cpu), np.linalg.solve,
           shapes=((3, 3), (3, 2)),
           gen=wellcond, **TOL),
    OpCase("solve_vec", lambda m, a, b: m.linalg.solve(a, b, stream=m.cpu), np.linalg.solve,
           shapes=((3, 3), (3,)),
           gen=wellcond, **TOL),
    # MLX fails on broadcast batch dims ([take_along_axis] ...): NumPy only.
    OpCase("solve_bcast", lambda m, a, b: m.linalg.solve(a, b, stream=m.cpu), np.linalg.solve,
           shapes=((2, 3, 3), (3, 2)), gen=wellcond, mlx=False, **TOL),
    OpCase("solve_bvec_batch", lambda m, a, b: m.linalg.solve(a, b, stream=m.cpu), np.linalg.solve,
           shapes=((2, 3, 3), (3,)), gen=wellcond, mlx=False, **TOL),
    OpCase("solve_triangular", lambda m, a, b: m.linalg.solve_triangular(a, b, stream=m.cpu),
           lambda a, b: np.linalg.solve(np.tril(a), b), shapes=((3, 3), (3, 2)), gen=wellcond, **TOL),
    OpCase("solve_triangular_upper",
           lambda m, a, b: m.linalg.solve_triangular(a, b, upper=True, stream=m.cpu),
           lambda a, b: np.linalg.solve(np.triu(a), b), shapes=((2, 3, 3), (2, 3, 2)), gen=wellcond,
           **TOL),
    OpCase("cholesky", lambda m, x: m.linalg.cholesky(x, stream=m.cpu), np.linalg.cholesky, shapes=((3, 3),),
           gen=spd, **TOL),
    OpCase("cholesky_upper_batch", lambda m, x: m.linalg.cholesky(x, upper=True, stream=m.cpu),
           lambda x: np.swapaxes(np.linalg.cholesky(x), -1, -2), shapes=((2, 4, 4),), gen=spd, **TOL),
    OpCase("cholesky_inv", lambda m, x: m.linalg.cholesky_inv(x, stream=m.cpu),
           lambda x: np.linalg.inv(x @ x.T), shapes=((3, 3),), gen=lower, **TOL),
    OpCase("cholesky_inv_upper",
           lambda m, x: m.linalg.cholesky_inv(m.swapaxes(x, -1, -2), upper=True, stream=m.cpu),
           lambda x: np.linalg.inv(x @ np.swapaxes(x, -1, -2)), shapes=((2, 3, 3),), gen=lower, **TOL),
    OpCase("qr", lambda m, x: (lambda q, r: (m.abs(q), m.abs(r), q @ r))(*m.linalg.qr(x, stream=m.cpu)),
           _ref_qr,
           shapes=((4, 3),), **TOL),
    OpCase("qr_wide_batch",
           lambda m, x: (lambda q, r: (m.abs(q), m.abs(r), q @ r))(*m.linalg.qr(x, stream=m.cpu)),
           _ref_qr, shapes=((2, 2, 4),), **TOL),
    OpCase("svd", lambda m, x: (lambda u, s, vt: (s, m.abs(u[..., :, :3]), m.abs(vt[..., :3, :])))(
        *m.linalg.svd(x, stream=m.cpu)), _ref_svd, shapes=((3, 3),), **TOL),
    OpCase("svd_tall", lambda m, x: (lambda u, s, vt: (s, m.abs(u[..., :, :2]), m.abs(vt[..., :2, :])))(
        *m.linalg.svd(x, stream=m.cpu)), _ref_svd, shapes=((2, 4, 2),), **TOL),
    OpCase("svd_s", lambda m, x: m.linalg.svd(x, compute_uv=False, stream=m.cpu),
           lambda x: np.linalg.svd(x, compute_uv=False), shapes=((2, 5),), **TOL),
    OpCase("svd_s_f64", lambda m, x: m.linalg.svd(x, False, stream=m.cpu),
           lambda x: np.linalg.svd(x, compute_uv=False), shapes=((4, 3),), dtypes=("float64",)),
    OpCase("eigh", lambda m, x: (lambda w, v: (w, m.abs(v)))(*m.linalg.eigh(x, stream=m.cpu)), _ref_eigh,
           shapes=((3, 3),), gen=spaced, **TOL),
    OpCase("eigh_upper_batch",
           lambda m, x: (lambda w, v: (w, m.abs(v)))(*m.linalg.eigh(x, UPLO="U", stream=m.cpu)),
           lambda x: _ref_eigh(x, "U"), shapes=((2, 3, 3),), **TOL),
    OpCase("eigvalsh", lambda m, x: m.linalg.eigvalsh(x, stream=m.cpu), np.linalg.eigvalsh, shapes=((4, 4),),
           **TOL),
    OpCase("lu_factor", lambda m, x: m.linalg.lu_factor(x, stream=m.cpu), _ref_lu_factor, shapes=((4, 4),),
           **TOL),
    OpCase("lu_factor_wide", lambda m, x: m.linalg.lu_factor(x, stream=m.cpu), _ref_lu_factor,
           shapes=((3, 5),),
           **TOL),
    OpCase("lu", lambda m, x: m.linalg.lu(x, stream=m.cpu), _ref_lu, shapes=((4, 4),), **TOL),
    OpCase("lu_tall", lambda m, x: m.linalg.lu(x, stream=m.cpu), _ref_lu, shapes=((5, 3),), **TOL),
    OpCase("det", lambda m, x: m.linalg.det(x, stream=m.cpu), np.linalg.det, shapes=((3, 3),), **TOL),
    OpCase("det_batch_f64", lambda m, x: m.linalg.det(x, stream=m.cpu), np.linalg.det, shapes=((2, 4, 4),),
           dtypes=("float64",)),
    OpCase("det_int", lambda m, x: m.linalg.det(x, stream=m.cpu),
           lambda x: np.linalg.det(x).astype(np.float32),
           shapes=((3, 3),), dtypes=("int32",), rtol=1e-4, atol=1e-3),
    OpCase("slogdet", lambda m, x: m.linalg.slogdet(x, stream=m.cpu), _ref_slogdet, shapes=((2, 3, 3),),
           **TOL),
    OpCase("pinv", lambda m, x: m.linalg.pinv(x, stream=m.cpu), np.linalg.pinv, shapes=((3, 3),),
           gen=wellcond,
           **TOL),
    OpCase("pinv_wide", lambda m, x: m.linalg.pinv(x, stream=m.cpu), np.linalg.pinv, shapes=((2, 2, 4),),
           rtol=1e-3, atol=1e-5),
    OpCase("norm", lambda m, x: m.linalg.norm(x), np.linalg.norm, shapes=((2, 3, 4),), rtol=1e-5),
    OpCase("norm_vec_keep", lambda m, x: m.linalg.norm(x, axis=1, keepdims=True),
           lambda x: np.linalg.norm(x, axis=1, keepdims=True), shapes=((3, 4),)),
    OpCase("norm_vec_inf", lambda m, x: m.linalg.norm(x, INF), lambda x: np.linalg.norm(x, np.inf),
           shapes=((5,),)),
    OpCase("norm_vec_-inf", lambda m, x: m.linalg.norm(x, -INF, axis=0),
           lambda x: np.linalg.norm(x, -np.inf, axis=0),
           shapes=((5, 2),)),
    OpCase("norm_vec_0", lambda m, x: m.linalg.norm(x, 0, axis=-1), lambda x: np.linalg.norm(x, 0, axis=-1),
           shapes=((2, 5),), dtypes=("int32",)),
    OpCase("norm_vec_1", lambda m, x: m.linalg.norm(x, 1), lambda x: np.linalg.norm(x, 1), shapes=((5,),)),
    OpCase("norm_vec_3", lambda m, x: m.linalg.norm(x, 3, axis=0), lambda x: np.linalg.norm(x, 3, axis=0),
           shapes=((5, 2),), rtol=1e-5),
    OpCase("norm_vec_-1.5", lambda m, x: m.linalg.norm(x, -1.5), lambda x: np.linalg.norm(x, -1.5),
           shapes=((4,),),
           rtol=1e-5),
    OpCase("norm_fro", lambda m, x: m.linalg.norm(x, "fro"), lambda x: np.linalg.norm(x, "fro"),
           shapes=((3, 4),)),
    OpCase("norm_nuc_axes", lambda m, x: m.linalg.norm(x, "nuc", axis=(2, 0), keepdims=True, stream=m.cpu),
           lambda x: np.linalg.norm(x, "nuc", axis=(2, 0), keepdims=True), shapes=((3, 2, 4),), rtol=1e-5),
    OpCase("norm_2", lambda m, x: m.linalg.norm(x, 2, stream=m.cpu), lambda x: np.linalg.norm(x, 2),
           shapes=((3, 4),), rtol=1e-5),
    OpCase("norm_-2", lambda m, x: m.linalg.norm(x, -2, axis=(1, 2), stream=m.cpu),
           lambda x: np.linalg.norm(x, -2, axis=(1, 2)), shapes=((2, 3, 3),), **TOL),
    OpCase("norm_m1", lambda m, x: m.linalg.norm(x, 1), lambda x: np.linalg.norm(x, 1), shapes=((3, 4),)),
    OpCase("norm_m-1_axes", lambda m, x: m.linalg.norm(x, -1, axis=(2, 0)),
           lambda x: np.linalg.norm(x, -1, axis=(2, 0)), shapes=((3, 2, 4),)),
    OpCase("norm_minf_keep", lambda m, x: m.linalg.norm(x, INF, keepdims=True),
           lambda x: np.linalg.norm(x, np.inf, keepdims=True), shapes=((3, 4),)),
    OpCase("norm_m-inf", lambda m, x: m.linalg.norm(x, -INF, axis=(0, 1)),
           lambda x: np.linalg.norm(x, -np.inf, axis=(0, 1)), shapes=((3, 4, 2),)),
    OpCase("norm_int", lambda m, x: m.linalg.norm(x), lambda x: np.linalg.norm(x).astype(np.float32),
           shapes=((6,),), dtypes=("int32",)),
    OpCase("norm_f16", lambda m, x: m.linalg.norm(x, 3), lambda x: np.linalg.norm(x.astype(np.float32), 3),
           shapes=((6,),), dtypes=("float16",), rtol=3e-3, atol=1e-3),
    OpCase("cross", lambda m, a, b: m.linalg.cross(a, b), _cross_ref, shapes=((4, 3), (4, 3))),
    OpCase("cross_axis0_bcast", lambda m, a, b: m.linalg.cross(a, b, axis=0),
           lambda a, b: np.cross(a, b, axis=0), shapes=((3, 4), (3, 1))),
    OpCase("cross_2d", lambda m, a, b: m.linalg.cross(a, b),
           lambda a, b: np.cross(np.pad(a, [(0, 0), (0, 1)]), b), shapes=((2, 2), (2, 3))),
    OpCase("cross_int", lambda m, a, b: m.linalg.cross(a, b), _cross_ref, shapes=((3,), (3,)),
           dtypes=("int32",)),
]


@pytest.mark.parametrize("case", FORWARD, ids=str)
def test_forward(case):
    check_forward(case)


# ---------------------------------------------------------------- gradients
def _svd_parts(m, x, k):
    u, s, vt = m.linalg.svd(x)
    return u[..., :, :k], s, vt[..., :k, :]


GRADS = [
    OpCase("inv", lambda m, x: m.linalg.inv(x), shapes=((3, 3),), gen=wellcond),
    OpCase("solve", lambda m, a, b: m.linalg.solve(a, b), shapes=((3, 3), (3, 2)), gen=wellcond),
    OpCase("solve_vec_bcast", lambda m, a, b: m.linalg.solve(a, b), shapes=((2, 3, 3), (3,)), gen=wellcond),
    OpCase("solve_triangular_upper", lambda m, a, b: m.linalg.solve_triangular(a, b, upper=True),
           shapes=((3, 3), (3, 2)), gen=wellcond),
    OpCase("tri_inv", lambda m, x: m.linalg.tri_inv(x), shapes=((3, 3),), gen=wellcond),
    OpCase("cholesky", lambda m, x: m.linalg.cholesky(sym(m, x)), shapes=((3, 3),), gen=spd),
    OpCase("cholesky_upper", lambda m, x: m.linalg.cholesky(sym(m, x), upper=True), shapes=((2, 3, 3),),
           gen=spd),
    OpCase("cholesky_inv", lambda m, x: m.linalg.cholesky_inv(x), shapes=((3, 3),), gen=lower),
    OpCase("qr_square", lambda m, x: m.linalg.qr(x), shapes=((3, 3),), gen=wellcond),
    OpCase("qr_tall", lambda m, x: m.linalg.qr(x), shapes=((4, 2),)),
    OpCase("svd_s", lambda m, x: m.linalg.svd(x, compute_uv=False), shapes=((3, 3),)),
    OpCase("svd_s_wide", lambda m, x: m.linalg.svd(x, compute_uv=False), shapes=((2, 4),)),
    OpCase("svd_square", lambda m, x: _svd_parts(m, x, 3), shapes=((3, 3),)),
    OpCase("svd_tall", lambda m, x: _svd_parts(m, x, 2), shapes=((4, 2),)),
    OpCase("svd_wide", lambda m, x: _svd_parts(m, x, 2), shapes=((2, 3),)),
    OpCase("eigh", lambda m, x: m.linalg.eigh(sym(m, x)), shapes=((3, 3),), gen=spaced),
    OpCase("eigvalsh_upper", lambda m, x: m.linalg.eigvalsh(sym(m, x), UPLO="U"), shapes=((2, 3, 3),),
           gen=spaced),
    OpCase("lu_factor", lambda m, x: m.linalg.lu_factor(x)[0], shapes=((3, 3),)),
    OpCase("lu", lambda m, x: m.linalg.lu(x)[1:], shapes=((3, 3),)),
    OpCase("det", lambda m, x: m.linalg.det(x), shapes=((2, 3, 3),)),
    OpCase("slogdet", lambda m, x: m.linalg.slogdet(x)[1], shapes=((3, 3),)),
    OpCase("pinv", lambda m, x: m.linalg.pinv(x), shapes=((3, 3),), gen=wellcond),
    OpCase("pinv_tall", lambda m, x: m.linalg.pinv(x), shapes=((3, 2),)),
    OpCase("norm_fro", lambda m, x: m.linalg.norm(x, "fro"), shapes=((3, 2),)),
    OpCase("norm_nuc", lambda m, x: m.linalg.norm(x, "nuc"), shapes=((3, 2),)),
    OpCase("norm_2", lambda m, x: m.linalg.norm(x, 2, axis=(0, 1)), shapes=((2, 2, 3),)),
    OpCase("norm_inf", lambda m, x: m.linalg.norm(x, INF), shapes=((3, 4),)),
    OpCase("norm_vec_3", lambda m, x: m.linalg.norm(x, 3, axis=-1), shapes=((2, 4),)),
    OpCase("cross", lambda m, a, b: m.linalg.cross(a, b), shapes=((2, 3), (2, 3))),
]


@pytest.mark.parametrize("case", GRADS, ids=str)
def test_grads(case):
    check_grads(case, rtol=1e-4, atol=1e-6)


def test_nondifferentiable():
    a = mx.array(np.random.default_rng(0).standard_normal((3, 3)))
    with pytest.raises(NotImplementedError, match="Eig"):
        mx.grad(lambda x: mx.sum(mx.abs(mx.linalg.eigvals(x))))(a)
    with pytest.raises(NotImplementedError, match="QR"):
        mx.grad(lambda x: mx.sum(mx.linalg.qr(x)[1]))(a[:2])
    with pytest.raises(NotImplementedError, match="LU"):
        mx.grad(lambda x: mx.sum(mx.linalg.lu_factor(x)[0]))(a[:2])
    # Pivots are integer outputs: a function of them only has a zero gradient.
    g = mx.grad(lambda x: mx.sum(mx.linalg.lu_factor(x)[0]) * 0 + mx.sum(x))(a)
    np.testing.assert_allclose(np.array(g), np.ones((3, 3)))


# ---------------------------------------------------------------- vmap / compile
VMAP = [c for c in FORWARD if c.name in {
    "inv", "tri_inv_upper", "solve", "solve_vec", "solve_triangular_upper", "cholesky", "cholesky_inv", "qr",
    "svd", "svd_s", "eigh", "lu_factor", "lu", "det", "slogdet", "pinv_wide", "norm_nuc_axes", "norm_m1",
    "cross"}]


@pytest.mark.parametrize("case", VMAP, ids=str)
def test_vmap(case):
    check_vmap(case)


def test_vmap_eig():
    case = OpCase("eig", lambda m, x: m.abs(m.linalg.eigvals(x)), shapes=((3, 3),), gen=spaced)
    check_vmap(case)


def test_vmap_of_grad():
    rng = np.random.default_rng(3)
    xs = np.stack([spd(rng, (3, 3), None) for _ in range(2)])
    f = mx.grad(lambda x: mx.sum(mx.linalg.cholesky(sym(mx, x))) + mx.linalg.slogdet(x)[1])
    got = mx.vmap(f)(mx.array(xs))
    want = np.stack([np.array(f(mx.array(x))) for x in xs])
    np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", VMAP, ids=str)
def test_compile(case):
    check_compile(case)


# ---------------------------------------------------------------- invariants, edge cases
def test_eig_residual_and_values():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 4, 4)).astype(np.float32)
    w, v = mx.linalg.eig(mx.array(a), stream=mx.cpu)
    assert w.dtype == mx.complex64 and v.dtype == mx.complex64 and w.shape == (2, 4) and v.shape == (2, 4, 4)
    w, v = np.array(w), np.array(v)
    np.testing.assert_allclose(a @ v, v * w[:, None, :], atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(v, axis=-2), 1, rtol=1e-5)
    want = np.linalg.eigvals(a)
    for got_i, want_i in zip(w, want):
        np.testing.assert_allclose(np.sort_complex(got_i), np.sort_complex(want_i), **TOL)
    np.testing.assert_allclose(np.sort_complex(np.array(mx.linalg.eigvals(mx.array(a[0])))),
                               np.sort_complex(want[0]),
                               **TOL)
    # float64 input still gives complex64, as MLX.
    assert mx.linalg.eigvals(mx.array(a[0], dtype=mx.float64)).dtype == mx.complex64


@pytest.mark.parametrize("shape", [(3, 3), (4, 2), (2, 4), (2, 3, 5)])
def test_factor_reconstructions(shape):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32)
    a = mx.array(x)
    u, s, vt = (np.array(t) for t in mx.linalg.svd(a))
    k = s.shape[-1]
    np.testing.assert_allclose((u[..., :, :k] * s[..., None, :]) @ vt[..., :k, :], x, atol=1e-5)
    np.testing.assert_allclose(np.swapaxes(u, -1, -2) @ u, np.broadcast_to(np.eye(shape[-2]), u.shape),
                               atol=1e-5)
    q, r = (np.array(t) for t in mx.linalg.qr(a))
    np.testing.assert_allclose(q @ r, x, atol=1e-5)
    np.testing.assert_allclose(np.triu(r), r)
    p, low, up = (np.array(t) for t in mx.linalg.lu(a))
    np.testing.assert_allclose(np.take_along_axis(low, p[..., None].astype(np.int64), axis=-2) @ up, x,
                               atol=1e-5)
    assert np.all(np.abs(low) <= 1 + 1e-6)


def test_complex_svd_eigh():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((3, 3)) + 1j * rng.standard_normal((3, 3))).astype(np.complex64)
    h = x @ x.conj().T
    s = mx.linalg.svd(mx.array(x), compute_uv=False)
    assert s.dtype == mx.float32
    np.testing.assert_allclose(np.array(s), np.linalg.svd(x, compute_uv=False), rtol=1e-4)
    w, v = mx.linalg.eigh(mx.array(h))
    assert w.dtype == mx.float32 and v.dtype == mx.complex64
    np.testing.assert_allclose(np.array(w), np.linalg.eigvalsh(h), rtol=1e-4, atol=1e-4)
    # Complex norms are real (MLX returns complex64 for some orders).
    n = mx.linalg.norm(mx.array(x[0]), 1)
    assert n.dtype == mx.float32
    np.testing.assert_allclose(n.item(), np.linalg.norm(x[0], 1), rtol=1e-5)


def test_singular_and_empty():
    z = mx.zeros((3, 3))
    assert mx.linalg.det(z).item() == 0
    sign, logabs = mx.linalg.slogdet(z)
    assert sign.item() == 0 and logabs.item() == -INF
    np.testing.assert_allclose(np.array(mx.linalg.pinv(z)), np.zeros((3, 3)))
    e = mx.zeros((0, 0))
    assert mx.linalg.inv(e).shape == (0, 0)
    assert mx.linalg.det(e).item() == 1
    assert mx.linalg.pinv(mx.zeros((2, 0, 3))).shape == (2, 3, 0)
    assert mx.linalg.lu_factor(e)[1].shape == (0,)
    assert mx.linalg.inv(mx.zeros((0, 2, 2))).shape == (0, 2, 2)


def test_non_contiguous_and_streams():
    rng = np.random.default_rng(5)
    x = wellcond(rng, (3, 3), None).astype(np.float32)
    a = mx.swapaxes(mx.array(x), 0, 1)
    np.testing.assert_allclose(np.array(mx.linalg.inv(a)), np.linalg.inv(x.T), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(mx.linalg.det(a, stream=mx.default_stream(mx.default_device()))),
                               np.linalg.det(x.T), rtol=1e-5)
    # solve promotes: float32 with int32 is float32, float32 with float16 too.
    b = mx.ones((3, 2), dtype=mx.int32)
    assert mx.linalg.solve(a, b).dtype == mx.float32
    assert mx.linalg.solve(a, b.astype(mx.float16)).dtype == mx.float32
    assert mx.linalg.solve(a.astype(mx.float64), b).dtype == mx.float64
    assert mx.linalg.det(a.astype(mx.float16)).dtype == mx.float16
    assert mx.linalg.norm(mx.array([3, 4])).item() == 5


# ---------------------------------------------------------------- errors, vs MLX
def _raises_like_mlx(fn, *arrays):
    """``fn(m, *arrays)`` raises the same error type in kiln and in MLX; returns kiln's message."""
    with pytest.raises(Exception) as ours:
        fn(mx, *[mx.array(a) for a in arrays])
    if mlx_core is not None:
        with pytest.raises(Exception) as theirs:
            fn(mlx_core, *[mlx_core.array(a) for a in arrays])
        assert type(ours.value) is type(theirs.value), (ours.value, theirs.value)
        # Same op name in brackets, where MLX names one.
        theirs_msg = str(theirs.value)
        assert "]" not in theirs_msg or str(ours.value).split("]")[0] == theirs_msg.split("]")[0]
    return str(ours.value)


F1 = np.ones((3,), np.float32)
F23 = np.ones((2, 3), np.float32)
F33 = np.eye(3, dtype=np.float32)
I33 = np.eye(3, dtype=np.int32)

ERRORS = [
    ("inv_1d", lambda m, x: m.linalg.inv(x, stream=m.cpu), (F1,)),
    ("inv_nonsquare", lambda m, x: m.linalg.inv(x, stream=m.cpu), (F23,)),
    ("inv_int", lambda m, x: m.linalg.inv(x, stream=m.cpu), (I33,)),
    ("inv_f16", lambda m, x: m.linalg.inv(x.astype(m.float16), stream=m.cpu), (F33,)),
    ("tri_inv_nonsquare", lambda m, x: m.linalg.tri_inv(x, stream=m.cpu), (F23,)),
    ("cholesky_nonsquare", lambda m, x: m.linalg.cholesky(x, stream=m.cpu), (F23,)),
    ("cholesky_inv_1d", lambda m, x: m.linalg.cholesky_inv(x, stream=m.cpu), (F1,)),
    ("qr_1d", lambda m, x: m.linalg.qr(x, stream=m.cpu), (F1,)),
    ("qr_complex", lambda m, x: m.linalg.qr(x.astype(m.complex64), stream=m.cpu), (F33,)),
    ("svd_1d", lambda m, x: m.linalg.svd(x, stream=m.cpu), (F1,)),
    ("svd_int", lambda m, x: m.linalg.svd(x, stream=m.cpu), (I33,)),
    ("eigh_nonsquare", lambda m, x: m.linalg.eigh(x, stream=m.cpu), (F23,)),
    ("eigvalsh_1d", lambda m, x: m.linalg.eigvalsh(x, stream=m.cpu), (F1,)),
    ("eig_nonsquare", lambda m, x: m.linalg.eig(x, stream=m.cpu), (F23,)),
    ("lu_int", lambda m, x: m.linalg.lu(x, stream=m.cpu), (I33,)),
    ("lu_factor_1d", lambda m, x: m.linalg.lu_factor(x, stream=m.cpu), (F1,)),
    ("det_nonsquare", lambda m, x: m.linalg.det(x, stream=m.cpu), (F23,)),
    ("det_complex", lambda m, x: m.linalg.det(x.astype(m.complex64), stream=m.cpu), (F33,)),
    ("slogdet_1d", lambda m, x: m.linalg.slogdet(x, stream=m.cpu), (F1,)),
    ("pinv_int", lambda m, x: m.linalg.pinv(x, stream=m.cpu), (I33,)),
    ("solve_1d", lambda m, a, b: m.linalg.solve(a, b, stream=m.cpu), (F1, F1)),
    ("solve_nonsquare", lambda m, a, b: m.linalg.solve(a, b, stream=m.cpu), (F23, F23)),
    ("solve_mismatch", lambda m, a, b: m.linalg.solve(a, b, stream=m.cpu), (F33, F23)),
    ("solve_int", lambda m, a, b: m.linalg.solve(a, b, stream=m.cpu), (I33, I33)),
    ("solve_triangular_mismatch", lambda m, a, b: m.linalg.solve_triangular(a, b, stream=m.cpu),
     (F33, np.ones((4,), np.float32))),
    ("norm_3d_ord", lambda m, x: m.linalg.norm(x.reshape(1, 1, 3), 2), (F1,)),
    ("norm_fro_vec", lambda m, x: m.linalg.norm(x, "fro"), (F1,)),
    ("norm_bad_str", lambda m, x: m.linalg.norm(x, "abc"), (F33,)),
    ("norm_matrix_ord3", lambda m, x: m.linalg.norm(x, 3), (F33,)),
    ("norm_axis_oob", lambda m, x: m.linalg.norm(x, axis=4), (F33,)),
    ("norm_too_many_axes", lambda m, x: m.linalg.norm(x.reshape(1, 3, 3), axis=(0, 1, 2)), (F33,)),
    ("cross_size4", lambda m, a, b: m.linalg.cross(a, b), (np.ones(4), np.ones(4))),
    ("cross_axis_oob", lambda m, a, b: m.linalg.cross(a, b, axis=2), (F1, F1)),
    ("cross_0d", lambda m, a, b: m.linalg.cross(a, b), (np.float32(1), np.float32(1))),
]


@needs_mlx
@pytest.mark.parametrize("name,fn,arrays", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(name, fn, arrays):
    _raises_like_mlx(fn, *arrays)


def test_error_messages():
    with pytest.raises(ValueError, match=r"\[linalg::inv\] Arrays must have type float32 or float64\. "
                                         r"Received array with type int32\."):
        mx.linalg.inv(mx.array(I33))
    with pytest.raises(ValueError,
                       match=r"\[linalg::solve\] Last dimension of first input with shape \(3,3\)"):
        mx.linalg.solve(mx.array(F33), mx.array(F23))
    with pytest.raises(ValueError, match="UPLO"):
        mx.linalg.eigh(mx.array(F33), UPLO="X")
    with pytest.raises(ValueError, match="Received too many axes"):
        mx.linalg.norm(mx.ones((2, 2, 2)), 1)


def test_matrix_norm_alias():
    assert mx.linalg.matrix_norm is mx.linalg.norm
    if mlx_core is not None:
        assert hasattr(mlx_core, "matrix_norm")
