"""grad / value_and_grad / vjp / jvp / vmap / custom_function / checkpoint machinery."""
import gc

import numpy as np
import pytest

import kiln.core as mx
from harness import mlx_core, needs_mlx


def f(x):
    return mx.sum(mx.sin(x) * x)


X = np.array([0.5, -1.0, 2.0], dtype=np.float32)


def test_grad_basic_and_value():
    x = mx.array(X)
    g = mx.grad(f)(x)
    np.testing.assert_allclose(np.array(g), np.cos(X) * X + np.sin(X), rtol=1e-6)
    v, g2 = mx.value_and_grad(f)(x)
    np.testing.assert_allclose(v.item(), float(np.sum(np.sin(X) * X)), rtol=1e-6)
    np.testing.assert_allclose(np.array(g2), np.array(g))


def test_argnums_argnames_trees():
    a, b = mx.array(2.0), mx.array(3.0)
    fn = lambda x, y: x * y * y  # noqa: E731
    ga, gb = mx.grad(fn, argnums=[0, 1])(a, b)
    assert (ga.item(), gb.item()) == (9.0, 12.0)
    assert mx.grad(fn, argnums=-1)(a, b).item() == 12.0
    pos, kw = mx.grad(lambda x, y: x * y, argnames=["y"])(a, y=b)
    assert pos is None and kw["y"].item() == 2.0
    pos, kw = mx.grad(lambda x, y: x * y, argnums=0, argnames="y")(a, y=b)
    assert pos.item() == 3.0 and kw["y"].item() == 2.0
    tree = {"k": [mx.array([1.0, 2.0]), mx.array(3.0)], "t": (mx.array(1.0),)}
    g = mx.grad(lambda d: mx.sum(d["k"][0] * 2) + d["t"][0] * d["k"][1])(tree)
    assert g["k"][0].tolist() == [2.0, 2.0] and g["k"][1].item() == 1.0 and g["t"][0].item() == 3.0
    assert isinstance(g["t"], tuple)


def test_value_and_grad_tuple_output_and_aux():
    x = mx.array([1.0, 2.0])
    (loss, aux), g = mx.value_and_grad(lambda x: (mx.sum(x * x), x + 1))(x)
    assert loss.item() == 5.0 and aux.tolist() == [2.0, 3.0] and g.tolist() == [2.0, 4.0]


@needs_mlx
def test_errors_match_mlx():
    cases = [
        lambda m: m.grad(lambda x: x * 2)(m.array([1.0, 2.0])),
        lambda m: m.grad(lambda x: x.sum())(1.0),
        lambda m: m.grad(lambda x, y: (x * y).sum(), argnums=2)(m.array(1.0), m.array(2.0)),
        lambda m: m.vjp(lambda x: x * 2, [m.array([1.0])], [m.array([1.0, 2.0])]),
        lambda m: m.vmap(lambda x, y: x + y)(m.ones((2, 3)), m.ones((3, 3))),
        lambda m: m.vmap(lambda x: x, in_axes=2)(m.ones((2, 3))),
    ]
    for c in cases:
        with pytest.raises(Exception) as ek:
            c(mx)
        with pytest.raises(Exception) as em:
            c(mlx_core)
        assert type(ek.value) is type(em.value), (ek.value, em.value)
        # kiln's message starts like MLX's (kiln may add detail after it)
        assert str(ek.value)[:30] == str(em.value)[:30], (str(ek.value), str(em.value))


def test_vjp_jvp_multi_output():
    x = mx.array(2.0)
    outs, vj = mx.vjp(lambda x: [x * 2, x * 3], [x], [mx.array(1.0), mx.array(1.0)])
    assert [o.item() for o in outs] == [4.0, 6.0] and vj[0].item() == 5.0
    outs, jv = mx.jvp(lambda x, y: x * y, [mx.array(2.0), mx.array(3.0)], [mx.array(1.0), mx.array(0.0)])
    assert outs[0].item() == 6.0 and jv[0].item() == 3.0


