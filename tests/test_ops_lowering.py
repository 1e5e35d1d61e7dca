"""Node-building lowerings and layout rewrites of the eager path, as an op table.

Python-scalar powers become squares/products/reciprocal/sqrt/rsqrt; the table checks values
(NumPy and MLX), dtypes, gradients in both modes, vmap and compile exactly like the other op
tables, plus the edge cases (NaN, zero and negative bases, integer dtypes, float16/bfloat16).
The layout rows check that weight gradients come back row-major and that the batch fold gives
the same values.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import kiln.core as mx
import kiln.nn as nn
from harness import OpCase, check_compile, check_forward, check_grads, check_vmap, mlx_core, needs_mlx
from kiln.primitives.binary import Power

EXPONENTS = (2, 3, 4, -1, -2, 0.5, -0.5)


def _pos(rng, shape, dtype):
    return rng.uniform(0.5, 2.0, shape)


def _signed(rng, shape, dtype):
    return rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)


def _specials(values):
    def gen(rng, shape, dtype):
        return np.resize(np.array(values, np.float64), shape)
    return gen


def _ref(e):
    # float64 reference rounded to the case's dtype by the comparison tolerance
    return lambda x: np.power(x.astype(np.float64), e).astype(x.dtype)


def _cases():
    cases = []
    for e in EXPONENTS:
        fn = (lambda e: lambda m, x: x ** e)(e)
        dom = _pos if isinstance(e, float) else _signed
        cases.append(OpCase(f"pow{e}", fn, _ref(e), gen=dom))
        cases.append(OpCase(f"power{e}_fn", (lambda e: lambda m, x: m.power(x, e))(e), _ref(e), gen=dom,
                            shapes=((2, 3, 4),), order=1))
        cases.append(OpCase(f"pow{e}_f16", fn, _ref(e), dtypes=("float16",), gen=dom, grad=False,
                            rtol=2e-3, atol=1e-3))
        cases.append(OpCase(f"pow{e}_bf16", fn, None, gen=lambda r, s, d, g=dom: g(r, s, d).astype(
            ml_dtypes.bfloat16), dtypes=("float32",), grad=False, vmap=False, rtol=1e-2, atol=1e-2))
        # NaN, zeros and negative bases (not -inf for the half powers: see docs/eager.md)
        sp = [np.nan, 0.0, -0.0, -3.0, 2.5, 1.0, -1.0, 7.0, np.inf, 1e-3, -2.0, 0.25]
        if not isinstance(e, float):
            sp[-1] = -np.inf
        if e == -0.5:
            sp[2] = 0.5  # rsqrt(-0.0) is -inf, pow gives +inf (documented)
        cases.append(OpCase(f"pow{e}_specials", fn, _ref(e), gen=_specials(sp), grad=False))
        # integer arrays keep MLX's power semantics (negative powers give 0, halves promote)
        cases.append(OpCase(f"pow{e}_int32", fn, None, dtypes=("int32",), grad=False,
                            gen=lambda r, s, d: r.integers(-4, 5, s)))
        if e in (2, 3, 4, 0.5):  # a negative Python int is out of uint8's range (as in MLX)
            cases.append(OpCase(f"pow{e}_uint8", fn, None, dtypes=("uint8",), grad=False,
                                gen=lambda r, s, d: r.integers(0, 5, s)))
    # exponents that stay a Power node, next to the lowered ones
    cases.append(OpCase("pow1.5", lambda m, x: x ** 1.5, _ref(1.5), gen=_pos))
    cases.append(OpCase("pow_int_float2", lambda m, x: x ** 2.0, None, dtypes=("int32",), grad=False))
    cases.append(OpCase("pow_chain", lambda m, x, y: (x ** 2 + y ** -0.5) ** 3, None, shapes=((3, 4), (4,)),
                        gen=_pos, order=1))
    return cases


CASES = _cases()
GRAD_CASES = [c for c in CASES if c.grad]
VMAP_CASES = [c for c in CASES if c.vmap and not c.name.endswith(("_f16", "_specials"))]
COMPILE_CASES = [c for c in CASES if c.compile and not c.name.endswith("_f16")]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_forward(case):
    check_forward(case)


@pytest.mark.parametrize("case", GRAD_CASES, ids=[c.name for c in GRAD_CASES])
def test_grads(case):
    check_grads(case)


@pytest.mark.parametrize("case", VMAP_CASES, ids=[c.name for c in VMAP_CASES])
def test_vmap(case):
    check_vmap(case)


@pytest.mark.parametrize("case", COMPILE_CASES, ids=[c.name for c in COMPILE_CASES])
def test_compile(case):
    check_compile(case)


@pytest.mark.parametrize("e", EXPONENTS)
def test_lowered_no_power_node(e):
    """The lowering happens when the node is built: no Power primitive is left."""
    out = mx.array([1.0, 2.0]) ** e
    seen, stack = [], [out]
    while stack:
        n = stack.pop()
        seen.append(type(n._prim))
        stack.extend(n._inputs or ())
    assert Power not in seen
    assert type((mx.array([1.0, 2.0]) ** 1.5)._prim) is Power


def test_half_power_specials_documented():
    """sqrt/rsqrt semantics at -inf and -0 (the documented difference from IEEE pow)."""
    x = mx.array([-np.inf, -0.0])
    h, r = np.array(x ** 0.5), np.array(x ** -0.5)
    assert np.isnan(h[0]) and h[1] == 0 and np.signbit(h[1])
    assert np.isnan(r[0]) and r[1] == -np.inf


# ---------------------------------------------------------------- layouts
def _linear_grads(x_shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((5, x_shape[-1])).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    g = rng.standard_normal(x_shape[:-1] + (5,)).astype(np.float32)

    def f(w, b, x):
        return mx.sum((x @ w.T + b) * mx.array(g))

    gw, gb, gx = mx.grad(f, argnums=(0, 1, 2))(mx.array(w), mx.array(b), mx.array(x))
    x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, 5)
    want = (g2.T.astype(np.float64) @ x2, g2.sum(0), (g.astype(np.float64) @ w))
    return (gw, gb, gx), want


@pytest.mark.parametrize("x_shape", [(7, 4), (3, 7, 4), (2, 3, 6, 4)])
def test_weight_grad_row_major(x_shape):
    """``x @ w.T``: w's gradient is ``g^T x`` written row-major, the batch folded into K."""
    got, want = _linear_grads(x_shape)
    for gv, wv in zip(got, want):
        np.testing.assert_allclose(np.array(gv), wv, rtol=1e-4, atol=1e-4)
    mx.eval(got[0])
    assert np.asarray(got[0]).flags.c_contiguous


