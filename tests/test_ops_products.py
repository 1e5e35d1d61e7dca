"""Matrix and tensor products: forward vs NumPy and MLX, gradients, vmap,
compile, and MLX's errors."""

from __future__ import annotations

import numpy as np
import pytest
from harness import OpCase, check_compile, check_forward, check_grads, check_vmap, mlx_core, needs_mlx

import kiln.core as mx



def _gather_mm_ref(a, b, li, ri):
    af = a.reshape((-1,) + a.shape[-2:])
    bf = b.reshape((-1,) + b.shape[-2:])
    li, ri = np.broadcast_arrays(li, ri)
    return af[li] @ bf[ri]


def _kron(a, b):
    return np.kron(a, b)


def _idx(hi):
    return lambda rng, s, d: rng.integers(0, hi, s).astype(d)


F16_TOL = {"rtol": 1e-2, "atol": 1e-2}

CASES = [
    OpCase("matmul", lambda m, a, b: m.matmul(a, b), np.matmul, shapes=((2, 3), (3, 4))),
    OpCase("matmul_op", lambda m, a, b: a @ b, np.matmul, shapes=((2, 3), (3, 2))),
    OpCase("matmul_outer_stack", lambda m, a, b: m.matmul(a, b), np.matmul, shapes=((3, 4, 1), (3, 1, 5))),
    OpCase("matmul_outer_bcast", lambda m, a, b: m.matmul(a, b), np.matmul, shapes=((2, 1, 4, 1), (3, 1, 5))),
    OpCase("matmul_stack_2d", lambda m, a, b: m.matmul(a, b), np.matmul, shapes=((2, 3, 4), (4, 5))),
    OpCase("matmul_vec_vec", lambda m, a, b: m.matmul(a, b), np.matmul, shapes=((3,), (3,))),
    OpCase("matmul_mat_vec", lambda m, a, b: m.matmul(a, b), np.matmul, shapes=((2, 3), (3,))),
    OpCase("matmul_vec_batch", lambda m, a, b: m.matmul(a, b), np.matmul, shapes=((3,), (2, 3, 2))),
    OpCase("matmul_batch_bcast", lambda m, a, b: m.matmul(a, b), np.matmul, shapes=((2, 1, 2, 3), (3, 3, 2))),
    OpCase("matmul_batch_1", lambda m, a, b: m.matmul(a, b), np.matmul, shapes=((1, 2, 3), (2, 3, 2))),
    OpCase("matmul_T", lambda m, a, b: m.matmul(a.T, b), lambda a, b: a.T @ b, shapes=((3, 2), (3, 2))),
    OpCase("matmul_empty", lambda m, a, b: m.matmul(a, b), np.matmul, shapes=((2, 0), (0, 3))),
    OpCase(
        "matmul_f16",
        lambda m, a, b: m.matmul(a, b),
        lambda a, b: (a.astype(np.float32) @ b).astype(np.float16),
        shapes=((2, 3), (3, 2)),
        dtypes=("float16",),
        grad=False,
        **F16_TOL,
    ),
    OpCase(
        "matmul_mixed",
        lambda m, a, b: m.matmul(a, b),
        lambda a, b: a @ b.astype(np.float32),
        shapes=((2, 3), (3, 2)),
        dtypes=("float32", "int32"),
    ),
    OpCase(
        "matmul_c64",
        lambda m, a, b: m.matmul(a, b),
        np.matmul,
        shapes=((2, 3), (3, 2)),
        dtypes=("complex64",),
        gen=lambda rng, s, d: (rng.standard_normal(s) + 1j * rng.standard_normal(s)).astype(d),
        grad=False,
    ),
    OpCase(
        "addmm",
        lambda m, c, a, b: m.addmm(c, a, b),
        lambda c, a, b: c + a @ b,
        shapes=((2, 2), (2, 3), (3, 2)),
    ),
    OpCase(
        "addmm_scaled",
        lambda m, c, a, b: m.addmm(c, a, b, 2.0, 0.5),
        lambda c, a, b: 0.5 * c + 2 * (a @ b),
        shapes=((2,), (2, 3), (3, 2)),
    ),
    OpCase(
        "addmm_batch",
        lambda m, c, a, b: m.addmm(c, a, b, -1.0, 3.0),
        lambda c, a, b: 3 * c - a @ b,
        shapes=((2, 1, 2), (2, 2, 3), (3, 2)),
    ),
    OpCase("inner", lambda m, a, b: m.inner(a, b), np.inner, shapes=((2, 3), (4, 3))),
    OpCase("inner_vec", lambda m, a, b: m.inner(a, b), np.inner, shapes=((3,), (3,))),
    OpCase("inner_0d", lambda m, a, b: m.inner(a, b), np.inner, shapes=((), (2, 3))),
    OpCase("outer", lambda m, a, b: m.outer(a, b), np.outer, shapes=((3,), (2, 2))),
    OpCase("outer_int", lambda m, a, b: m.outer(a, b), np.outer, shapes=((3,), (2,)), dtypes=("int32",),
           grad=False),
    OpCase(
        "tensordot_int",
        lambda m, a, b: m.tensordot(a, b, 1),
        lambda a, b: np.tensordot(a, b, 1),
        shapes=((2, 3), (3, 2)),
    ),
    OpCase(
        "tensordot_2",
        lambda m, a, b: m.tensordot(a, b),
        lambda a, b: np.tensordot(a, b),
        shapes=((2, 2, 3), (2, 3, 2)),
    ),
    OpCase(
        "tensordot_pairs",
        lambda m, a, b: m.tensordot(a, b, [[0, 2], [1, 0]]),
        lambda a, b: np.tensordot(a, b, [[0, 2], [1, 0]]),
        shapes=((2, 3, 2), (2, 2, 3)),
    ),
    OpCase(
        "tensordot_0",
        lambda m, a, b: m.tensordot(a, b, 0),
        lambda a, b: np.tensordot(a, b, 0),
        shapes=((2,), (3,)),
    ),
    OpCase(
        "einsum_mm",
        lambda m, a, b: m.einsum("ij,jk->ik", a, b),
        lambda a, b: np.einsum("ij,jk->ik", a, b),
        shapes=((2, 3), (3, 2)),
    ),
    OpCase(
        "einsum_implicit",
        lambda m, a, b: m.einsum("ij,kj", a, b),
        lambda a, b: np.einsum("ij,kj", a, b),
        shapes=((2, 3), (2, 3)),
    ),
    OpCase("einsum_trace", lambda m, a: m.einsum("ii", a), lambda a: np.einsum("ii", a), shapes=((3, 3),)),
    OpCase(
        "einsum_diag", lambda m, a: m.einsum("ii->i", a), lambda a: np.einsum("ii->i", a), shapes=((3, 3),)
    ),
    OpCase(
        "einsum_sum",
        lambda m, a: m.einsum("ijk->j", a),
        lambda a: np.einsum("ijk->j", a),
        shapes=((2, 3, 2),),
    ),
    OpCase(
        "einsum_perm",
        lambda m, a: m.einsum("ijk->kij", a),
        lambda a: np.einsum("ijk->kij", a),
        shapes=((2, 3, 2),),
    ),
    OpCase(
        "einsum_batch",
        lambda m, a, b: m.einsum("bij,bjk->bik", a, b),
        lambda a, b: np.einsum("bij,bjk->bik", a, b),
        shapes=((2, 2, 3), (2, 3, 2)),
    ),
    OpCase(
        "einsum_three",
        lambda m, a, b, c: m.einsum("ij,jk,kl->il", a, b, c),
        lambda a, b, c: np.einsum("ij,jk,kl->il", a, b, c),
        shapes=((2, 3), (3, 2), (2, 2)),
    ),
    OpCase(
        "einsum_ellipsis",
        lambda m, a, b: m.einsum("...ij,...jk", a, b),
        lambda a, b: np.einsum("...ij,...jk", a, b),
        shapes=((2, 2, 3), (3, 2)),
    ),
    OpCase(
        "einsum_outer",
        lambda m, a, b: m.einsum("i,j->ij", a, b),
        lambda a, b: np.einsum("i,j->ij", a, b),
        shapes=((3,), (2,)),
    ),
    OpCase(
        "einsum_bcast1",
        lambda m, a, b: m.einsum("i,i", a, b),
        lambda a, b: np.sum(a * b),
        shapes=((1,), (3,)),
    ),
    OpCase(
        "einsum_mixed_diag",
        lambda m, a, b: m.einsum("iij,jk->ik", a, b),
        lambda a, b: np.einsum("iij,jk->ik", a, b),
        shapes=((2, 2, 3), (3, 2)),
    ),
    OpCase("kron", lambda m, a, b: m.kron(a, b), _kron, shapes=((2, 2), (2, 3))),
    OpCase("kron_rank", lambda m, a, b: m.kron(a, b), _kron, shapes=((2, 3), (2,))),
    OpCase("kron_int", lambda m, a, b: m.kron(a, b), _kron, shapes=((2, 2), (2,)), dtypes=("int32", "int8"),
           grad=False),
    OpCase("vecdot", lambda m, a, b: m.vecdot(a, b), lambda a, b: np.sum(a * b, -1), shapes=((2, 3), (2, 3))),
    OpCase(
        "vecdot_axis",
        lambda m, a, b: m.vecdot(a, b, axis=0),
        lambda a, b: np.sum(a * b, 0),
        shapes=((2, 3), (2, 3)),
    ),
    OpCase("block_masked_mm", lambda m, a, b: m.block_masked_mm(a, b, 2), np.matmul, shapes=((3, 5), (5, 3))),
    OpCase(
        "hadamard",
        lambda m, a: m.hadamard_transform(a),
        lambda a: a @ (np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2),
        shapes=((2, 4),),
    ),
    OpCase(
        "hadamard_scale",
        lambda m, a: m.hadamard_transform(a, 1.0),
        lambda a: np.stack([a[..., 0] + a[..., 1], a[..., 0] - a[..., 1]], -1),
        shapes=((3, 2),),
    ),
]

