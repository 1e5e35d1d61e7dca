"""Indexing: x[idx], x[idx] = v, x.at[idx].op(v), take/put, dynamic slices.

Each index expression is written once as ``idx(m)`` over a namespace ``m``
(``numpy``, ``kiln.core`` or ``mlx.core``), so the same table checks values,
shapes and dtypes against NumPy and the real MLX, and then gradients, vmap
and compile through ``tests/harness.py``.
"""
from __future__ import annotations

import numpy as np
import pytest

import kiln.core as mx
from harness import OpCase, check_compile, check_forward, check_grads, check_vmap, mlx_core, needs_mlx



def I(m, v):  # noqa: E743 - an int32 index array in namespace ``m``
    return m.array(v, dtype=m.int32)


# ---------------------------------------------------------------- index table
# (name, index builder) on an input of shape (3, 4, 5)
INDEXES = [
    ("int", lambda m: 1),
    ("neg_int", lambda m: -1),
    ("slice", lambda m: slice(1, 3)),
    ("neg_step", lambda m: slice(None, None, -1)),
    ("neg_step2", lambda m: (slice(None, None, -2), slice(3, 0, -2))),
    ("out_of_range_slice", lambda m: slice(-10, 20)),
    ("empty_slice", lambda m: (slice(2, 1), 0)),
    ("ints", lambda m: (1, 2, 3)),
    ("int_slice", lambda m: (0, slice(1, None, 2))),
    ("none", lambda m: None),
    ("none_mid", lambda m: (slice(None), None, 1)),
    ("ellipsis", lambda m: (Ellipsis, 1)),
    ("ellipsis_none", lambda m: (None, Ellipsis, None, slice(0, 2))),
    ("empty_tuple", lambda m: ()),
    ("array", lambda m: I(m, [2, 0, 2])),
    ("array_neg", lambda m: I(m, [-1, -3])),
    ("array_2d", lambda m: I(m, [[0, 1], [1, 2]])),
    ("array_0d", lambda m: I(m, 1)),
    ("list", lambda m: [0, 2]),
    ("array_axis1", lambda m: (slice(None), I(m, [3, 0, 3]))),
    ("array_last", lambda m: (Ellipsis, I(m, [1, 4]))),
    ("two_arrays_adjacent", lambda m: (slice(None), I(m, [0, 1]), I(m, [[1], [2]]))),
    ("two_arrays_separated", lambda m: (I(m, [0, 1]), slice(None), I(m, [0, 4]))),
    ("array_none_array", lambda m: (I(m, [0, 1]), None, I(m, [0, 1]))),
    ("int_slice_array", lambda m: (0, slice(None), I(m, [1, 2]))),
    ("slice_int_array", lambda m: (slice(None), 0, I(m, [0, 1]))),
    ("int_array", lambda m: (1, I(m, [0, 3]))),
    ("array_slice_array_bcast", lambda m: (I(m, [0, 1]), slice(1, 3), I(m, [[1], [2]]))),
    ("three_arrays", lambda m: (I(m, [0, 2]), I(m, [1, 3]), I(m, [2, 4]))),
    ("none_array_none", lambda m: (None, I(m, [0, 1]), None)),
    ("rev_slice_array", lambda m: (slice(None, None, -1), I(m, [3, 1]), slice(4, None, -2))),
]


def _getitem_case(name, ix):
    return OpCase(
        f"get_{name}",
        fn=lambda m, x: x[ix(m)],
        ref=lambda x: x[ix(np)],
        shapes=((3, 4, 5),),
    )


GET_CASES = [_getitem_case(n, ix) for n, ix in INDEXES]