def test_unused_input_gets_zeros_and_stop_gradient():
    ga, gb = mx.grad(lambda a, b: mx.sum(a * 2), argnums=[0, 1])(mx.array([1.0]), mx.zeros((2, 3), mx.float16))
    assert gb.shape == (2, 3) and gb.dtype == mx.float16 and not np.array(gb).any()
    g = mx.grad(lambda x: mx.sum(mx.stop_gradient(x) * x))(mx.array([3.0]))
    assert g.tolist() == [3.0]


def test_higher_order_and_mixed_nesting():
    x = mx.array(X)
    h = mx.grad(lambda x: mx.sum(mx.grad(f)(x)))(x)
    want = -np.sin(X) * X + 2 * np.cos(X)
    np.testing.assert_allclose(np.array(h), want, rtol=1e-5)
    third = mx.grad(mx.grad(mx.grad(lambda x: mx.sin(x))))(mx.array(0.3))
    np.testing.assert_allclose(third.item(), -np.cos(0.3), rtol=1e-5)
    # forward-over-reverse HVP equals reverse-over-reverse
    v = mx.array([1.0, 0.5, -2.0])
    _, hvp = mx.jvp(mx.grad(f), [x], [v])
    np.testing.assert_allclose(np.array(hvp[0]), want * np.array(v), rtol=1e-5)
    # reverse over forward
    g = mx.grad(lambda x: mx.sum(mx.jvp(f, [x], [v])[1][0]))(x)
    np.testing.assert_allclose(np.array(g), want * np.array(v), rtol=1e-5)
    # grad(vmap(grad))
    gv = mx.grad(lambda x: mx.sum(mx.vmap(mx.grad(lambda r: mx.sum(mx.sin(r) * r)))(x)))(mx.array(X.reshape(3, 1)))
    np.testing.assert_allclose(np.array(gv).ravel(), want, rtol=1e-5)


def test_python_control_flow_on_values_inside_grad():
    def g(x):
        if (x > 0).item():
            return x * x
        return -x

    assert mx.grad(g)(mx.array(3.0)).item() == 6.0
    assert mx.grad(g)(mx.array(-3.0)).item() == -1.0


def test_eval_inside_grad_keeps_graph():
    def g(x):
        y = mx.sin(x)
        mx.eval(y)
        return mx.sum(y * y)

    x = mx.array(X)
    np.testing.assert_allclose(np.array(mx.grad(g)(x)), 2 * np.sin(X) * np.cos(X), rtol=1e-5)


def test_jacobians_and_hessian():
    A = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], dtype=np.float32)
    fn = lambda x: mx.tanh(mx.array(A) @ x)  # noqa: E731
    x = mx.array(X)
    jr, jf = mx.jacrev(fn)(x), mx.jacfwd(fn)(x)
    want = (1 - np.tanh(A @ X) ** 2)[:, None] * A
    np.testing.assert_allclose(np.array(jr), want, rtol=1e-5)
    np.testing.assert_allclose(np.array(jf), want, rtol=1e-5)
    H = mx.hessian(f)(x)
    np.testing.assert_allclose(np.array(H), np.diag(-np.sin(X) * X + 2 * np.cos(X)), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- vmap
def test_vmap_axes_trees_and_kwargs():
    a = mx.array(np.arange(6, dtype=np.float32).reshape(2, 3))
    b = mx.array(np.arange(3, dtype=np.float32))
    out = mx.vmap(lambda x, y: x * y, in_axes=(0, None))(a, b)
    np.testing.assert_array_equal(np.array(out), np.array(a) * np.array(b))
    out = mx.vmap(lambda x: x * 2, in_axes=1, out_axes=1)(a)
    np.testing.assert_array_equal(np.array(out), np.array(a) * 2)
    out = mx.vmap(lambda x: mx.sum(x), in_axes=-1)(a)
    np.testing.assert_array_equal(np.array(out), np.array(a).sum(0))
    tree = {"p": [a, (b,)], "q": mx.transpose(a)}
    out = mx.vmap(lambda t, scale=1.0: t["p"][0] * t["p"][1][0] * scale + t["q"],
                  in_axes=({"p": [0, (None,)], "q": 1},))(tree, scale=2.0)
    np.testing.assert_array_equal(np.array(out), np.array(a) * np.array(b) * 2 + np.array(a))
    # unbatched output broadcasts
    out = mx.vmap(lambda x: b * 1.0)(a)
    assert out.shape == (2, 3)


def test_vmap_nested_and_composed():
    a = mx.array(np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32))
    out = mx.vmap(mx.vmap(lambda r: mx.sin(r) * 2, in_axes=1), in_axes=0)(a)
    want = np.sin(np.array(a)) * 2
    np.testing.assert_allclose(np.array(out), np.transpose(want, (0, 2, 1)), rtol=1e-6)
    pe = mx.vmap(mx.grad(f))(mx.array(np.stack([X, 2 * X])))
    np.testing.assert_allclose(np.array(pe)[1], np.cos(2 * X) * 2 * X + np.sin(2 * X), rtol=1e-5)
    jv = mx.vmap(lambda x: mx.jvp(mx.sin, [x], [mx.ones_like(x)])[1][0])(a)
    np.testing.assert_allclose(np.array(jv), np.cos(np.array(a)), rtol=1e-6)