GATHER = [
    OpCase(
        "gather_mm",
        lambda m, a, b, li, ri: m.gather_mm(a, b, li, ri),
        _gather_mm_ref,
        shapes=((3, 2, 3), (4, 3, 2), (2,), (2,)),
        dtypes=("float32", "float32", "int32", "int32"),
        gen=None,
        grad_argnums=(0, 1),
    ),
    OpCase(
        "gather_mm_bcast",
        lambda m, a, b, li: m.gather_mm(a, b, li),
        lambda a, b, li: _gather_mm_ref(a, b, li, np.arange(2)),
        shapes=((3, 2, 3), (2, 3, 2), (2,)),
        dtypes=("float32", "float32", "int32"),
        grad_argnums=(0, 1),
    ),
]
for _c in GATHER:
    _c.gen = lambda rng, s, d: (
        rng.integers(0, 2, s).astype(d) if np.dtype(d).kind == "i" else rng.standard_normal(s).astype(d)
    )


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward(case):
    check_forward(case)


@pytest.mark.parametrize("case", [c for c in CASES if c.grad], ids=str)
def test_grads(case):
    check_grads(case)


@pytest.mark.parametrize("case", [c for c in CASES if c.vmap], ids=str)
def test_vmap(case):
    check_vmap(case)


