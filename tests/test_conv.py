"""Convolutions: conv1d/2d/3d, conv_general, conv_transpose*, convolve.

Forward results are checked against a direct NumPy reference written here
(a loop over kernel taps, independent of kiln's strided-window kernel) and
against the real MLX; gradients numerically in both modes; vmap against a
Python loop, including batched weights with groups, which MLX gets wrong.
"""
from __future__ import annotations

import os

os.environ.setdefault("KILN_CHECK", "1")

import itertools  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kiln.core as mx  # noqa: E402
from harness import OpCase, check_compile, check_forward, check_grads, check_vmap, mlx_core  # noqa: E402



# ---------------------------------------------------------------- NumPy references
def _tuple(v, d):
    return (v,) * d if isinstance(v, int) else tuple(v)


def ref_conv(x, w, stride=1, padding=0, kernel_dilation=1, input_dilation=1, groups=1, flip=False):
    """Direct convolution: dilate and pad the input, then sum over kernel taps."""
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    d = x.ndim - 2
    st, kd, idl = _tuple(stride, d), _tuple(kernel_dilation, d), _tuple(input_dilation, d)
    if isinstance(padding, tuple) and len(padding) == 2 and not isinstance(padding[0], int):
        lo, hi = padding
    else:
        lo = hi = _tuple(padding, d)
    if flip:
        w = w[(slice(None),) + (slice(None, None, -1),) * d]
    # input dilation
    spatial = tuple((s - 1) * a + 1 for s, a in zip(x.shape[1:-1], idl))
    dil = np.zeros((x.shape[0],) + spatial + (x.shape[-1],))
    dil[(slice(None),) + tuple(slice(None, None, a) for a in idl)] = x
    # padding (negative crops)
    for ax in range(d):
        a, b = lo[ax], hi[ax]
        if a < 0:
            dil = np.take(dil, range(-a, dil.shape[ax + 1]), axis=ax + 1)
            a = 0
        if b < 0:
            dil = np.take(dil, range(0, dil.shape[ax + 1] + b), axis=ax + 1)
            b = 0
        widths = [(0, 0)] * dil.ndim
        widths[ax + 1] = (a, b)
        dil = np.pad(dil, widths)
    ksize = w.shape[1:-1]
    osize = tuple((p - ((k - 1) * kk + 1)) // s + 1 for p, k, kk, s in zip(dil.shape[1:-1], ksize, kd, st))
    c_out, cg = w.shape[0], w.shape[-1]
    og = c_out // groups
    out = np.zeros((x.shape[0],) + osize + (c_out,))
    for tap in itertools.product(*(range(k) for k in ksize)):
        idx = (slice(None),) + tuple(slice(t * kk, t * kk + (o - 1) * s + 1, s)
                                     for t, kk, o, s in zip(tap, kd, osize, st))
        patch = dil[idx]  # (N, *O, C_in)
        for g in range(groups):
            wt = w[(slice(g * og, (g + 1) * og),) + tap]  # (og, cg)
            out[..., g * og:(g + 1) * og] += patch[..., g * cg:(g + 1) * cg] @ wt.T
    return out


def ref_conv_transpose(x, w, stride=1, padding=0, dilation=1, output_padding=0, groups=1):
    """Transposed convolution by its definition: scatter every input pixel times the kernel."""
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    d = x.ndim - 2
    st, pd, dl, op = (_tuple(v, d) for v in (stride, padding, dilation, output_padding))
    ksize = w.shape[1:-1]
    full = tuple((s - 1) * a + (k - 1) * b + 1 + o for s, a, k, b, o in zip(x.shape[1:-1], st, ksize, dl, op))
    c_out, cg = w.shape[0], w.shape[-1]
    og = c_out // groups
    buf = np.zeros((x.shape[0],) + full + (c_out,))
    for tap in itertools.product(*(range(k) for k in ksize)):
        idx = (slice(None),) + tuple(slice(t * b, t * b + (s - 1) * a + 1, a)
                                     for t, b, s, a in zip(tap, dl, x.shape[1:-1], st))
        for g in range(groups):
            wt = w[(slice(g * og, (g + 1) * og),) + tap]
            buf[idx + (slice(g * og, (g + 1) * og),)] += x[..., g * cg:(g + 1) * cg] @ wt.T
    out_size = tuple(f - 2 * p for f, p in zip(full, pd))
    crop = (slice(None),) + tuple(slice(p, p + n) for p, n in zip(pd, out_size))
    return buf[crop]


# ---------------------------------------------------------------- the table
def _case(name, fn, ref, xs, ws, mlx=True, dtypes=("float32",), grad=True, rtol=1e-4, atol=1e-4, order=2):
    return OpCase(name, fn=fn, ref=ref, shapes=(xs, ws), dtypes=dtypes, mlx=mlx, grad=grad,
                  rtol=rtol, atol=atol, order=order)


CASES = [
    _case("conv1d", lambda m, x, w: m.conv1d(x, w), lambda x, w: ref_conv(x, w), (2, 7, 3), (4, 3, 3)),
    _case("conv1d_stride_pad_dil", lambda m, x, w: m.conv1d(x, w, stride=2, padding=2, dilation=2),
          lambda x, w: ref_conv(x, w, 2, 2, 2), (2, 9, 3), (4, 3, 3)),
    _case("conv1d_groups", lambda m, x, w: m.conv1d(x, w, padding=1, groups=2),
          lambda x, w: ref_conv(x, w, padding=1, groups=2), (2, 6, 4), (4, 3, 2)),
    _case("conv1d_depthwise", lambda m, x, w: m.conv1d(x, w, groups=4),
          lambda x, w: ref_conv(x, w, groups=4), (2, 6, 4), (8, 2, 1)),
    _case("conv2d", lambda m, x, w: m.conv2d(x, w, padding=1),
          lambda x, w: ref_conv(x, w, padding=1), (2, 5, 4, 3), (2, 3, 3, 3)),
    _case("conv2d_stride_dil", lambda m, x, w: m.conv2d(x, w, stride=(2, 1), padding=(0, 2), dilation=(1, 2)),
          lambda x, w: ref_conv(x, w, (2, 1), (0, 2), (1, 2)), (2, 6, 5, 2), (3, 2, 3, 2)),
    _case("conv2d_groups", lambda m, x, w: m.conv2d(x, w, stride=2, padding=1, groups=2),
          lambda x, w: ref_conv(x, w, 2, 1, groups=2), (1, 5, 5, 4), (4, 3, 2, 2)),
    _case("conv3d", lambda m, x, w: m.conv3d(x, w, stride=(1, 2, 1), padding=(1, 0, 1)),
          lambda x, w: ref_conv(x, w, (1, 2, 1), (1, 0, 1)), (1, 3, 4, 3, 2), (2, 2, 2, 2, 2)),
    # MLX refuses groups in 3-D; kiln supports them.
    _case("conv3d_groups", lambda m, x, w: m.conv3d(x, w, padding=1, groups=2),
          lambda x, w: ref_conv(x, w, padding=1, groups=2), (1, 3, 3, 2, 4), (2, 2, 2, 2, 2), mlx=False),
    _case("general_asym_pad", lambda m, x, w: m.conv_general(x, w, padding=([1, 0], [0, 2])),
          lambda x, w: ref_conv(x, w, padding=((1, 0), (0, 2))), (2, 4, 4, 2), (3, 2, 3, 2)),
    _case("general_neg_pad", lambda m, x, w: m.conv_general(x, w, padding=([-1, 1], [0, -1])),
          lambda x, w: ref_conv(x, w, padding=((-1, 1), (0, -1))), (1, 6, 5, 2), (2, 2, 2, 2)),
    _case("general_input_dil", lambda m, x, w: m.conv_general(x, w, stride=[1, 2], padding=1,
                                                              kernel_dilation=[2, 1], input_dilation=[2, 3]),
          lambda x, w: ref_conv(x, w, (1, 2), 1, (2, 1), (2, 3)), (1, 3, 3, 2), (2, 2, 2, 2)),
    _case("general_flip", lambda m, x, w: m.conv_general(x, w, stride=2, padding=([0, 1], [2, 0]), groups=2,
                                                         flip=True),
          lambda x, w: ref_conv(x, w, 2, ((0, 1), (2, 0)), groups=2, flip=True), (1, 5, 5, 4), (4, 3, 2, 2)),
    _case("general_1d_all", lambda m, x, w: m.conv_general(x, w, stride=2, padding=([2], [1]),
                                                           kernel_dilation=2, input_dilation=2, groups=3,
                                                           flip=True),
          lambda x, w: ref_conv(x, w, 2, ((2,), (1,)), 2, 2, 3, True), (2, 4, 3), (3, 2, 1)),
    _case("conv_transpose1d", lambda m, x, w: m.conv_transpose1d(x, w, stride=2, padding=1, output_padding=1),
          lambda x, w: ref_conv_transpose(x, w, 2, 1, 1, 1), (2, 4, 3), (2, 3, 3)),
    _case("conv_transpose1d_groups_dil",
          lambda m, x, w: m.conv_transpose1d(x, w, stride=3, dilation=2, groups=2),
          lambda x, w: ref_conv_transpose(x, w, 3, 0, 2, 0, 2), (1, 3, 4), (4, 2, 2)),
    _case("conv_transpose2d", lambda m, x, w: m.conv_transpose2d(x, w, stride=(2, 1), padding=(1, 0),
                                                                  output_padding=(1, 0)),
          lambda x, w: ref_conv_transpose(x, w, (2, 1), (1, 0), 1, (1, 0)), (1, 3, 3, 2), (3, 3, 2, 2)),
    _case("conv_transpose2d_groups",
          lambda m, x, w: m.conv_transpose2d(x, w, stride=2, padding=1, dilation=(1, 2), output_padding=1,
                                             groups=2),
          lambda x, w: ref_conv_transpose(x, w, 2, 1, (1, 2), 1, 2), (1, 3, 2, 4), (2, 2, 2, 2)),
    _case("conv_transpose3d", lambda m, x, w: m.conv_transpose3d(x, w, stride=2, padding=(0, 1, 0)),
          lambda x, w: ref_conv_transpose(x, w, 2, (0, 1, 0)), (1, 2, 3, 2, 2), (2, 2, 2, 2, 2)),
]

CONVOLVE_CASES = [
    OpCase(f"convolve_{mode}_{n}_{k}", fn=lambda m, a, v, mode=mode: m.convolve(a, v, mode=mode),
           ref=lambda a, v, mode=mode: np.convolve(a.astype(np.float64), v.astype(np.float64), mode=mode),
           shapes=((n,), (k,)), rtol=1e-5, atol=1e-5)
    for mode in ("full", "same", "valid") for n, k in ((7, 3), (6, 4), (3, 5))
]

ALL = CASES + CONVOLVE_CASES
GRAD_CASES = CASES + CONVOLVE_CASES[::4]


def _ids(cases):
    return [c.name for c in cases]


@pytest.mark.parametrize("case", ALL, ids=_ids(ALL))
def test_forward(case):
    check_forward(case)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
@pytest.mark.parametrize("case", CASES[::3], ids=_ids(CASES[::3]))
def test_forward_dtypes(case, dtype):
    from harness import make_inputs

    xs = make_inputs(case)
    dt = getattr(mx, dtype)
    out = case.fn(mx, *[mx.array(x).astype(dt) for x in xs])
    assert out.dtype == dt
    # The reference sees the same rounded inputs; half precision rounds the output once more.
    rounded = [np.array(mx.array(x).astype(dt).astype(mx.float64)) for x in xs]
    tol = {"float16": 1e-2, "bfloat16": 5e-2, "float64": 1e-12}[dtype]
    np.testing.assert_allclose(np.array(out.astype(mx.float64)), case.ref(*rounded), rtol=tol, atol=tol)


@pytest.mark.parametrize("case", GRAD_CASES, ids=_ids(GRAD_CASES))
def test_grads(case):
    check_grads(case)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_vmap(case):
    check_vmap(case)


@pytest.mark.parametrize("case", CASES[:4], ids=_ids(CASES[:4]))
def test_compile(case):
    check_compile(case)


# ---------------------------------------------------------------- explicit cases
def test_vmap_grouped_batched_weights():
    """Each vmapped weight applies to its own groups (MLX mixes them up)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 2, 6, 4)).astype(np.float32)
    w = rng.standard_normal((4, 6, 3, 2)).astype(np.float32)
    f = lambda a, b: mx.conv1d(a, b, padding=1, groups=2)  # noqa: E731
    for in_axes in ((0, 0), (None, 0), (0, None)):
        xa = mx.array(x if in_axes[0] == 0 else x[0])
        wa = mx.array(w if in_axes[1] == 0 else w[0])
        got = np.array(mx.vmap(f, in_axes=in_axes)(xa, wa))
        want = np.stack([ref_conv(x[i if in_axes[0] == 0 else 0], w[i if in_axes[1] == 0 else 0],
                                  padding=1, groups=2) for i in range(4)])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_vmap_of_grad():
    """Per-example weight gradients: vmap over grad, against a loop."""
    rng = np.random.default_rng(4)
    x = mx.array(rng.standard_normal((3, 1, 5, 5, 2)).astype(np.float32))
    w = mx.array(rng.standard_normal((4, 3, 3, 2)).astype(np.float32))
    loss = lambda w, x: mx.sum(mx.tanh(mx.conv2d(x, w, stride=2, padding=1)))  # noqa: E731
    got = np.array(mx.vmap(mx.grad(loss), in_axes=(None, 0))(w, x))
    want = np.stack([np.array(mx.grad(loss)(w, mx.array(np.array(x)[i]))) for i in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_grad_shapes_match_inputs():
    """The input cotangent has the input's shape even where strides skip its tail (MLX's is short)."""
    x = mx.ones((1, 7, 8, 2))
    w = mx.ones((2, 3, 2, 2))
    def f(a, b):
        return mx.sum(mx.conv_general(a, b, stride=[2, 3], input_dilation=[1, 2], padding=([1, 0], [0, 0])))

    gx, gw = mx.grad(f, argnums=(0, 1))(x, w)
    assert gx.shape == x.shape and gw.shape == w.shape


def test_non_contiguous_inputs():
    rng = np.random.default_rng(5)
    xt = rng.standard_normal((3, 6, 5, 2)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    x = mx.transpose(mx.array(xt), (3, 1, 2, 0))  # (2, 6, 5, 3), a strided view
    out = mx.conv2d(x, mx.array(w), padding=1)
    np.testing.assert_allclose(np.array(out), ref_conv(np.transpose(xt, (3, 1, 2, 0)), w, padding=1),
                               rtol=1e-4, atol=1e-4)


def test_empty_batch_and_promotion():
    out = mx.conv1d(mx.zeros((0, 5, 2)), mx.ones((3, 2, 2)))
    assert out.shape == (0, 4, 3) and np.array(out).shape == (0, 4, 3)
    out = mx.conv1d(mx.ones((1, 5, 2), mx.float16), mx.ones((3, 2, 2), mx.bfloat16))
    assert out.dtype == mx.float32
    out = mx.conv1d(mx.ones((1, 5, 2)), mx.ones((3, 2, 2), mx.int32))
    assert out.dtype == mx.float32
    np.testing.assert_allclose(np.array(out), np.full((1, 4, 3), 4.0))


def test_lazy():
    out = mx.conv2d(mx.ones((1, 4, 4, 1)), mx.ones((1, 3, 3, 1)))
    assert out._buf is None
    np.testing.assert_allclose(np.array(out), np.full((1, 2, 2, 1), 9.0))


# ---------------------------------------------------------------- errors vs MLX
ERRORS = [
    ("int_inputs", lambda m: m.conv1d(m.ones((1, 5, 2), m.int32), m.ones((3, 2, 2), m.int32))),
    ("input_rank", lambda m: m.conv1d(m.ones((5, 2)), m.ones((3, 2, 2)))),
    ("input_rank_high", lambda m: m.conv_general(m.ones((1, 3, 3, 3, 3, 2)), m.ones((1, 2, 2, 2, 2, 2)))),
    ("weight_rank", lambda m: m.conv1d(m.ones((1, 5, 2)), m.ones((2, 2)))),
    ("channel_mismatch", lambda m: m.conv2d(m.ones((1, 5, 5, 2)), m.ones((3, 2, 2, 3)))),
    ("groups_not_dividing_input", lambda m: m.conv1d(m.ones((1, 5, 4)), m.ones((6, 2, 2)), groups=3)),
    ("groups_not_dividing_output", lambda m: m.conv1d(m.ones((1, 5, 4)), m.ones((5, 2, 2)), groups=2)),
    ("kernel_too_large", lambda m: m.conv1d(m.ones((1, 3, 2)), m.ones((1, 4, 2)))),
    ("dilated_kernel_too_large", lambda m: m.conv1d(m.ones((1, 5, 2)), m.ones((1, 3, 2)), dilation=3)),
    ("zero_stride", lambda m: m.conv1d(m.ones((1, 5, 2)), m.ones((1, 3, 2)), stride=0)),
    ("zero_dilation", lambda m: m.conv2d(m.ones((1, 5, 5, 2)), m.ones((1, 3, 3, 2)), dilation=0)),
    ("zero_input_dilation", lambda m: m.conv_general(m.ones((1, 5, 2)), m.ones((1, 3, 2)), input_dilation=0)),
    ("transpose_zero_stride", lambda m: m.conv_transpose1d(m.ones((1, 5, 2)), m.ones((1, 3, 2)), stride=0)),
    ("general_stride_len", lambda m: m.conv_general(m.ones((1, 5, 2)), m.ones((1, 3, 2)), stride=[1, 1])),
    ("general_padding_len", lambda m: m.conv_general(m.ones((1, 5, 5, 2)), m.ones((1, 3, 3, 2)),
                                                     padding=([1, 0, 1], [0, 2]))),
    ("conv1d_tuple_stride", lambda m: m.conv1d(m.ones((1, 5, 2)), m.ones((1, 3, 2)), stride=(1,))),
    ("conv2d_bad_tuple", lambda m: m.conv2d(m.ones((1, 5, 5, 2)), m.ones((1, 3, 3, 2)), stride=(1, 2, 3))),
    ("float_stride", lambda m: m.conv1d(m.ones((1, 5, 2)), m.ones((1, 3, 2)), stride=1.5)),
    ("convolve_2d", lambda m: m.convolve(m.ones((3, 2)), m.ones((2,)))),
    ("convolve_mode", lambda m: m.convolve(m.ones((3,)), m.ones((2,)), mode="bad")),
    ("convolve_empty", lambda m: m.convolve(m.ones((0,)), m.ones((2,)))),
]


@pytest.mark.parametrize("name,fn", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(name, fn):
    with pytest.raises((ValueError, TypeError)) as info:
        fn(mx)
    if info.type is ValueError:
        assert str(info.value).startswith(("[conv]", "[convolve]")), str(info.value)
    if mlx_core is not None:
        with pytest.raises(info.type):
            mlx_core.eval(fn(mlx_core))


def test_groups_must_be_positive():
    with pytest.raises(ValueError, match=r"\[conv\]"):
        mx.conv1d(mx.ones((1, 5, 2)), mx.ones((1, 3, 2)), groups=0)
