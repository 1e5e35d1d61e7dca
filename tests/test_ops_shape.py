"""Creation and shape ops: forward vs NumPy and MLX, gradients, vmap, compile,
and MLX's errors."""

from __future__ import annotations

import numpy as np
import pytest
from harness import OpCase, check_compile, check_forward, check_grads, check_vmap, mlx_core, needs_mlx

import kiln.core as mx



def _np_pad(x, w, mode="constant", **kw):
    return np.pad(x, w, mode=mode, **kw)


def _np_diag_offset(x, k):
    return np.diagonal(x, k)


CASES = [
    # reshaping
    OpCase("reshape", lambda m, x: m.reshape(x, (4, -1)), lambda x: x.reshape(4, -1)),
    OpCase("reshape_0d", lambda m, x: m.reshape(x, (1, 1)), lambda x: x.reshape(1, 1), shapes=((),)),
    OpCase("reshape_T", lambda m, x: m.reshape(x.T, (-1,)), lambda x: x.T.reshape(-1)),
    OpCase("flatten", lambda m, x: m.flatten(x, 1, -1), lambda x: x.reshape(2, -1), shapes=((2, 3, 2),)),
    OpCase("flatten_0d", lambda m, x: m.flatten(x), lambda x: x.reshape(1), shapes=((),)),
    OpCase("unflatten", lambda m, x: m.unflatten(x, -1, (2, -1)), lambda x: x.reshape(3, 2, 2)),
    OpCase(
        "squeeze", lambda m, x: m.squeeze(x, (0, -1)), lambda x: x.squeeze((0, 3)), shapes=((1, 3, 2, 1),)
    ),
    OpCase("squeeze_all", lambda m, x: m.squeeze(x), lambda x: x.squeeze(), shapes=((1, 3, 1),)),
    OpCase("expand_dims", lambda m, x: m.expand_dims(x, (0, -1)), lambda x: x[None, :, :, None]),
    OpCase(
        "transpose",
        lambda m, x: m.transpose(x, (2, 0, 1)),
        lambda x: x.transpose(2, 0, 1),
        shapes=((2, 3, 2),),
    ),
    OpCase(
        "transpose_neg",
        lambda m, x: m.transpose(x, (-1, 0, 1)),
        lambda x: x.transpose(2, 0, 1),
        shapes=((2, 3, 2),),
    ),
    OpCase("permute_dims", lambda m, x: m.permute_dims(x), lambda x: x.T),
    OpCase(
        "matrix_transpose",
        lambda m, x: m.matrix_transpose(x),
        lambda x: np.swapaxes(x, -1, -2),
        shapes=((2, 3, 2),),
    ),
    OpCase(
        "swapaxes", lambda m, x: m.swapaxes(x, 0, -1), lambda x: np.swapaxes(x, 0, -1), shapes=((2, 3, 2),)
    ),
    OpCase(
        "moveaxis", lambda m, x: m.moveaxis(x, 0, -1), lambda x: np.moveaxis(x, 0, -1), shapes=((2, 3, 2),)
    ),
    OpCase(
        "broadcast_to",
        lambda m, x: m.broadcast_to(x, (2, 3, 4)),
        lambda x: np.broadcast_to(x, (2, 3, 4)),
        shapes=((3, 1),),
    ),
    OpCase(
        "broadcast_arrays",
        lambda m, x, y: m.broadcast_arrays(x, y),
        lambda x, y: np.broadcast_arrays(x, y),
        shapes=((3, 1), (4,)),
    ),
    # joining, splitting
    OpCase(
        "concatenate",
        lambda m, x, y: m.concatenate([x, y], axis=-1),
        lambda x, y: np.concatenate([x, y], -1),
        shapes=((3, 2), (3, 4)),
    ),
    OpCase(
        "concatenate_promote",
        lambda m, x, y: m.concatenate([x, y]),
        lambda x, y: np.concatenate([x, y.astype(x.dtype)]),
        shapes=((2, 3), (1, 3)),
        dtypes=("float32", "int32"),
    ),
    OpCase(
        "concatenate_none",
        lambda m, x, y: m.concatenate([x, y], axis=None),
        lambda x, y: np.concatenate([x.ravel(), y.ravel()]),
        shapes=((2, 2), (3,)),
    ),
    OpCase(
        "concat",
        lambda m, x, y: m.concat([x, y], 0),
        lambda x, y: np.concatenate([x, y]),
        shapes=((2, 3), (1, 3)),
    ),
    OpCase(
        "stack",
        lambda m, x, y: m.stack([x, y], axis=-1),
        lambda x, y: np.stack([x, y], -1),
        shapes=((2, 3), (2, 3)),
    ),
    OpCase("unstack", lambda m, x: m.unstack(x, axis=1), lambda x: [x[:, i] for i in range(4)]),
    OpCase("split_sections", lambda m, x: m.split(x, 2, axis=1), lambda x: np.split(x, 2, 1)),
    OpCase("split_indices", lambda m, x: m.split(x, [1, -1], axis=-1), lambda x: np.split(x, [1, 3], -1)),
    OpCase(
        "split_unordered", lambda m, x: m.split(x, [3, 1]), lambda x: [x[:3], x[3:1], x[1:]], shapes=((5, 2),)
    ),
    OpCase("tile", lambda m, x: m.tile(x, (2, 1, 2)), lambda x: np.tile(x, (2, 1, 2)), shapes=((2, 3),)),
    OpCase("tile_int", lambda m, x: m.tile(x, 3), lambda x: np.tile(x, 3), shapes=((2, 2),)),
    OpCase("repeat", lambda m, x: m.repeat(x, 2, axis=-1), lambda x: np.repeat(x, 2, -1), shapes=((2, 3),)),
    OpCase("repeat_flat", lambda m, x: m.repeat(x, 3), lambda x: np.repeat(x, 3), shapes=((2, 2),)),
    OpCase("roll", lambda m, x: m.roll(x, 2), lambda x: np.roll(x, 2)),
    OpCase("roll_axes", lambda m, x: m.roll(x, (1, -3), (0, 1)), lambda x: np.roll(x, (1, -3), (0, 1))),
    OpCase("roll_one_shift", lambda m, x: m.roll(x, 5, (0, 1)), lambda x: np.roll(x, (5, 5), (0, 1))),
    # padding
    OpCase(
        "pad_constant",
        lambda m, x: m.pad(x, [(1, 2), (0, 1)], constant_values=1.5),
        lambda x: _np_pad(x, [(1, 2), (0, 1)], constant_values=1.5),
    ),
    OpCase("pad_int", lambda m, x: m.pad(x, 2), lambda x: _np_pad(x, 2), shapes=((2, 3),)),
    OpCase("pad_pair", lambda m, x: m.pad(x, (1, 2)), lambda x: _np_pad(x, (1, 2)), shapes=((2, 3),)),
    OpCase(
        "pad_value_array",
        lambda m, x, v: m.pad(x, 1, constant_values=v),
        lambda x, v: _np_pad(x, 1, constant_values=v.item()),
        shapes=((2, 3), ()),
    ),
    OpCase(
        "pad_edge",
        lambda m, x: m.pad(x, [(1, 2), (2, 0)], mode="edge"),
        lambda x: _np_pad(x, [(1, 2), (2, 0)], "edge"),
    ),
    OpCase(
        "pad_reflect",
        lambda m, x: m.pad(x, [(2, 1), (3, 3)], mode="reflect"),
        lambda x: _np_pad(x, [(2, 1), (3, 3)], "reflect"),
    ),
    OpCase(
        "pad_reflect_wide",
        lambda m, x: m.pad(x, 5, mode="reflect"),
        lambda x: _np_pad(x, 5, "reflect"),
        shapes=((3,),),
    ),
    OpCase(
        "pad_symmetric",
        lambda m, x: m.pad(x, [(2, 1), (4, 3)], mode="symmetric"),
        lambda x: _np_pad(x, [(2, 1), (4, 3)], "symmetric"),
    ),
    OpCase(
        "pad_symmetric_wide",
        lambda m, x: m.pad(x, 7, mode="symmetric"),
        lambda x: _np_pad(x, 7, "symmetric"),
        shapes=((3,),),
    ),
    # triangles, diagonals
    OpCase("tril", lambda m, x: m.tril(x), lambda x: np.tril(x)),
    OpCase("triu_k", lambda m, x: m.triu(x, 1), lambda x: np.triu(x, 1), shapes=((2, 3, 3),)),
    OpCase("tril_neg", lambda m, x: m.tril(x, -1), lambda x: np.tril(x, -1)),
    OpCase("diag_vec", lambda m, x: m.diag(x), lambda x: np.diag(x), shapes=((3,),)),
    OpCase("diag_vec_k", lambda m, x: m.diag(x, 2), lambda x: np.diag(x, 2), shapes=((3,),)),
    OpCase("diag_vec_negk", lambda m, x: m.diag(x, -1), lambda x: np.diag(x, -1), shapes=((3,),)),
    OpCase("diag_mat", lambda m, x: m.diag(x, 1), lambda x: np.diag(x, 1)),
    OpCase("diagonal", lambda m, x: m.diagonal(x), lambda x: np.diagonal(x)),
    OpCase(
        "diagonal_axes",
        lambda m, x: m.diagonal(x, 1, 2, 0),
        lambda x: np.diagonal(x, 1, 2, 0),
        shapes=((2, 3, 4),),
    ),
    OpCase(
        "diagonal_neg",
        lambda m, x: m.diagonal(x, -2, -1, -2),
        lambda x: np.diagonal(x, -2, -1, -2),
        shapes=((2, 3, 4),),
    ),
    OpCase("diagonal_empty", lambda m, x: m.diagonal(x, 5), lambda x: np.diagonal(x, 5)),
    OpCase("trace", lambda m, x: m.trace(x), lambda x: np.trace(x)),
    OpCase(
        "trace_axes", lambda m, x: m.trace(x, 1, 1, 2), lambda x: np.trace(x, 1, 1, 2), shapes=((2, 3, 3),)
    ),
    OpCase(
        "trace_int8",
        lambda m, x: m.trace(x),
        lambda x: np.trace(x).astype(np.int32),
        dtypes=("int8",),
        grad=False,
    ),
    OpCase("flip", lambda m, x: m.flip(x), lambda x: np.flip(x)),
    OpCase("flip_axis", lambda m, x: m.flip(x, -1), lambda x: np.flip(x, -1), shapes=((2, 3, 2),)),
    OpCase(
        "as_strided",
        lambda m, x: m.as_strided(x, (3, 3), (1, 2), 1),
        lambda x: np.lib.stride_tricks.as_strided(x.ravel()[1:], (3, 3), (x.itemsize, 2 * x.itemsize)),
    ),
    OpCase(
        "as_strided_T",
        lambda m, x: m.as_strided(x.T, (4, 2), (3, 1)),
        lambda x: np.lib.stride_tricks.as_strided(
            np.ascontiguousarray(x.T), (4, 2), (3 * x.itemsize, x.itemsize)
        ),
    ),
    OpCase("contiguous", lambda m, x: m.contiguous(x.T), lambda x: x.T),
    OpCase(
        "atleast_3d",
        lambda m, x, y: m.atleast_3d(x, y),
        lambda x, y: [np.atleast_3d(x), np.atleast_3d(y)],
        shapes=((3,), (2, 3)),
    ),
    OpCase("atleast_2d", lambda m, x: m.atleast_2d(x), lambda x: np.atleast_2d(x), shapes=((),)),
    OpCase(
        "meshgrid_xy", lambda m, x, y: m.meshgrid(x, y), lambda x, y: np.meshgrid(x, y), shapes=((2,), (3,))
    ),
    OpCase(
        "meshgrid_ij",
        lambda m, x, y, z: m.meshgrid(x, y, z, indexing="ij"),
        lambda x, y, z: np.meshgrid(x, y, z, indexing="ij"),
        shapes=((2,), (3,), (2,)),
    ),
    OpCase(
        "meshgrid_sparse",
        lambda m, x, y: m.meshgrid(x, y, sparse=True),
        lambda x, y: np.meshgrid(x, y, sparse=True),
        shapes=((2,), (3,)),
    ),
    OpCase("full_like", lambda m, x: m.full_like(x, 2.5), lambda x: np.full_like(x, 2.5), grad=False),
    OpCase(
        "full_like_int",
        lambda m, x: m.full_like(x, 2.5),
        lambda x: np.full_like(x, 2),
        dtypes=("int32",),
        grad=False,
    ),
    OpCase("view", lambda m, x: m.view(x, m.uint8), lambda x: x.view(np.uint8), grad=False),
    OpCase("view_int16", lambda m, x: m.view(x, m.float16), lambda x: x.view(np.float16), grad=False),
    # other dtypes
    OpCase(
        "concatenate_int",
        lambda m, x, y: m.concatenate([x, y], 1),
        lambda x, y: np.concatenate([x, y], 1),
        shapes=((2, 3), (2, 1)),
        dtypes=("int32",),
        grad=False,
    ),
    OpCase("transpose_f16", lambda m, x: m.transpose(x), lambda x: x.T, dtypes=("float16",), grad=False),
    OpCase(
        "pad_bool",
        lambda m, x: m.pad(x, 1, constant_values=True),
        lambda x: np.pad(x, 1, constant_values=True),
        dtypes=("bool",),
        grad=False,
    ),
    OpCase(
        "roll_u8", lambda m, x: m.roll(x, 1, 0), lambda x: np.roll(x, 1, 0), dtypes=("uint8",), grad=False
    ),
    OpCase("empty_split", lambda m, x: m.split(x, [0, 0]), lambda x: np.split(x, [0, 0]), shapes=((3, 2),)),
    OpCase(
        "empty_concat",
        lambda m, x, y: m.concatenate([x, y], 0),
        lambda x, y: np.concatenate([x, y]),
        shapes=((0, 2), (3, 2)),
    ),
]


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