# setitem: (name, index builder, update shape)
SETS = [
    ("int", lambda m: 1, (4, 5)),
    ("int_bcast", lambda m: 1, (5,)),
    ("scalar_like", lambda m: (0, 1, 2), ()),
    ("slice", lambda m: slice(0, 2), (2, 1, 5)),
    ("neg_step", lambda m: (slice(None, None, -1), slice(None, None, -2)), (3, 2, 5)),
    ("leading_ones", lambda m: 0, (1, 1, 4, 5)),
    ("ellipsis", lambda m: (Ellipsis, 1), (3, 4)),
    ("none", lambda m: (None, 0), (1, 4, 5)),
    ("everything", lambda m: Ellipsis, (5,)),
    ("array", lambda m: I(m, [2, 0]), (2, 4, 5)),
    ("array_repeated", lambda m: I(m, [1, 1, 0, 1]), (4, 4, 5)),
    ("array_axis1_repeated", lambda m: (slice(None), I(m, [3, 3])), (3, 2, 5)),
    ("two_arrays_repeated", lambda m: (I(m, [0, 0]), I(m, [1, 1])), (2, 5)),
    ("separated", lambda m: (I(m, [0, 1]), slice(None), I(m, [0, 4])), (2, 4)),
    ("array_slice", lambda m: (I(m, [0, 2]), slice(1, 3)), (2, 2, 5)),
    ("bcast_indices", lambda m: (slice(None), I(m, [0, 1]), I(m, [[1], [2]])), (3, 2, 2)),
    ("int_and_array", lambda m: (1, slice(None), I(m, [1, 2])), (2, 4)),
    ("array_none_array", lambda m: (I(m, [0, 1]), None, I(m, [0, 1])), (2, 1, 5)),
]


def _set(m, x, v, ix):
    y = x * 1  # a fresh array: assignment rebinds it, not the caller's input
    y[ix(m)] = v
    return y


def _set_ref(x, v, ix):
    y = x.copy()
    y[ix(np)] = v
    return y


def _setitem_case(name, ix, vshape, dtypes=("float32",)):
    return OpCase(
        f"set_{name}",
        fn=lambda m, x, v: _set(m, x, v, ix),
        ref=lambda x, v: _set_ref(x, v, ix),
        shapes=((3, 4, 5), vshape),
        dtypes=dtypes,
        # MLX's setitem treats an int beside separated arrays as a basic index,
        # unlike its own getitem; kiln follows NumPy (and MLX's getitem) here.
        mlx=name != "int_and_array",
    )


SET_CASES = [_setitem_case(n, ix, s) for n, ix, s in SETS]
SET_CASES.append(_setitem_case("int_target_float_update", lambda m: I(m, [0, 1]), (2, 4, 5),
                               dtypes=("int32", "float32")))

# .at[] with repeated indices: (method, numpy ufunc applied with .at)
AT_METHODS = [
    ("add", lambda v: (np.add, v)),
    ("subtract", lambda v: (np.add, -v)),
    ("multiply", lambda v: (np.multiply, v)),
    ("divide", lambda v: (np.multiply, 1 / v)),
    ("maximum", lambda v: (np.maximum, v)),
    ("minimum", lambda v: (np.minimum, v)),
]
AT_INDEXES = [
    ("repeated", lambda m: I(m, [1, 1, 0, 1]), (4, 4, 5)),
    ("two_repeated", lambda m: (I(m, [0, 2, 0]), slice(None), I(m, [4, 4, 4])), (3, 4)),
    ("slice", lambda m: (slice(None, None, -1), 2), (3, 5)),
    ("int_array", lambda m: (0, I(m, [1, 1])), (2, 5)),
]


def _at_ref(x, v, ix, method):
    y = x.copy()
    ufunc, w = dict(AT_METHODS)[method](v)
    idx = ix(np)
    if not isinstance(idx, tuple):
        idx = (idx,)
    # np.ufunc.at wants the update in the indexed layout; broadcasting handles shapes.
    ufunc.at(y, idx, np.broadcast_to(w, y[idx].shape))
    return y


def _at_case(meth, iname, ix, vshape):
    return OpCase(
        f"at_{meth}_{iname}",
        fn=lambda m, x, v: getattr(x.at[ix(m)], meth)(v),
        ref=lambda x, v: _at_ref(x, v, ix, meth),
        shapes=((3, 4, 5), vshape),
        gen=_away_from_zero if meth in ("multiply", "divide") else None,
    )


def _away_from_zero(rng, shape, dtype):
    v = rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)
    return v.astype(dtype)


