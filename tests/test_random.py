"""mx.random: Threefry bits against MLX, distributions against scipy, rules, errors."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import kiln.core as mx
from kiln.primitives.random import RandomBits
from tests.harness import (OpCase, check_compile, check_forward, check_grads, check_vmap,
                           mlx_core, needs_mlx)


KEY = ((2,),)  # one uint32 key input: make_inputs draws its two words at random
F32 = ("uint32", "float32")


def _key_gen(rng, shape, dtype):
    if np.dtype(dtype) == np.uint32:
        return rng.integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32)
    return rng.uniform(0.5, 1.5, shape)


# ---------------------------------------------------------------- the table
# Exact (integer or bit-exact float) results are compared with MLX at zero
# tolerance; the distributions whose last step is a transcendental op
# (erfinv, log) match MLX up to that op's rounding.
CASES = [
    OpCase("split", lambda m, k: m.random.split(k, 3), shapes=KEY, dtypes=("uint32",),
           gen=_key_gen, grad=False, rtol=0, atol=0),
    OpCase("uniform", lambda m, k: m.random.uniform(shape=(4, 5), key=k), shapes=KEY,
           dtypes=("uint32",), gen=_key_gen, grad=False, rtol=0, atol=0),
    OpCase("uniform_f16", lambda m, k: m.random.uniform(shape=(33,), dtype=m.float16, key=k),
           shapes=KEY, dtypes=("uint32",), gen=_key_gen, grad=False, rtol=0, atol=0),
    OpCase("uniform_bounds", lambda m, k, lo, hi: m.random.uniform(lo - 1, hi + 1, (5, 3), lo.dtype, key=k),
           shapes=((2,), (3,), (5, 1)), dtypes=("uint32", "float32", "float32"), gen=_key_gen,
           grad_argnums=(1, 2), rtol=1e-6, atol=1e-6),
    OpCase("normal", lambda m, k: m.random.normal((7,), key=k), shapes=KEY, dtypes=("uint32",),
           gen=_key_gen, grad=False, rtol=1e-4, atol=1e-5),
    OpCase("normal_loc_scale", lambda m, k, loc, s: m.random.normal((3, 4), loc.dtype, loc, s, key=k),
           shapes=((2,), (4,), (3, 1)), dtypes=("uint32", "float32", "float32"), gen=_key_gen,
           grad_argnums=(1, 2), rtol=1e-4, atol=1e-5),
    OpCase("randint", lambda m, k: m.random.randint(-3, 9, (20,), key=k), shapes=KEY,
           dtypes=("uint32",), gen=_key_gen, grad=False, rtol=0, atol=0),
    OpCase("bernoulli", lambda m, k, p: m.random.bernoulli(p * 0.5, (4, 3), key=k),
           shapes=((2,), (3,)), dtypes=F32, gen=_key_gen, grad=False, rtol=0, atol=0),
    OpCase("truncated_normal", lambda m, k: m.random.truncated_normal(-0.5, 1.5, (9,), key=k),
           shapes=KEY, dtypes=("uint32",), gen=_key_gen, grad=False, rtol=1e-4, atol=1e-5),
    OpCase("gumbel", lambda m, k: m.random.gumbel((9,), key=k), shapes=KEY, dtypes=("uint32",),
           gen=_key_gen, grad=False, rtol=1e-4, atol=1e-5),
    OpCase("laplace", lambda m, k: m.random.laplace((9,), loc=1.0, scale=2.0, key=k), shapes=KEY,
           dtypes=("uint32",), gen=_key_gen, grad=False, rtol=1e-4, atol=1e-5),
    OpCase("categorical", lambda m, k, lg: m.random.categorical(lg, key=k), shapes=((2,), (6, 4)),
           dtypes=F32, gen=lambda r, s, d: _key_gen(r, s, d) if len(s) == 1 else r.standard_normal(s),
           grad=False, rtol=0, atol=0),
    OpCase("categorical_ns", lambda m, k, lg: m.random.categorical(lg, axis=0, num_samples=5, key=k),
           shapes=((2,), (4, 3)), dtypes=F32,
           gen=lambda r, s, d: _key_gen(r, s, d) if len(s) == 1 else r.standard_normal(s),
           grad=False, rtol=0, atol=0),
    OpCase("categorical_single", lambda m, k, lg: m.random.categorical(lg, shape=(10,), key=k),
           shapes=((2,), (5,)), dtypes=F32,
           gen=lambda r, s, d: _key_gen(r, s, d) if s == (2,) else r.standard_normal(s),
           grad=False, vmap=False, rtol=0, atol=0),
    OpCase("permutation", lambda m, k: m.random.permutation(12, key=k), shapes=KEY,
           dtypes=("uint32",), gen=_key_gen, grad=False, rtol=0, atol=0),
    OpCase("permutation_axis", lambda m, k, x: m.random.permutation(x, axis=1, key=k),
           shapes=((2,), (3, 5)), dtypes=F32, gen=_key_gen, grad=False, rtol=0, atol=0),
]
GRAD_CASES = [c for c in CASES if c.grad]
VMAP_CASES = [c for c in CASES if c.vmap]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_forward(case):
    check_forward(case)


@pytest.mark.parametrize("case", GRAD_CASES, ids=[c.name for c in GRAD_CASES])
def test_grads(case):
    check_grads(case)


@pytest.mark.parametrize("case", VMAP_CASES, ids=[c.name for c in VMAP_CASES])
def test_vmap(case):
    check_vmap(case)


@pytest.mark.parametrize("case", CASES[:6], ids=[c.name for c in CASES[:6]])
def test_compile(case):
    check_compile(case)


# ---------------------------------------------------------------- keys and bits
@needs_mlx
@pytest.mark.parametrize("seed", [0, 1, 2**32 + 7, 2**64 - 1])
def test_key_matches_mlx(seed):
    np.testing.assert_array_equal(np.array(mx.random.key(seed)),
                                  np.array(mlx_core.random.key(seed)))


@needs_mlx
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 17])
def test_bits_layout_matches_mlx(n):
    # MLX exposes no bits(); uniform is bits * 2**-32 exactly, so compare through it.
    k = (123, 456789)
    got = np.array(mx.random.bits((n,), key=mx.array(np.array(k, np.uint32))))
    u = np.array(mlx_core.random.uniform(shape=(n,), key=mlx_core.array(np.array(k, np.uint32))))
    np.testing.assert_array_equal(got.astype(np.float32) * np.float32(2.0**-32), u)


def test_bits_narrow_widths_read_the_same_bytes():
    k = mx.random.key(3)
    words = np.array(mx.random.bits((3,), 4, key=k))
    for width, dt in ((1, np.uint8), (2, np.uint16)):
        n = 12 // width
        got = mx.random.bits((n,), width, key=k)
        assert got.dtype == {1: mx.uint8, 2: mx.uint16}[width] and got.shape == (n,)
        np.testing.assert_array_equal(np.array(got), words.astype("<u4").view(dt))


def test_same_key_same_numbers_and_split_keys_differ():
    k = mx.random.key(42)
    a = np.array(mx.random.uniform(shape=(1000,), key=k))
    b = np.array(mx.random.uniform(shape=(1000,), key=k))
    np.testing.assert_array_equal(a, b)
    k1, k2 = mx.random.split(k)
    x = np.array(mx.random.normal((5000,), key=k1))
    y = np.array(mx.random.normal((5000,), key=k2))
    assert not np.array_equal(x, y)
    assert abs(np.corrcoef(x, y)[0, 1]) < 0.05  # 3.5 sigma for n = 5000
    assert len({tuple(r) for r in np.array(mx.random.split(k, 64)).tolist()}) == 64


@needs_mlx
def test_global_state_follows_mlx():
    mx.random.seed(5)
    mlx_core.random.seed(5)
    assert isinstance(mx.random.state, list) and mx.random.state[0].shape == (2,)
    for _ in range(3):
        np.testing.assert_array_equal(np.array(mx.random.uniform(shape=(4,))),
                                      np.array(mlx_core.random.uniform(shape=(4,))))
    np.testing.assert_array_equal(np.array(mx.random.state[0]), np.array(mlx_core.random.state[0]))


def test_seed_resets_and_calls_advance():
    mx.random.seed(9)
    a, b = np.array(mx.random.normal((3,))), np.array(mx.random.normal((3,)))
    assert not np.array_equal(a, b)
    mx.random.seed(9)
    np.testing.assert_array_equal(np.array(mx.random.normal((3,))), a)


def test_shapes_dtypes_and_edge_cases():
    k = mx.random.key(0)
    assert mx.random.uniform(key=k).shape == ()
    e = mx.random.normal((0, 3), key=k)
    assert e.shape == (0, 3) and np.array(e).size == 0
    assert mx.random.split(k, 0).shape == (0, 2)
    assert mx.random.normal(loc=mx.zeros((3,)), key=k).shape == (3,)
    assert mx.random.randint(0, 5, (4,), dtype=mx.uint8, key=k).dtype == mx.uint8
    assert mx.random.categorical(mx.zeros((2, 3)), key=k).dtype == mx.uint32
    assert mx.random.bernoulli(mx.full((2, 3), 0.5), key=k).shape == (2, 3)
    assert mx.random.truncated_normal(mx.zeros((4,)), 1.0, key=k).shape == (4,)
    assert mx.random.permutation(mx.arange(6), key=k).dtype == mx.int32
    for dt in (mx.float16, mx.bfloat16, mx.float64):
        x = mx.random.uniform(-1, 1, (500,), dt, key=k)
        v = np.array(x.astype(mx.float32))
        assert x.dtype == dt and v.min() >= -1 and v.max() < 1
    z = mx.random.normal((2000,), mx.complex64, key=k)
    zc = np.array(z)
    assert z.dtype == mx.complex64 and abs(zc.real.var() - 0.5) < 0.1 and abs(zc.imag.var() - 0.5) < 0.1
    # Non-contiguous parameters behave as their values.
    hi = mx.transpose(mx.array(np.arange(1.0, 7.0).reshape(2, 3)))
    u = np.array(mx.random.uniform(0.0, hi, (3, 2), key=k))
    assert (u < np.arange(1.0, 7.0).reshape(2, 3).T).all()


def test_uniform_stays_below_high_when_bits_round_up():
    # float16 has few mantissa bits: bits near 2**32 round to 1.0 before clamping.
    u = np.array(mx.random.uniform(0, 1, (20000,), mx.float16, key=mx.random.key(1)))
    assert u.max() < 1.0


# ---------------------------------------------------------------- distributions
def _samples(f, n=20000):
    return np.array(f(mx.random.key(11), n)).astype(np.float64)


KS_CASES = [
    ("uniform", lambda k, n: mx.random.uniform(-2, 3, (n,), key=k), stats.uniform(-2, 5)),
    ("normal", lambda k, n: mx.random.normal((n,), loc=1.5, scale=0.3, key=k), stats.norm(1.5, 0.3)),
    ("truncated_normal", lambda k, n: mx.random.truncated_normal(-1.0, 0.5, (n,), key=k),
     stats.truncnorm(-1.0, 0.5)),
    ("gumbel", lambda k, n: mx.random.gumbel((n,), key=k), stats.gumbel_r()),
    ("laplace", lambda k, n: mx.random.laplace((n,), loc=-1.0, scale=2.0, key=k), stats.laplace(-1, 2)),
    ("normal_f64", lambda k, n: mx.random.normal((n,), mx.float64, key=k), stats.norm()),
]


@pytest.mark.parametrize("name,sample,dist", KS_CASES, ids=[c[0] for c in KS_CASES])
def test_distribution_ks_mean_var(name, sample, dist):
    x = _samples(sample)
    assert stats.kstest(x, dist.cdf).pvalue > 1e-3
    n = x.size
    assert abs(x.mean() - dist.mean()) < 5 * dist.std() / np.sqrt(n)
    assert abs(x.var() / dist.var() - 1) < 0.06


def test_randint_and_bernoulli_frequencies():
    k = mx.random.key(2)
    r = np.array(mx.random.randint(-2, 5, (14000,), key=k))
    assert r.min() == -2 and r.max() == 4
    assert stats.chisquare(np.bincount(r + 2)).pvalue > 1e-3
    p = np.array([0.1, 0.5, 0.9])
    b = np.array(mx.random.bernoulli(mx.array(p), (20000, 3), key=k))
    assert b.dtype == np.bool_
    np.testing.assert_allclose(b.mean(0), p, atol=5 * np.sqrt(0.25 / 20000))


@pytest.mark.parametrize("kw", [{}, {"num_samples": 2000}, {"shape": (2000, 3)}])
def test_categorical_frequencies(kw):
    probs = np.array([[0.1, 0.6, 0.3], [0.25, 0.25, 0.5], [0.7, 0.2, 0.1]])
    logits = mx.array(np.log(probs).astype(np.float32))
    if not kw:
        logits = mx.broadcast_to(logits, (2000, 3, 3))
    c = np.array(mx.random.categorical(logits, key=mx.random.key(4), **kw))
    c = c.reshape(-1, 3) if "num_samples" not in kw else c.T
    for j in range(3):
        assert stats.chisquare(np.bincount(c[:, j], minlength=3), probs[j] * c.shape[0]).pvalue > 1e-3


def test_categorical_single_distribution():
    probs = np.array([0.2, 0.5, 0.3])
    c = np.array(mx.random.categorical(mx.array(np.log(probs)), shape=(9000,), key=mx.random.key(1)))
    assert stats.chisquare(np.bincount(c, minlength=3), probs * 9000).pvalue > 1e-3


def test_permutation_is_a_permutation():
    p = np.array(mx.random.permutation(50, key=mx.random.key(0)))
    assert p.dtype == np.uint32 and sorted(p.tolist()) == list(range(50))
    x = np.arange(12).reshape(3, 4)
    y = np.array(mx.random.permutation(mx.array(x), axis=1, key=mx.random.key(0)))
    assert (np.sort(y, axis=1) == x).all()
    # One permutation of the axis, applied to every row.
    assert (y - 4 * np.arange(3)[:, None] == y[0]).all()


def test_multivariate_normal_moments():
    mean = np.array([1.0, -2.0, 0.5])
    a = np.array([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.2, -0.3, 0.7]])
    cov = a @ a.T
    x = np.array(mx.random.multivariate_normal(mx.array(mean), mx.array(cov), (20000,),
                                               key=mx.random.key(3), stream=mx.cpu))
    assert x.shape == (20000, 3)
    np.testing.assert_allclose(x.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.06)


# ---------------------------------------------------------------- rules
def test_random_bits_rules():
    k = mx.random.key(1)
    prim = RandomBits((3,), 4)
    out = mx.random.bits((3,), key=k)
    assert prim.output_shapes([mx.zeros((5, 2), mx.uint32)]) == [(5, 3)]
    (ck,) = prim.vjp([k], [mx.ones((3,), mx.uint32)], [0], [out])
    assert ck.shape == (2,) and not np.array(ck).any()
    (t,) = prim.jvp([k], [mx.zeros((2,), mx.uint32)], [0], [out])
    assert t.shape == (3,) and not np.array(t).any()


@pytest.mark.parametrize("in_axis", [0, 1])
def test_vmap_batched_keys_gives_different_rows(in_axis):
    keys = mx.random.split(mx.random.key(0), 4)
    if in_axis == 1:
        keys = mx.transpose(keys)
    got = np.array(mx.vmap(lambda k: mx.random.normal((3, 2), key=k), in_axes=in_axis)(keys))
    loop = np.stack([np.array(mx.random.normal((3, 2), key=mx.array(np.take(np.array(keys), i, axis=in_axis))))
                     for i in range(4)])
    np.testing.assert_array_equal(got, loop)
    assert len({r.tobytes() for r in got}) == 4


def test_normal_grad_wrt_loc_and_scale():
    k = mx.random.key(8)
    z = np.array(mx.random.normal((6,), key=k))
    g_loc, g_scale = mx.grad(lambda loc, s: mx.sum(mx.random.normal((6,), loc=loc, scale=s, key=k)),
                             argnums=(0, 1))(mx.array(0.0), mx.array(1.0))
    assert abs(g_loc.item() - 6) < 1e-6
    assert abs(g_scale.item() - z.sum()) < 1e-4


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("call,exc,msg", [
    (lambda: mx.random.uniform(key=mx.array([1, 2])), ValueError, "Expected key type uint32"),
    (lambda: mx.random.uniform(key=mx.array([1, 2, 3], mx.uint32)), ValueError, "Expected key shape (2)"),
    (lambda: mx.random.normal(dtype=mx.int32), ValueError, "[normal] Only floating point"),
    (lambda: mx.random.uniform(dtype=mx.int32), ValueError, "[uniform] Can only generate"),
    (lambda: mx.random.randint(0, 5, dtype=mx.float32), ValueError, "[randint]"),
    (lambda: mx.random.truncated_normal(0, 1, dtype=mx.int32), ValueError, "[trunc_normal]"),
    (lambda: mx.random.laplace(dtype=mx.int32), ValueError, "[laplace]"),
    (lambda: mx.random.categorical(mx.zeros((3,)), shape=(2,), num_samples=2), ValueError, "At most one"),
    (lambda: mx.random.uniform(mx.zeros((3,)), 1), ValueError, "Cannot generate random values of shape ()"),
    (lambda: mx.random.uniform(mx.zeros((3,)), 1, (2,)), ValueError, "cannot be broadcast"),
    (lambda: mx.random.uniform(shape=(2, -1)), ValueError, "Negative dimensions"),
    (lambda: mx.random.bits((2,), width=3), ValueError, "[bits]"),
    (lambda: mx.random.key(-1), TypeError, "seed"),
    (lambda: mx.random.seed(2**64), TypeError, "seed"),
    (lambda: mx.random.multivariate_normal(mx.zeros((2,)), mx.zeros((3, 3))), ValueError, "compatible shapes"),
])
def test_errors(call, exc, msg):
    with pytest.raises(exc) as info:
        call()
    assert msg in str(info.value)