# ---------------------------------------------------------------- creation
CREATION = [
    ("arange_int", lambda m: m.arange(5)),
    ("arange_float", lambda m: m.arange(0.0, 5)),
    ("arange_step", lambda m: m.arange(0, 1, 0.3)),
    ("arange_neg_step", lambda m: m.arange(5, -3, -2)),
    ("arange_dtype", lambda m: m.arange(0, 5, 1.5, m.int32)),
    ("arange_f16", lambda m: m.arange(5, dtype=m.float16)),
    ("arange_empty", lambda m: m.arange(5, 0)),
    ("linspace", lambda m: m.linspace(0, 1, 5)),
    ("linspace_int", lambda m: m.linspace(0, 10, 5, dtype=m.int32)),
    ("linspace_noend", lambda m: m.linspace(-1, 1, 4, endpoint=False)),
    ("linspace_one", lambda m: m.linspace(2, 3, 1)),
    ("linspace_zero", lambda m: m.linspace(0, 1, 0)),
    ("eye", lambda m: m.eye(3, 4, 1)),
    ("eye_int", lambda m: m.eye(3, dtype=m.int32)),
    ("identity", lambda m: m.identity(2)),
    ("tri", lambda m: m.tri(3)),
    ("tri_k", lambda m: m.tri(3, 4, -1, m.int32)),
    ("zeros_like", lambda m: m.zeros_like(m.arange(3), m.float16)),
    ("ones_like", lambda m: m.ones_like(m.arange(3))),
    ("empty", lambda m: m.empty((2, 0))),
    ("full_arr", lambda m: m.full((2, 2), m.array([1, 2]))),
    ("full_bool", lambda m: m.full((2,), True)),
    ("asarray", lambda m: m.asarray([1, 2], m.float32)),
]