AT_CASES = [_at_case(meth, iname, ix, s) for meth, _ in AT_METHODS for iname, ix, s in AT_INDEXES]


# ---------------------------------------------------------------- indices as inputs (for vmap)
def _gen_index(bound):
    """Inputs: floats normal, integers valid indices in [-bound, bound)."""
    def gen(rng, shape, dtype):
        if np.dtype(dtype).kind in "iu":
            return rng.integers(-bound, bound, shape).astype(dtype)
        return rng.standard_normal(shape).astype(dtype)
    return gen


def _gen_nonneg(bound):
    def gen(rng, shape, dtype):
        if np.dtype(dtype).kind in "iu":
            return rng.integers(0, bound, shape).astype(dtype)
        return rng.standard_normal(shape).astype(dtype)
    return gen


def _np_take_along(x, i, axis):
    return np.take_along_axis(x, i, axis)


def _np_put_along(x, i, v, axis):
    y = x.copy()
    np.put_along_axis(y, i, v, axis)
    return y


def _np_slice_update(x, u, start, axes):
    y = x.copy()
    box = [slice(0, s) for s in u.shape]
    for k, ax in enumerate(axes):
        s = int(np.clip(start[k], 0, x.shape[ax] - u.shape[ax]))
        box[ax] = slice(s, s + u.shape[ax])
    y[tuple(box)] = u
    return y


def _np_slice(x, start, axes, size):
    box = [slice(0, s) for s in size]
    for k, ax in enumerate(axes):
        s = int(np.clip(start[k], 0, x.shape[ax] - size[ax]))
        box[ax] = slice(s, s + size[ax])
    return x[tuple(box)]