def test_vmap_eval_inside_raises():
    with pytest.raises(ValueError, match="vmap"):
        mx.vmap(lambda x: x.item())(mx.ones((2, 1)))
    with pytest.raises(ValueError, match="vmap"):
        mx.vmap(lambda x: mx.eval(x) or x)(mx.ones((2, 3)))
    with pytest.raises(ValueError, match="vmap"):
        mx.vmap(lambda x: print(x) or x)(mx.ones((2, 3)))


def test_vmap_size_mismatch_message_names_inputs():
    with pytest.raises(ValueError, match=r"Inconsistent axis sizes: 2 and 3.*input 0.*input 1"):
        mx.vmap(lambda x, y: x + y)(mx.ones((2, 3)), mx.ones((3, 3)))


def test_vmap_binary_with_operands_of_different_rank():
    a = mx.array(np.arange(8, dtype=np.float32).reshape(2, 4))
    c = mx.array(np.arange(6, dtype=np.float32).reshape(3, 2))
    out = mx.vmap(lambda x, y: mx.reshape(x, (4, 1)) + y, in_axes=(0, 1))(a, c)
    want = np.stack([np.array(a)[i].reshape(4, 1) + np.array(c)[:, i] for i in range(2)])
    np.testing.assert_array_equal(np.array(out), want)


# ---------------------------------------------------------------- custom_function / checkpoint
def _custom():
    @mx.custom_function
    def g(x, y):
        return mx.sin(x) * y

    @g.vjp
    def g_vjp(primals, cotangent, output):
        x, y = primals
        return cotangent * 10 * y, cotangent * 20 * x

    @g.jvp
    def g_jvp(primals, tangents):
        x, y = primals
        tx, ty = tangents
        return tx * 100 * y + ty * 0

    return g


def test_custom_function_rules_used():
    g = _custom()
    x, y = mx.array(1.0), mx.array(2.0)
    np.testing.assert_allclose(g(x, y).item(), np.sin(1.0) * 2, rtol=1e-6)
    gx, gy = mx.grad(lambda a, b: g(a, b), argnums=[0, 1])(x, y)
    assert (gx.item(), gy.item()) == (20.0, 20.0)
    _, t = mx.jvp(lambda a: g(a, y), [x], [mx.array(1.0)])
    assert t[0].item() == 200.0