@pytest.mark.skipif(mlx_core is None, reason="real MLX not installed")
@pytest.mark.parametrize("name,fn", CREATION, ids=[c[0] for c in CREATION])
def test_creation(name, fn):
    got, want = fn(mx), fn(mlx_core)
    assert got.shape == tuple(want.shape)
    assert got.dtype.name == str(want.dtype).rsplit(".", 1)[-1]
    np.testing.assert_allclose(np.array(got).astype(np.float64), np.array(want).astype(np.float64), rtol=1e-6)


def test_full_dtype_casts():
    # MLX 0.32 ignores dtype for a Python scalar (float32 result); kiln casts.
    x = mx.full((2,), 1.5, mx.int32)
    assert x.dtype == mx.int32 and x.tolist() == [1, 1]


@needs_mlx
def test_dtype_helpers():
    assert mx.result_type(mx.int8, mx.array([1.0])) == mx.float32
    assert mx.result_type(mx.bfloat16, mx.float16) == mx.float32
    pairs = [
        (mx.int8, mx.int16),
        (mx.int64, mx.float32),
        (mx.float32, mx.float16),
        (mx.uint8, mx.int8),
        (mx.bool_, mx.int8),
        (mx.int32, mx.bool_),
        (mx.uint64, mx.int64),
        (mx.float16, mx.bfloat16),
    ]
    for a, b in pairs:
        want = mlx_core.can_cast(
            getattr(mlx_core, a.name if a.name != "bool" else "bool_"),
            getattr(mlx_core, b.name if b.name != "bool" else "bool_"),
        )
        assert mx.can_cast(a, b) == want, (a, b)
    assert mx.isdtype(mx.float32, "real floating")
    assert mx.isdtype(mx.int32, ("bool", "integral"))
    assert not mx.isdtype(mx.complex64, "real floating")
    assert mx.isdtype(mx.uint8, mx.uint8)
    assert mx.broadcast_shapes((2, 1), (3,)) == (2, 3)