F, I32 = "float32", "int32"
INPUT_CASES = [
    OpCase("get_idx_input", fn=lambda m, x, i: x[i], ref=lambda x, i: x[i],
           shapes=((4, 3), (2, 2)), dtypes=(F, I32), gen=_gen_index(4)),
    OpCase("get_idx_input_axis1", fn=lambda m, x, i: x[:, i], ref=lambda x, i: x[:, i],
           shapes=((2, 4, 3), (5,)), dtypes=(F, I32), gen=_gen_nonneg(4)),
    OpCase("get_two_idx_inputs_separated", fn=lambda m, x, i, j: x[i, :, j],
           ref=lambda x, i, j: x[i, :, j], shapes=((3, 2, 4), (2,), (2,)), dtypes=(F, I32, I32),
           gen=_gen_nonneg(3)),
    OpCase("get_idx_input_mid", fn=lambda m, x, i: x[1:, i, ::-1], ref=lambda x, i: x[1:, i, ::-1],
           shapes=((3, 4, 2), (3,)), dtypes=(F, I32), gen=_gen_nonneg(4)),
    OpCase("set_idx_input", fn=lambda m, x, v, i: _set(m, x, v, lambda _: i),
           ref=lambda x, v, i: _set_ref(x, v, lambda _: i),
           shapes=((4, 3), (2, 3), (2,)), dtypes=(F, F, I32), gen=_gen_nonneg(4)),
    OpCase("set_idx_input_mid", fn=lambda m, x, v, i: _set(m, x, v, lambda _: (slice(None), i)),
           ref=lambda x, v, i: _set_ref(x, v, lambda _: (slice(None), i)),
           shapes=((2, 4, 3), (2, 2, 3), (2,)), dtypes=(F, F, I32), gen=_gen_nonneg(4)),
    OpCase("set_idx_input_separated", fn=lambda m, x, v, i: _set(m, x, v, lambda _: (i, slice(None), 0)),
           ref=lambda x, v, i: _set_ref(x, v, lambda _: (i, slice(None), 0)),
           shapes=((3, 2, 4), (2, 2), (2,)), dtypes=(F, F, I32), gen=_gen_nonneg(3)),
    OpCase("at_add_idx_input", fn=lambda m, x, v, i: x.at[:, i].add(v),
           ref=lambda x, v, i: _at_ref(x, v, lambda _: (slice(None), i), "add"),
           shapes=((2, 3), (2, 4), (4,)), dtypes=(F, F, I32), gen=_gen_nonneg(3)),
    OpCase("set_slice", fn=lambda m, x, v: _set(m, x, v, lambda _: (slice(None), slice(1, 3))),
           ref=lambda x, v: _set_ref(x, v, lambda _: (slice(None), slice(1, 3))),
           shapes=((3, 4), (3, 2))),
    OpCase("set_slice_bcast_update", fn=lambda m, x, v: _set(m, x, v, lambda _: slice(0, 2)),
           ref=lambda x, v: _set_ref(x, v, lambda _: slice(0, 2)),
           shapes=((3, 4), (4,))),
    OpCase("take_flat", fn=lambda m, x, i: m.take(x, i), ref=lambda x, i: np.take(x, i),
           shapes=((3, 4), (2, 3)), dtypes=(F, I32), gen=_gen_index(12)),
    OpCase("take_axis", fn=lambda m, x, i: m.take(x, i, axis=1), ref=lambda x, i: np.take(x, i, axis=1),
           shapes=((3, 4, 2), (5,)), dtypes=(F, I32), gen=_gen_index(4)),
    OpCase("take_axis_neg", fn=lambda m, x, i: m.take(x, i, axis=-1), ref=lambda x, i: np.take(x, i, axis=-1),
           shapes=((3, 4), (2, 2)), dtypes=(F, I32), gen=_gen_index(4)),
    OpCase("take_along_axis", fn=lambda m, x, i: m.take_along_axis(x, i, axis=1),
           ref=lambda x, i: _np_take_along(x, i, 1),
           shapes=((3, 4), (3, 6)), dtypes=(F, I32), gen=_gen_index(4)),
    OpCase("take_along_axis_bcast", fn=lambda m, x, i: m.take_along_axis(x, i, axis=0),
           ref=lambda x, i: _np_take_along(x, np.broadcast_to(i, (2, 4)), 0),
           shapes=((3, 4), (2, 1)), dtypes=(F, I32), gen=_gen_nonneg(3)),
    OpCase("take_along_axis_none", fn=lambda m, x, i: m.take_along_axis(x, i, axis=None),
           ref=lambda x, i: _np_take_along(x, i, None),
           shapes=((3, 4), (5,)), dtypes=(F, I32), gen=_gen_nonneg(12)),
    OpCase("put_along_axis", fn=lambda m, x, i, v: m.put_along_axis(x, i, v, axis=1),
           ref=lambda x, i, v: _np_put_along(x, i, v, 1),
           shapes=((3, 4), (3, 2), (3, 2)), dtypes=(F, I32, F), gen=_gen_nonneg(4)),
    OpCase("put_along_axis_repeated", fn=lambda m, x, v: m.put_along_axis(x, I(m, [[1, 1, 0]]), v, axis=0),
           ref=lambda x, v: _np_put_along(x, np.array([[1, 1, 0]]), v, 0),
           shapes=((3, 3), (1, 3))),
    OpCase("put_along_axis_bcast_values", fn=lambda m, x, i, v: m.put_along_axis(x, i, v, axis=-1),
           ref=lambda x, i, v: _np_put_along(x, i, np.broadcast_to(v, i.shape), -1),
           shapes=((3, 4), (3, 1), (1,)), dtypes=(F, I32, F), gen=_gen_nonneg(4)),
    OpCase("put_along_axis_none", fn=lambda m, x, v: m.put_along_axis(x, I(m, [0, 5, 11]), v, axis=None),
           ref=lambda x, v: _np_put_along(x.reshape(-1), np.array([0, 5, 11]), v, 0).reshape(x.shape),
           shapes=((3, 4), (3,))),
    OpCase("slice_dynamic", fn=lambda m, x, s: m.slice(x, s, (0, 2), (2, 3, 2)),
           ref=lambda x, s: _np_slice(x, s, (0, 2), (2, 3, 2)),
           shapes=((4, 3, 5), (2,)), dtypes=(F, I32), gen=_gen_nonneg(4)),
    OpCase("slice_dynamic_partial", fn=lambda m, x, s: m.slice(x, s, (1,), (2, 2)),
           ref=lambda x, s: _np_slice(x, s, (1,), (2, 2)),
           shapes=((3, 4), (1,)), dtypes=(F, I32), gen=_gen_nonneg(3)),
    OpCase("slice_update", fn=lambda m, x, u, s: m.slice_update(x, u, s, (0, 1)),
           ref=lambda x, u, s: _np_slice_update(x, u, s, (0, 1)),
           shapes=((4, 5), (2, 3), (2,)), dtypes=(F, F, I32), gen=_gen_nonneg(3)),
    OpCase("slice_update_separated_axes", fn=lambda m, x, u, s: m.slice_update(x, u, s, (2, 0)),
           ref=lambda x, u, s: _np_slice_update(x, u, s, (2, 0)),
           shapes=((4, 3, 5), (2, 3, 2), (2,)), dtypes=(F, F, I32), gen=_gen_nonneg(3)),
]