@pytest.mark.parametrize("case", [c for c in CASES if c.compile], ids=str)
def test_compile(case):
    check_compile(case)


@pytest.mark.parametrize("case", GATHER, ids=str)
def test_gather_mm(case):
    check_forward(case)
    check_grads(case)


@pytest.mark.skipif(mlx_core is None, reason="real MLX not installed")
def test_einsum_path_matches_mlx():
    for subs, shapes in [
        ("ij,jk->ik", [(2, 3), (3, 4)]),
        ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
        ("ii", [(3, 3)]),
        ("ij->j", [(3, 3)]),
        ("i,j,k", [(2,), (3,), (4,)]),
        ("ij,jk", [(2, 3), (3, 4)]),
    ]:
        got = mx.einsum_path(subs, *[mx.ones(s) for s in shapes])
        want = mlx_core.einsum_path(subs, *[mlx_core.ones(s) for s in shapes])
        assert got[0] == want[0], subs
        assert got[1] == want[1], subs


@needs_mlx
def test_matmul_dtypes_match_mlx():
    for da, db in [
        ("float16", "float16"),
        ("bfloat16", "float16"),
        ("float64", "float32"),
        ("float16", "int32"),
    ]:
        a = mx.ones((2, 3), getattr(mx, da))
        b = mx.ones((3, 2), getattr(mx, db))
        want = mlx_core.matmul(
            mlx_core.ones((2, 3), getattr(mlx_core, da)), mlx_core.ones((3, 2), getattr(mlx_core, db))
        )
        got = mx.matmul(a, b)
        assert got.dtype.name == str(want.dtype).rsplit(".", 1)[-1]
        np.testing.assert_array_equal(
            np.array(got.astype(mx.float32)), np.array(want.astype(mlx_core.float32))
        )


