"""mx.fft against NumPy and MLX: forward values/dtypes, gradients, vmap, compile, errors."""
import numpy as np
import pytest

import kiln.core as mx
from harness import OpCase, check_compile, check_forward, check_grads, check_vmap, mlx_core, needs_mlx

c64 = lambda f: (lambda *xs: f(*xs).astype(np.complex64))  # noqa: E731
f32 = lambda f: (lambda *xs: f(*xs).astype(np.float32))  # noqa: E731

FORWARD = [
    OpCase("fft", lambda m, x: m.fft.fft(x), c64(np.fft.fft), rtol=1e-4, atol=1e-5),
    OpCase("fft_n_pad", lambda m, x: m.fft.fft(x, n=6, axis=0), c64(lambda x: np.fft.fft(x, 6, 0)), rtol=1e-4, atol=1e-5),
    OpCase("fft_n_trunc", lambda m, x: m.fft.fft(x, n=3), c64(lambda x: np.fft.fft(x, 3)), rtol=1e-4, atol=1e-5),
    OpCase("ifft_ortho", lambda m, x: m.fft.ifft(x, norm="ortho"), c64(lambda x: np.fft.ifft(x, norm="ortho")), rtol=1e-4, atol=1e-5),
    OpCase("fft_forward", lambda m, x: m.fft.fft(x, norm="forward"), c64(lambda x: np.fft.fft(x, norm="forward")), rtol=1e-4, atol=1e-5),
    OpCase("fft2", lambda m, x: m.fft.fft2(x), c64(np.fft.fft2), shapes=((2, 3, 4),), rtol=1e-4, atol=1e-5),
    OpCase("ifft2_s", lambda m, x: m.fft.ifft2(x, s=(2, 5)), c64(lambda x: np.fft.ifft2(x, s=(2, 5))), shapes=((2, 3, 4),), rtol=1e-4, atol=1e-5),
    OpCase("fftn", lambda m, x: m.fft.fftn(x), c64(np.fft.fftn), shapes=((2, 3, 4),), rtol=1e-4, atol=1e-5),
    OpCase("ifftn_axes", lambda m, x: m.fft.ifftn(x, axes=(0, 2)), c64(lambda x: np.fft.ifftn(x, axes=(0, 2))), shapes=((2, 3, 4),), rtol=1e-4, atol=1e-5),
    OpCase("rfft", lambda m, x: m.fft.rfft(x), c64(np.fft.rfft), rtol=1e-4, atol=1e-5),
    OpCase("rfft_odd_n", lambda m, x: m.fft.rfft(x, n=5, axis=0), c64(lambda x: np.fft.rfft(x, 5, 0)), rtol=1e-4, atol=1e-5),
    OpCase("irfft", lambda m, x: m.fft.irfft(x), f32(np.fft.irfft), rtol=1e-4, atol=1e-5),
    OpCase("irfft_odd", lambda m, x: m.fft.irfft(x, n=7), f32(lambda x: np.fft.irfft(x, 7)), rtol=1e-4, atol=1e-5),
    OpCase("rfft2", lambda m, x: m.fft.rfft2(x), c64(np.fft.rfft2), shapes=((2, 3, 4),), rtol=1e-4, atol=1e-5),
    OpCase("irfft2_s", lambda m, x: m.fft.irfft2(x, s=(3, 5)), f32(lambda x: np.fft.irfft2(x, s=(3, 5))), shapes=((2, 3, 4),), rtol=1e-4, atol=1e-5),
    OpCase("rfftn", lambda m, x: m.fft.rfftn(x), c64(np.fft.rfftn), shapes=((2, 3, 4),), rtol=1e-4, atol=1e-5),
    OpCase("irfftn_axes", lambda m, x: m.fft.irfftn(x, s=(4, 6), axes=(0, 2)), f32(lambda x: np.fft.irfftn(x, s=(4, 6), axes=(0, 2))), shapes=((2, 3, 4),), rtol=1e-4, atol=1e-5),
    OpCase("fft_int", lambda m, x: m.fft.fft(x), c64(np.fft.fft), dtypes=("int32",), rtol=1e-4, atol=1e-4),
    OpCase("fft_f16", lambda m, x: m.fft.fft(x), c64(np.fft.fft), dtypes=("float16",), rtol=1e-3, atol=1e-3),
    OpCase("fftshift", lambda m, x: m.fft.fftshift(x), np.fft.fftshift, shapes=((3, 4),), dtypes=("int32",)),
    OpCase("ifftshift_axis", lambda m, x: m.fft.ifftshift(x, axes=0), lambda x: np.fft.ifftshift(x, axes=0), shapes=((5, 4),)),
    OpCase("fftshift_neg", lambda m, x: m.fft.fftshift(x, axes=[-1]), lambda x: np.fft.fftshift(x, axes=[-1]), shapes=((3, 5),)),
]