ALL_CASES = GET_CASES + SET_CASES + AT_CASES + INPUT_CASES
GRAD_CASES = [c for c in ALL_CASES if "int_target" not in c.name]


# ---------------------------------------------------------------- table checks
@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_forward(case):
    check_forward(case)


@pytest.mark.parametrize("case", GRAD_CASES, ids=str)
def test_grads(case):
    check_grads(case)


@pytest.mark.parametrize("case", GET_CASES[::3] + SET_CASES[::2] + AT_CASES[::5] + INPUT_CASES, ids=str)
def test_vmap(case):
    check_vmap(case)


@pytest.mark.parametrize("case", GET_CASES[::4] + SET_CASES[::4] + AT_CASES[::6] + INPUT_CASES[::3], ids=str)
def test_compile(case):
    check_compile(case)


# ---------------------------------------------------------------- semantics
@needs_mlx
def test_setitem_last_write_wins_like_mlx():
    x = mx.zeros((4,))
    x[I(mx, [1, 1, 1, 2])] = mx.array([1.0, 2.0, 3.0, 4.0])
    y = mlx_core.zeros((4,))
    y[I(mlx_core, [1, 1, 1, 2])] = mlx_core.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(np.array(x), np.array(y))


def test_setitem_casts_to_target_dtype():
    x = mx.array(np.arange(6, dtype=np.int32))
    x[1:3] = 2.7
    assert x.dtype == mx.int32
    np.testing.assert_array_equal(np.array(x), [0, 2, 2, 3, 4, 5])
    x[I(mx, [0])] = mx.array([9.9])
    assert x.dtype == mx.int32 and np.array(x)[0] == 9


def test_setitem_rebinds_and_keeps_aliases_lazy_consumers():
    x = mx.zeros((3,))
    y = x + 1  # lazy consumer of the old x
    x[0] = 5.0
    np.testing.assert_array_equal(np.array(x), [5, 0, 0])
    np.testing.assert_array_equal(np.array(y), [1, 1, 1])


def test_getitem_noncontiguous_and_0d_and_empty():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    x = mx.transpose(mx.array(base))
    np.testing.assert_array_equal(np.array(x[::2, 1]), base.T[::2, 1])
    np.testing.assert_array_equal(np.array(x[I(mx, [5, 0]), 1:3]), base.T[[5, 0], 1:3])
    s = mx.array(3.0)
    assert s[None].shape == (1,) and s[...].shape == () and s[()].item() == 3.0
    e = mx.zeros((0, 3))
    assert e[:, 1].shape == (0,) and e[I(mx, [], ), 0].shape == (0,)
    assert mx.zeros((3, 4))[[]].shape == (0, 4)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8", "uint16", "bool_", "complex64"])
def test_dtypes(dtype):
    base = np.arange(12).reshape(3, 4) % 3
    x = mx.array(base).astype(getattr(mx, dtype))
    got = x[I(mx, [2, 0]), 1:]
    assert got.dtype == x.dtype
    wide = np.complex128 if dtype == "complex64" else np.float64
    want = np.array(x).astype(wide)[[2, 0], 1:]
    np.testing.assert_array_equal(np.array(got).astype(wide), want)
    y = x.at[I(mx, [0, 0])].add(x[0]) if dtype != "bool_" else x
    assert y.dtype == x.dtype