@pytest.mark.parametrize("x_shape", [(7, 4), (3, 7, 4)])
def test_weight_grad_plain_b(x_shape):
    """``x @ w`` (no transpose) with a batch: folded GEMM, same values."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((x_shape[-1], 5)).astype(np.float32)
    gw = mx.grad(lambda w: mx.sum(mx.sin(mx.array(x) @ w)))(mx.array(w))
    gy = np.cos(x.astype(np.float64) @ w)
    want = x.reshape(-1, x.shape[-1]).T.astype(np.float64) @ gy.reshape(-1, 5)
    np.testing.assert_allclose(np.array(gw), want, rtol=1e-4, atol=1e-4)
    assert np.asarray(gw).flags.c_contiguous


@needs_mlx
@pytest.mark.parametrize("x_shape", [(7, 4), (3, 7, 4)])
def test_weight_grad_vs_mlx(x_shape):
    """The same Linear gradients as MLX, through nn.value_and_grad."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape).astype(np.float32)
    outs = []
    for m, mnn in ((mx, nn), (mlx_core, __import__("mlx.nn", fromlist=["nn"]))):
        lin = mnn.Linear(4, 5)
        lin.weight = m.array(np.arange(20, dtype=np.float32).reshape(5, 4) / 10)
        lin.bias = m.array(np.ones(5, np.float32))
        _, g = mnn.value_and_grad(lin, lambda mod, x: m.sum(m.tanh(mod(x))))(lin, m.array(x))
        outs.append((np.array(g["weight"]), np.array(g["bias"])))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_weight_grad_vmap_and_compile():
    """Per-example weight gradients (vmap of grad) and compile(grad) agree with the loop."""
    rng = np.random.default_rng(3)
    w = mx.array(rng.standard_normal((5, 4)).astype(np.float32))
    xs = mx.array(rng.standard_normal((6, 3, 4)).astype(np.float32))
    f = lambda w, x: mx.sum(mx.tanh(x @ w.T))  # noqa: E731
    got = mx.vmap(mx.grad(f), in_axes=(None, 0))(w, xs)
    loop = np.stack([np.array(mx.grad(f)(w, xs[i])) for i in range(6)])
    np.testing.assert_allclose(np.array(got), loop, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.array(mx.compile(mx.grad(f))(w, xs)), np.array(mx.grad(f)(w, xs)),
                               rtol=1e-5, atol=1e-5)


def test_transpose_of_transpose_cancels():
    """A permutation of a pending permutation is built as one node (the identity: the input)."""
    x = mx.array(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    assert mx.swapaxes(mx.swapaxes(x, 0, 2), 0, 2) is x
    y = mx.transpose(mx.transpose(x, (1, 0, 2)), (2, 0, 1))
    assert y._inputs[0] is x
    np.testing.assert_array_equal(np.array(y), np.transpose(np.transpose(np.array(x), (1, 0, 2)), (2, 0, 1)))


# ---------------------------------------------------------------- fast float32 transcendentals
def test_erf_float32_rational_accuracy():
    """The float32 erf path against scipy in float64: relative error, endpoints, NaN, 0-d."""
    sps = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-6, 6, 200_000), rng.standard_normal(50_000) * 1e-3,
                        [0.0, -0.0, 1e-30, -1e-30, 3.9, 3.93, 50.0, -50.0]]).astype(np.float32)
    got = np.array(mx.erf(mx.array(x)))
    ref = sps.erf(x.astype(np.float64))
    assert got.dtype == np.float32
    assert np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-38)) < 6e-7
    ends = np.array(mx.erf(mx.array(np.float32([np.inf, -np.inf, np.nan]))))
    assert ends[0] == 1 and ends[1] == -1 and np.isnan(ends[2])
    assert abs(float(mx.erf(mx.array(np.float32(0.3)))) - sps.erf(0.3)) < 1e-7