def test_noncontiguous_and_strided_inputs():
    x = mx.reshape(mx.arange(24.0), (2, 3, 4))
    xt = mx.transpose(x, (2, 0, 1))
    ref = np.transpose(np.arange(24.0).reshape(2, 3, 4), (2, 0, 1))
    np.testing.assert_array_equal(np.array(mx.pad(xt, 1, mode="reflect")), np.pad(ref, 1, "reflect"))
    np.testing.assert_array_equal(np.array(mx.diagonal(xt, 0, 0, 2)), np.diagonal(ref, 0, 0, 2))
    np.testing.assert_array_equal(np.array(mx.concatenate([xt, xt], 1)), np.concatenate([ref, ref], 1))
    np.testing.assert_array_equal(np.array(mx.view(xt, mx.int32)), ref.astype(np.float32).view(np.int32))


def test_pad_grad_flows_to_array_constant():
    x = mx.ones((2, 3))
    g = mx.grad(lambda v: mx.sum(mx.pad(x, [(1, 0), (2, 1)], constant_values=v) ** 2))(mx.array(3.0))
    n_pad = 3 * 6 - 6
    assert g.item() == pytest.approx(2 * 3.0 * n_pad)


def test_as_strided_overlapping_grad_accumulates():
    x = mx.arange(6.0)
    g = mx.grad(lambda x: mx.sum(mx.as_strided(x, (3, 3), (1, 1))))(x)
    want = np.zeros(6)
    np.add.at(want, np.lib.stride_tricks.as_strided(np.arange(6), (3, 3), (8, 8)).ravel(), 1)
    np.testing.assert_array_equal(np.array(g), want)