def test_at_divide_integer_truncates():
    x = mx.array(np.array([7, -9, 9, 10], dtype=np.int32))
    got = x.at[I(mx, [0, 0, 1])].divide(2)
    assert got.dtype == mx.int32
    np.testing.assert_array_equal(np.array(got), [1, -4, 9, 10])


def test_boolean_mask():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 4)).astype(np.float32)
    m = base > 0
    x = mx.array(base)
    np.testing.assert_array_equal(np.array(x[mx.array(m)]), base[m])
    np.testing.assert_array_equal(np.array(x[:, mx.array(m[0])]), base[:, m[0]])
    np.testing.assert_array_equal(np.array(x[[True, False, True]]), base[[True, False, True]])
    y = x * 1
    y[mx.array(m)] = 0.0
    want = base.copy()
    want[m] = 0
    np.testing.assert_array_equal(np.array(y), want)
    z = x.at[mx.array(m)].add(1.0)
    np.testing.assert_array_equal(np.array(z), np.where(m, base + 1, base))
    with pytest.raises(IndexError, match=r"\(2\)"):
        x[mx.array([True, False])]


def test_boolean_mask_under_grad():
    base = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    g = mx.grad(lambda a: mx.sum(a[mx.array(base > 0)] * 2))(mx.array(base))
    np.testing.assert_array_equal(np.array(g), [2, 0, 2])


def test_boolean_mask_from_traced_value_under_grad():
    base = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    g = mx.grad(lambda a: mx.sum(a[a > 0] * 2))(mx.array(base))
    np.testing.assert_array_equal(np.array(g), [2, 0, 2])


def test_boolean_mask_in_vmap_raises():
    def f(a):
        return mx.sum(a[mx.astype(a, mx.bool_)])

    with pytest.raises(ValueError, match="Boolean mask"):
        mx.vmap(f)(mx.ones((2, 3)))


def test_vmap_slice_assignment_with_unbatched_update():
    # MLX gets this one wrong (the unbatched update is treated as batched).
    def f(x, v):
        y = x * 1
        y[1:3] = v
        return y

    xs = mx.array(np.zeros((2, 4), dtype=np.float32))
    v = mx.array(np.array([5.0, 6.0], dtype=np.float32))
    got = mx.vmap(f, in_axes=(0, None))(xs, v)
    np.testing.assert_array_equal(np.array(got), [[0, 5, 6, 0], [0, 5, 6, 0]])


def test_grad_of_repeated_assignment_goes_to_landed_update():
    idx = I(mx, [1, 1, 0])

    def f(x, v):
        y = x * 1
        y[idx] = v
        return mx.sum(y * mx.array([1.0, 2.0, 3.0]))

    gx, gv = mx.grad(f, argnums=(0, 1))(mx.zeros((3,)), mx.ones((3,)))
    np.testing.assert_array_equal(np.array(gx), [0, 0, 3])
    np.testing.assert_array_equal(np.array(gv), [0, 2, 1])


def test_vmap_gather_both_batched_nonconsecutive():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    i = rng.integers(0, 3, (2, 2)).astype(np.int32)
    j = rng.integers(0, 5, (2, 2)).astype(np.int32)
    got = mx.vmap(lambda a, b, c: a[b, 1:3, c])(mx.array(x), mx.array(i), mx.array(j))
    want = np.stack([x[k][i[k], 1:3, j[k]] for k in range(2)])
    np.testing.assert_allclose(np.array(got), want)
    xt = np.ascontiguousarray(x.transpose(1, 0, 2, 3))  # batch on axis 1
    got = mx.vmap(lambda a, b: a[:, b], in_axes=(1, 0))(mx.array(xt), mx.array(i))
    want = np.stack([x[k][:, i[k]] for k in range(2)])
    np.testing.assert_allclose(np.array(got), want)