def test_matmul_float32_is_one_blas_node():
    a, b = mx.ones((4, 3)), mx.ones((3, 5))
    out = mx.matmul(a, b)
    assert type(out._prim).__name__ == "Matmul" and out._inputs == (a, b)


def test_vmap_matmul_unbatched_weight_is_not_copied():
    w = mx.array(np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32))
    xs = mx.array(np.random.default_rng(1).standard_normal((4, 5, 3)).astype(np.float32))
    out = mx.vmap(lambda x: x @ w)(xs)
    np.testing.assert_allclose(np.array(out), np.array(xs) @ np.array(w), rtol=1e-5, atol=1e-6)
    # The batch is folded into the rows: w enters one Matmul as is, never broadcast.
    from kiln.graph.eval import toposort

    for node in toposort([out]):
        if node._prim is not None and type(node._prim).__name__ == "BroadcastTo":
            raise AssertionError("vmap of matmul broadcast an unbatched operand")


def test_addmm_grad_of_c():
    a, b = mx.ones((2, 3)), mx.ones((3, 2))
    g = mx.grad(lambda c: mx.sum(mx.addmm(c, a, b, 2.0, 0.25)))(mx.zeros((2,)))
    np.testing.assert_allclose(np.array(g), np.full(2, 0.25 * 2))


# ---------------------------------------------------------------- errors
ERRORS = [
    lambda m: m.matmul(m.ones((2, 3)), m.ones((4, 5))),
    lambda m: m.matmul(m.ones((2, 3), m.int32), m.ones((3, 2), m.int32)),
    lambda m: m.matmul(m.ones((2, 3), m.int8), m.ones((3, 2), m.uint8)),
    lambda m: m.matmul(m.ones((2, 3), m.bool_), m.ones((3, 2), m.bool_)),
    lambda m: m.matmul(m.ones(()), m.ones(3)),
    lambda m: m.matmul(m.ones(3), m.ones(4)),
    lambda m: m.matmul(m.ones((2, 3, 4)), m.ones((5, 4, 2))),
    lambda m: m.addmm(m.ones((5,)), m.ones((2, 3)), m.ones((3, 2))),
    lambda m: m.addmm(m.ones((2, 2), m.int32), m.ones((2, 3), m.int32), m.ones((3, 2), m.int32)),
    lambda m: m.inner(m.ones((2, 3)), m.ones((4, 2))),
    lambda m: m.inner(m.ones(3, m.int32), m.ones(3, m.int32)),
    lambda m: m.tensordot(m.ones((2, 3)), m.ones((3, 4)), [[0], [0]]),
    lambda m: m.tensordot(m.ones((2, 3)), m.ones((3, 4)), 3),
    lambda m: m.einsum("ij,jk->ik", m.ones((2, 3)), m.ones((4, 2))),
    lambda m: m.einsum("ij,jk->ik", m.ones((2, 3))),
    lambda m: m.einsum("ij", m.ones(3)),
    lambda m: m.einsum("ij,jk", m.ones((2, 3), m.int32), m.ones((3, 2), m.int32)),
    lambda m: m.block_masked_mm(m.ones((4, 4)), m.ones((4, 4)), 2, mask_out=m.ones((2, 2), m.bool_)),
    lambda m: m.gather_mm(m.ones((3, 2, 4)), m.ones((5, 4, 2)), m.array([0.0]), None),
    lambda m: m.gather_mm(m.ones((3, 2, 4), m.int32), m.ones((5, 4, 2), m.int32), m.array([0]), None),
]


@pytest.mark.skipif(mlx_core is None, reason="real MLX not installed")
@pytest.mark.parametrize("k", range(len(ERRORS)))
def test_errors_match_mlx(k):
    fn = ERRORS[k]
    with pytest.raises(Exception) as want:
        fn(mlx_core)
    with pytest.raises(type(want.value)) as got:
        fn(mx)
    assert str(got.value) == str(want.value)