# ---------------------------------------------------------------- errors
ERRORS = [
    lambda m: m.reshape(m.ones((3, 4)), (5,)),
    lambda m: m.reshape(m.ones((3, 4)), (-1, -1)),
    lambda m: m.reshape(m.ones((0, 3)), (-1, 0)),
    lambda m: m.zeros((-1, 2)),
    lambda m: m.flatten(m.ones((3, 4)), 1, 0),
    lambda m: m.unflatten(m.ones((3, 4)), 1, (3, -1)),
    lambda m: m.unflatten(m.ones((3, 4)), 2, (1,)),
    lambda m: m.squeeze(m.ones((3, 4)), 0),
    lambda m: m.squeeze(m.ones((3, 4)), 3),
    lambda m: m.expand_dims(m.ones((3, 4)), 3),
    lambda m: m.expand_dims(m.ones((3, 4)), (0, 0)),
    lambda m: m.transpose(m.ones((3, 4)), (0, 0)),
    lambda m: m.transpose(m.ones((3, 4)), (0,)),
    lambda m: m.transpose(m.ones((3, 4)), (0, 2)),
    lambda m: m.swapaxes(m.ones((3, 4)), 0, 2),
    lambda m: m.moveaxis(m.ones((3, 4)), 0, 2),
    lambda m: m.matrix_transpose(m.ones(3)),
    lambda m: m.broadcast_to(m.ones((3, 4)), (2, 4, 4)),
    lambda m: m.broadcast_to(m.ones((3, 4)), (4,)),
    lambda m: m.broadcast_shapes(),
    lambda m: m.broadcast_shapes((2, 1), (3, 4)),
    lambda m: m.concatenate([m.ones((2, 3)), m.ones((2,))]),
    lambda m: m.concatenate([m.ones((2, 3)), m.ones((3, 3))], axis=1),
    lambda m: m.concatenate([]),
    lambda m: m.concatenate([m.ones((2, 3)), m.ones((2, 3))], axis=2),
    lambda m: m.stack([m.ones(2), m.ones(3)]),
    lambda m: m.stack([]),
    lambda m: m.stack([m.ones(2)], axis=2),
    lambda m: m.split(m.arange(7), 3),
    lambda m: m.split(m.arange(6), 0),
    lambda m: m.split(m.arange(6), 3, axis=1),
    lambda m: m.unstack(m.array(1)),
    lambda m: m.repeat(m.ones(3), -1),
    lambda m: m.repeat(m.ones(3), 2, 1),
    lambda m: m.tile(m.ones(3), -1),
    lambda m: m.roll(m.ones((3, 4)), (1, 2), (0, 1, 1)),
    lambda m: m.roll(m.ones((3, 4)), 1, 2),
    lambda m: m.pad(m.arange(4), 1, mode="wrap"),
    lambda m: m.pad(m.arange(4), -1),
    lambda m: m.pad(m.arange(4), [(1, 1), (1, 1)]),
    lambda m: m.tril(m.ones(3)),
    lambda m: m.diag(m.ones((2, 2, 2))),
    lambda m: m.diagonal(m.ones(3)),
    lambda m: m.diagonal(m.ones((3, 4)), 0, 1, 1),
    lambda m: m.diagonal(m.ones((3, 4)), 0, 0, 2),
    lambda m: m.flip(m.ones((3, 4)), 2),
    lambda m: m.view(m.ones((3,), m.uint8), m.int16),
    lambda m: m.view(m.array(1.0), m.int8),
    lambda m: m.arange(0, 5, 0),
    lambda m: m.linspace(0, 1, -1),
    lambda m: m.meshgrid(m.ones(2), indexing="foo"),
    lambda m: m.result_type(m.int8, 2),
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