# ---------------------------------------------------------------- errors
def test_errors():
    x = mx.zeros((3, 4, 5))
    with pytest.raises(IndexError, match="out of bounds"):
        x[3]
    with pytest.raises(IndexError, match="out of bounds"):
        x[0, -5]
    with pytest.raises(ValueError, match="Too many indices"):
        x[0, 0, 0, 0]
    with pytest.raises(ValueError):
        x[1.0]
    with pytest.raises(ValueError, match="integral"):
        x[mx.array([1.0])]
    with pytest.raises(ValueError, match="single ellipsis"):
        x[..., ...]
    with pytest.raises(ValueError, match="step"):
        x[::0]
    with pytest.raises(ValueError, match=r"\(3,5\)"):
        x[0] = mx.zeros((3, 5))
    with pytest.raises(ValueError, match=r"\(2,4,5\)"):
        x[0] = mx.zeros((2, 4, 5))
    with pytest.raises(ValueError, match="broadcast"):
        x.at[I(mx, [0, 1])].add(mx.ones((3, 4, 5)))
    with pytest.raises(IndexError, match="take"):
        mx.take(x, I(mx, [0]), axis=3)
    with pytest.raises(ValueError, match="integral"):
        mx.take(x, mx.array([0.5]))
    with pytest.raises(ValueError, match="take_along_axis"):
        mx.take_along_axis(x, I(mx, [0]), axis=1)
    with pytest.raises(IndexError, match="put_along_axis"):
        mx.put_along_axis(x, I(mx, [[[0]]]), mx.array(1.0), axis=3)
    with pytest.raises(ValueError, match=r"\[slice\] Invalid slice size"):
        mx.slice(x, I(mx, [0]), (0,), (4, 4, 5))
    with pytest.raises(ValueError, match="must be integers"):
        mx.slice(x, mx.array([0.0]), (0,), (1, 4, 5))
    with pytest.raises(ValueError, match="Repeat axes"):
        mx.slice(x, I(mx, [0, 0]), (0, 0), (1, 4, 5))
    with pytest.raises(ValueError, match="does not match number of axes"):
        mx.slice_update(x, mx.ones((1,)), I(mx, [0, 0]), (0,))


@needs_mlx
@pytest.mark.parametrize("expr", [
    lambda m, a: a[0, 0, 0, 0],
    lambda m, a: a[1.0],
    lambda m, a: a[m.array([1.0])],
    lambda m, a: a[..., ...],
    lambda m, a: m.take(a, m.array([1]), axis=3),
    lambda m, a: m.take_along_axis(a, m.array([0]), axis=1),
    lambda m, a: m.slice(a, m.array([0.0]), (0,), (1, 4, 5)),
    lambda m, a: m.slice(a, m.array([0]), (0,), (4, 4, 5)),
])
def test_error_types_match_mlx(expr):
    with pytest.raises(Exception) as want:
        expr(mlx_core, mlx_core.zeros((3, 4, 5)))
    with pytest.raises(type(want.value)):
        expr(mx, mx.zeros((3, 4, 5)))


def test_output_shapes_match_nodes():
    from kiln.graph.eval import toposort
    from kiln.primitives import indexing as P

    x = mx.array(np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    i = I(mx, [[0, 2]])
    outs = [
        x[1:, ::-2], x[i, :, I(mx, [1, 4])], x.at[:, I(mx, [3, 3])].maximum(1.0),
        _set(mx, x, 1.0, lambda m: (i, 2)), mx.take_along_axis(x, I(mx, [[[0]]]), axis=2),
        mx.put_along_axis(x, I(mx, [[[0]]]), mx.array(2.0), axis=1),
        mx.slice(x, I(mx, [1]), (1,), (3, 2, 5)), mx.slice_update(x, mx.ones((2, 2)), I(mx, [1, 1]), (0, 2)),
    ]
    kinds = set()
    for node in toposort(outs):
        prim = node._prim
        if isinstance(prim, (P.Slice, P.SliceUpdate, P.Gather, P.Scatter, P.GatherAxis, P.ScatterAxis)):
            kinds.add(type(prim))
            assert prim.output_shapes(node._inputs) == [node.shape]
    assert len(kinds) == 6
    mx.eval(*outs)