def test_custom_function_defaults_and_vmap():
    @mx.custom_function
    def h(x):
        return mx.exp(x)

    x = mx.array([0.0, 1.0])
    np.testing.assert_allclose(np.array(mx.grad(lambda v: mx.sum(h(v)))(x)), np.exp([0.0, 1.0]), rtol=1e-6)
    g = _custom()
    xs, ys = mx.array([1.0, 2.0]), mx.array([3.0, 4.0])
    out = mx.vmap(g)(xs, ys)
    np.testing.assert_allclose(np.array(out), np.sin([1.0, 2.0]) * [3.0, 4.0], rtol=1e-6)
    # custom vjp still applies under vmap(grad) and grad(vmap)
    pe = mx.vmap(mx.grad(lambda a, b: g(a, b)))(xs, ys)
    assert pe.tolist() == [30.0, 40.0]
    gv = mx.grad(lambda a: mx.sum(mx.vmap(g)(a, ys)))(xs)
    assert gv.tolist() == [30.0, 40.0]

    @mx.custom_function
    def k(x):
        return x * 2

    @k.vmap
    def k_vmap(inputs, axes):
        return inputs[0] * 3, axes[0]

    assert mx.vmap(k)(mx.array([1.0, 2.0])).tolist() == [3.0, 6.0]


def test_checkpoint_matches_and_composes():
    W = mx.array(np.random.default_rng(0).standard_normal((3,)).astype(np.float32))

    def block(x):
        return mx.tanh(x * W) * 2

    c = mx.checkpoint(block)
    x = mx.array(X)
    g1 = mx.grad(lambda v: mx.sum(block(v)))(x)
    g2 = mx.grad(lambda v: mx.sum(c(v)))(x)
    np.testing.assert_allclose(np.array(g1), np.array(g2), rtol=1e-6)
    b = mx.array(np.stack([X, X * 2]))
    p1 = mx.vmap(mx.grad(lambda v: mx.sum(block(v))))(b)
    p2 = mx.vmap(mx.grad(lambda v: mx.sum(c(v))))(b)
    np.testing.assert_allclose(np.array(p1), np.array(p2), rtol=1e-6)
    _, j = mx.jvp(c, [x], [mx.ones_like(x)])
    _, j0 = mx.jvp(block, [x], [mx.ones_like(x)])
    np.testing.assert_allclose(np.array(j[0]), np.array(j0[0]), rtol=1e-6)


def test_checkpoint_lowers_peak_memory():
    n, layers = 1 << 18, 16  # 1 MB per activation

    def layer(x):
        return mx.tanh(mx.sin(x) * 1.01)

    def plain(x):
        for _ in range(layers):
            x = layer(x)
        return mx.sum(x)

    ck = mx.checkpoint(layer)

    def checkpointed(x):
        for _ in range(layers):
            x = ck(x)
        return mx.sum(x)

    peaks = []
    for fn in (plain, checkpointed):
        x = mx.ones((n,))
        mx.eval(x)
        gc.collect()
        mx.reset_peak_memory()
        base = mx.get_active_memory()
        g = mx.grad(fn)(x)
        mx.eval(g)
        peaks.append(mx.get_peak_memory() - base)
        del g, x
        gc.collect()
    assert peaks[1] < 0.7 * peaks[0], peaks


@needs_mlx
def test_grads_match_mlx_on_a_composite():
    def build(m):
        def fn(x, y):
            return m.sum(m.tanh(x * y) + m.exp(-x) * m.sin(y) / (1 + y * y))

        return fn

    x, y = X, X[::-1].copy()
    gk = mx.grad(build(mx), argnums=[0, 1])(mx.array(x), mx.array(y))
    gm = mlx_core.grad(build(mlx_core), argnums=[0, 1])(mlx_core.array(x), mlx_core.array(y))
    for a, b in zip(gk, gm):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-5, atol=1e-6)


@needs_mlx
def test_complex_vjp_convention_matches_mlx():
    def build(m):
        c = m.array(3 - 1j)
        return [lambda z: m.real(z * c), lambda z: m.real(m.exp(z)), lambda z: m.imag(m.sin(z) * z)]

    for fk, fm in zip(build(mx), build(mlx_core)):
        gk, gm = mx.grad(fk)(mx.array(1 + 2j)), mlx_core.grad(fm)(mlx_core.array(1 + 2j))
        np.testing.assert_allclose(np.array(gk), np.array(gm), rtol=1e-5)