# Real-valued end to end and at most quadratic, so the complex64 precision of
# the transforms allows large finite-difference steps (exact for quadratics).
GRADS = [
    OpCase("fft_re_im", lambda m, x: m.real(m.fft.fft(x)) * m.imag(m.fft.fft(x, axis=0)), shapes=((3, 4),)),
    OpCase("ifft_ortho_n", lambda m, x: m.square(m.imag(m.fft.ifft(x, n=5, norm="ortho"))), shapes=((3, 4),)),
    OpCase("fft2_s", lambda m, x: m.real(m.fft.fft2(x, s=(2, 5))) * 2 + m.imag(m.fft.fft2(x, norm="forward")).sum(), shapes=((3, 4),)),
    OpCase("rfft", lambda m, x: m.real(m.fft.rfft(x)) * m.imag(m.fft.rfft(x)), shapes=((3, 5),)),
    OpCase("rfft_n", lambda m, x: m.imag(m.fft.rfft(x, n=6, axis=0, norm="ortho")), shapes=((3, 4),)),
    OpCase("irfft_even", lambda m, x: m.square(m.fft.irfft(m.fft.fft(x))), shapes=((2, 4),)),
    OpCase("irfft_odd_n", lambda m, x: m.fft.irfft(m.fft.fft(x), n=5, norm="forward"), shapes=((2, 4),)),
    OpCase("rfftn_irfftn", lambda m, x: m.fft.irfftn(m.fft.fftn(x) * m.fft.fftn(x), s=(3, 4), axes=(0, 1)), shapes=((3, 3),)),
    OpCase("rfft2", lambda m, x: m.real(m.fft.rfft2(x)) * m.imag(m.fft.rfft2(x, norm="ortho")), shapes=((3, 4),)),
]



@pytest.mark.parametrize("case", FORWARD + GRADS, ids=str)
def test_forward(case):
    check_forward(case)


GRAD_PARAMS = [pytest.param(c, id=c.name) for c in GRADS]


@pytest.mark.parametrize("case", GRAD_PARAMS)
def test_grads(case):
    check_grads(case, eps=0.5, rtol=2e-3, atol=2e-3, identity_rtol=1e-5)


@pytest.mark.parametrize("case", FORWARD[:17:2] + GRADS[:4], ids=str)
def test_vmap(case):
    check_vmap(case)


@pytest.mark.parametrize("case", FORWARD[::3] + GRADS[::3], ids=str)
def test_compile(case):
    check_compile(case)


def test_roundtrip_and_noncontiguous():
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    a = mx.array(x).T  # non-contiguous view
    np.testing.assert_allclose(np.array(mx.fft.irfft(mx.fft.rfft(a), n=4)), x.T, atol=1e-5)
    np.testing.assert_allclose(np.array(mx.fft.ifftn(mx.fft.fftn(a))), x.T, atol=1e-5)


def test_complex_input_and_empty_batch():
    rng = np.random.default_rng(1)
    z = (rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))).astype(np.complex64)
    np.testing.assert_allclose(np.array(mx.fft.fft(mx.array(z))), np.fft.fft(z), rtol=1e-4, atol=1e-5)
    # irfft ignores the imaginary part of the DC bin, as NumPy's does.
    np.testing.assert_allclose(np.array(mx.fft.irfft(mx.array(z))), np.fft.irfft(z), rtol=1e-4, atol=1e-5)
    out = mx.fft.fft(mx.zeros((0, 3)))
    assert out.shape == (0, 3) and out.dtype == mx.complex64
    assert mx.fft.fftn(mx.zeros((2, 3)), axes=()).dtype == mx.float32


@pytest.mark.parametrize("n,d", [(1, 1.0), (5, 0.5), (6, 2.0)])
def test_freqs(n, d):
    np.testing.assert_allclose(np.array(mx.fft.fftfreq(n, d)), np.fft.fftfreq(n, d), rtol=1e-6)
    np.testing.assert_allclose(np.array(mx.fft.rfftfreq(n, d)), np.fft.rfftfreq(n, d), rtol=1e-6)
    assert mx.fft.fftfreq(n, d).dtype == mx.float32
    if mlx_core is not None:
        np.testing.assert_allclose(np.array(mx.fft.fftfreq(n, d)), np.array(mlx_core.fft.fftfreq(n, d)), rtol=1e-6)


ERRORS = [
    (lambda m, x: m.fft.fft(x, n=0), ValueError),
    (lambda m, x: m.fft.fft(x, axis=2), IndexError),
    (lambda m, x: m.fft.fft(m.array(1.0)), IndexError),
    (lambda m, x: m.fft.fftn(x, s=(3,)), ValueError),
    (lambda m, x: m.fft.fftn(x, s=(3, 4), axes=(0,)), ValueError),
    (lambda m, x: m.fft.fftn(x, axes=(0, 0)), ValueError),
    (lambda m, x: m.fft.fft(x, norm="foo"), ValueError),
    (lambda m, x: m.fft.irfftn(x, s=(2, 1)), ValueError),
    (lambda m, x: m.fft.fft(m.zeros((2, 0))), ValueError),
    (lambda m, x: m.fft.fftshift(x, axes=5), IndexError),
    (lambda m, x: m.fft.fftfreq(0), ValueError),
    (lambda m, x: m.fft.fftfreq(5, d=0), ValueError),
]


@pytest.mark.parametrize("k", range(len(ERRORS)))
def test_errors(k):
    fn, err = ERRORS[k]
    with pytest.raises(err) as info:
        fn(mx, mx.zeros((2, 3)))
    if mlx_core is not None:
        with pytest.raises(err) as minfo:
            fn(mlx_core, mlx_core.zeros((2, 3)))
        if "SmallVector" not in str(minfo.value):
            assert str(info.value) == str(minfo.value)


_ = needs_mlx
