"""Structured control flow (cond, switch, while_loop, fori_loop, scan).

One table drives every check: each case is a control-flow function and the
same computation written as a Python loop or branch (the reference), and is
checked for values, gradients in both modes against finite differences
(``harness.check_grads``), vmap against a Python loop over the batch and
compile against eager.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import kiln.core as mx
from kiln.primitives.control_flow import Scan, Switch, While, WhileVJP
from harness import OpCase, check_compile, check_forward, check_grads, check_vmap


def _np(x):
    if isinstance(x, (list, tuple)):
        return [_np(v) for v in x]
    return np.array(x)


def case(name, fn, loop, shapes, **kw):
    """A table row: ``fn`` uses control flow, ``loop`` is the Python reference (both on kiln arrays)."""
    return OpCase(name, lambda m, *xs: fn(*xs), lambda *xs: _np(loop(*[mx.array(x) for x in xs])),
                  shapes=shapes, mlx=False, **kw)


def positive(rng, shape, dtype):
    return (rng.random(shape) + 0.5).astype(dtype)


# ---------------------------------------------------------------- the constructs and their references
def cond_fn(x, y):
    return mx.cond(x.sum() > y.sum(), lambda a, b: a * mx.sin(b), lambda a, b: mx.exp(a) - b, x, y)


def cond_loop(x, y):
    return x * mx.sin(y) if x.sum().item() > y.sum().item() else mx.exp(x) - y


def cond_tree_fn(x):
    out = mx.cond(x[0] > 0, lambda t: {"a": t["v"] * 2, "b": (mx.cos(t["v"]),)},
                  lambda t: {"a": t["v"] ** 2, "b": (t["v"] - 1,)}, {"v": x})
    return out["a"], out["b"][0]


def cond_tree_loop(x):
    if x[0].item() > 0:
        return x * 2, mx.cos(x)
    return x ** 2, x - 1


BRANCHES = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: mx.sin(a) * mx.cos(b)]


def switch_fn(x, y):
    i = (x.sum() > 0).astype(mx.int32) + (y.sum() > 0).astype(mx.int32)
    return mx.switch(i, BRANCHES, x, y)


def switch_loop(x, y):
    i = int(x.sum().item() > 0) + int(y.sum().item() > 0)
    return BRANCHES[i](x, y)


def rnn_fn(h0, xs, w):
    return mx.scan(lambda h, x: (mx.tanh(h @ w + x), mx.sum(h * h, axis=-1)), h0, xs)


def rnn_loop(h0, xs, w):
    h, ys = h0, []
    for t in range(xs.shape[0]):
        ys.append(mx.sum(h * h, axis=-1))
        h = mx.tanh(h @ w + xs[t])
    return h, mx.stack(ys)


def scan_tree_fn(a, xs):
    def f(c, x):
        s = c["s"] * mx.cos(x["u"]) + c["p"][0]
        return {"s": s, "p": (c["p"][0] * 0.5 + x["u"],)}, (s * 2, x["u"] * s)
    c, (y1, y2) = mx.scan(f, {"s": a, "p": (a * 0.1,)}, {"u": xs}, reverse=True)
    return c["s"], c["p"][0], y1, y2


def scan_tree_loop(a, xs):
    s, p = a, a * 0.1
    y1, y2 = [None] * xs.shape[0], [None] * xs.shape[0]
    for t in reversed(range(xs.shape[0])):
        s, p = s * mx.cos(xs[t]) + p, p * 0.5 + xs[t]
        y1[t], y2[t] = s * 2, xs[t] * s
    return s, p, mx.stack(y1), mx.stack(y2)


def fori_fn(v, w):
    return mx.fori_loop(1, 5, lambda i, c: c * mx.cos(c) + i * w, v)


def fori_loop_ref(v, w):
    for i in range(1, 5):
        v = v * mx.cos(v) + i * w
    return v


def fori_dyn_fn(v, w):
    return mx.fori_loop(mx.array(0), mx.array(4), lambda i, c: mx.sin(c) * w + i, v)


def fori_dyn_ref(v, w):
    for i in range(4):
        v = mx.sin(v) * w + i
    return v


def while_fn(x, w):
    i, c = mx.while_loop(lambda s: s[1].sum() < 20.0, lambda s: (s[0] + 1, s[1] * 1.3 + w * w), (mx.array(0), x))
    return c, i


def while_ref(x, w):
    i, c = 0, x
    while c.sum().item() < 20.0:
        i, c = i + 1, c * 1.3 + w * w
    return c, mx.array(i)


def while_max_fn(x):
    return mx.while_loop(lambda c: c.sum() < 1e9, lambda c: mx.sin(c) + c, x, max_iters=7)


def while_max_ref(x):
    for _ in range(7):
        x = mx.sin(x) + x
    return x


def nested_fn(x, w):
    # a scan inside a while_loop inside a cond
    def body(c):
        c2, _ = mx.scan(lambda h, wt: (h * 0.9 + mx.sin(wt), None), c, w)
        return c2
    return mx.cond(x.sum() > -100, lambda a: mx.while_loop(lambda c: c.sum() < 8.0, body, a), lambda a: a, x)


def nested_ref(x, w):
    c = x
    while c.sum().item() < 8.0:
        for t in range(w.shape[0]):
            c = c * 0.9 + mx.sin(w[t])
    return c


CASES = [
    case("cond", cond_fn, cond_loop, ((3,), (3,))),
    case("cond_tree", cond_tree_fn, cond_tree_loop, ((4,),)),
    case("switch", switch_fn, switch_loop, ((2, 3), (2, 3))),
    case("scan_rnn", rnn_fn, rnn_loop, ((2, 3), (5, 2, 3), (3, 3))),
    case("scan_tree_reverse", scan_tree_fn, scan_tree_loop, ((3,), (4, 3))),
    case("fori_static", fori_fn, fori_loop_ref, ((3,), (3,))),
    case("fori_dynamic", fori_dyn_fn, fori_dyn_ref, ((3,), (3,))),
    case("while", while_fn, while_ref, ((3,), (3,)), gen=positive),
    case("while_max_iters", while_max_fn, while_max_ref, ((2, 2),)),
    case("nested", nested_fn, nested_ref, ((3,), (4, 3)), gen=positive),
]


@pytest.mark.parametrize("c", CASES, ids=str)
def test_forward(c):
    check_forward(c)


@pytest.mark.parametrize("c", CASES, ids=str)
def test_grads(c):
    check_grads(c)


@pytest.mark.parametrize("c", CASES, ids=str)
def test_vmap(c):
    check_vmap(c)


@pytest.mark.parametrize("c", CASES, ids=str)
def test_compile(c):
    check_compile(c)


# ---------------------------------------------------------------- traced once, kept as one node
def test_body_traced_once_graph_independent_of_length():
    calls = []
    w = mx.array(np.eye(4) * 0.5)

    def loss(h, xs):
        def f(c, x):
            calls.append(1)
            return mx.tanh(c @ w + x), c.sum()
        c, ys = mx.scan(f, h, xs)
        return c.sum() + ys.sum()

    nodes = []
    for n in (10, 1000):
        calls.clear()
        xs = mx.ones((n, 4), mx.float64)
        mx.eval(xs)
        val, g = mx.value_and_grad(loss)(mx.zeros(4, mx.float64), xs)
        assert len(calls) == 1  # the body is traced once, whatever the length
        nodes.append(len(mx_toposort([val, g])))
        # and agrees with the Python loop
        h, total = mx.zeros(4, mx.float64), 0.0
        for t in range(n):
            total = total + h.sum()
            h = mx.tanh(h @ w + xs[t])
        np.testing.assert_allclose(val.item(), (h.sum() + total).item(), rtol=1e-12)
    assert nodes[0] == nodes[1]


def test_compile_keeps_one_loop_step():
    def f(x):
        return mx.while_loop(lambda c: c.sum() < 50, lambda c: c * 2 + 1, x)

    cf = mx.compile(f)
    x = mx.array([1.0, 2.0])
    np.testing.assert_allclose(np.array(cf(x)), np.array(f(x)))
    (plan,) = cf.plans()
    assert [type(s.prim) for s in plan.steps] == [While]
    assert cf.num_traces == 1
    cf(x + 1)
    assert cf.num_traces == 1


def test_scan_vjp_saves_residuals_and_runs_forward_once():
    w = mx.array(np.random.default_rng(0).standard_normal((3, 3)))
    calls = []

    def loss(h):
        def f(c, x):
            calls.append(1)
            return mx.tanh(c @ w + x), c
        c, ys = mx.scan(f, h, mx.ones((6, 3), mx.float64))
        return c.sum() + ys.sum()

    val, g = mx.value_and_grad(loss)(mx.ones(3, mx.float64))
    # The value's node was re-pointed at the forward scan that also stacks the residuals:
    # one forward Scan and one backward Scan compute both.
    scans = {id(n._prim): n._prim for n in mx_toposort([val, g]) if isinstance(n._prim, Scan)}
    assert len(scans) == 2
    fwd = [p for p in scans.values() if not p.reverse]
    assert len(fwd) == 1 and fwd[0].n_ys > 1  # ys plus residuals
    # the backward body replays only the cotangent part: no tanh is recomputed in it
    bwd = [p for p in scans.values() if p.reverse][0]
    assert not any(type(n._prim).__name__ == "Tanh" for n in bwd.body.plan.tape)
    assert len(calls) == 1


def mx_toposort(outs):
    from kiln.graph.eval import toposort
    return toposort(outs)


def test_while_reverse_mode_checkpointed_memory():
    n = 64

    def loss(x, max_iters):
        return mx.while_loop(lambda c: c[0] < n, lambda c: (c[0] + 1, mx.sin(c[1]) * 1.01),
                             (mx.array(0), x), max_iters=max_iters)[1].sum()

    x = mx.array(np.random.default_rng(1).standard_normal(100_000))
    peaks, grads = [], []
    for m in (None, n):
        mx.eval(x)
        mx.reset_peak_memory()
        base = mx.get_active_memory()
        g = mx.grad(loss)(x, m)
        mx.eval(g)
        peaks.append(mx.get_peak_memory() - base)
        grads.append(np.array(g))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)
    # every carry (64) against about 2*sqrt(64) of them
    assert peaks[1] < peaks[0] / 2.5, peaks


def test_while_max_iters_stops():
    i = mx.while_loop(lambda c: c < 100, lambda c: c + 1, mx.array(0), max_iters=5)
    assert i.item() == 5
    i = mx.while_loop(lambda c: c < 3, lambda c: c + 1, mx.array(0), max_iters=5)
    assert i.item() == 3


def test_zero_trips():
    x = mx.array([1.0, 2.0])
    g = mx.grad(lambda x: mx.while_loop(lambda c: c.sum() < 0, lambda c: c * 3, x).sum())(x)
    np.testing.assert_array_equal(np.array(g), [1.0, 1.0])
    g = mx.grad(lambda x: mx.fori_loop(3, 3, lambda i, c: c * 3, x).sum())(x)
    np.testing.assert_array_equal(np.array(g), [1.0, 1.0])
    c, ys = mx.scan(lambda c, x: (c + x, c), x, mx.zeros((0, 2)))
    assert ys.shape == (0, 2) and np.array_equal(np.array(c), [1.0, 2.0])


def test_scan_length_without_xs_and_python_scalars_in_carry():
    c, ys = mx.scan(lambda c, _: (c * 2, c), mx.array(1.0), None, length=4)
    np.testing.assert_array_equal(np.array(ys), [1, 2, 4, 8])
    assert c.item() == 16
    # a Python scalar returned for a carry leaf takes the leaf's dtype
    out = mx.while_loop(lambda c: c < 3, lambda c: 3, mx.array(0, mx.int16))
    assert out.dtype == mx.int16 and out.item() == 3


# ---------------------------------------------------------------- nesting
def test_scan_in_while_in_vmap_in_grad():
    w = mx.array(np.random.default_rng(2).random((3, 2)))

    def inner(x):
        def body(c):
            c2, _ = mx.scan(lambda h, wt: (h * 0.8 + mx.sin(wt) * h, None), c, w)
            return c2 + 0.5
        return mx.while_loop(lambda c: c.sum() < 6.0, body, x)

    def loss(xs):
        return (mx.vmap(inner)(xs) ** 2).sum()

    def loss_ref(xs):
        out = []
        for k in range(xs.shape[0]):
            c = xs[k]
            while c.sum().item() < 6.0:
                for t in range(w.shape[0]):
                    c = c * 0.8 + mx.sin(w[t]) * c
                c = c + 0.5
            out.append(c)
        return (mx.stack(out) ** 2).sum()

    xs = mx.array(np.random.default_rng(3).random((4, 2)) * [[0.1], [1.0], [3.0], [5.0]])
    np.testing.assert_allclose(loss(xs).item(), loss_ref(xs).item(), rtol=1e-12)
    np.testing.assert_allclose(np.array(mx.grad(loss)(xs)), np.array(mx.grad(loss_ref)(xs)), rtol=1e-10)
    # and compiled, and with vmap outside grad
    np.testing.assert_allclose(np.array(mx.compile(mx.grad(loss))(xs)), np.array(mx.grad(loss_ref)(xs)),
                               rtol=1e-10)
    per = mx.vmap(mx.grad(lambda x: (inner(x) ** 2).sum()))(xs)
    np.testing.assert_allclose(np.array(per), np.array(mx.grad(loss_ref)(xs)), rtol=1e-10)


def test_batched_predicate_selects():
    x = mx.array([[1.0, 2.0], [-1.0, -2.0], [3.0, -4.0]])
    got = mx.vmap(lambda r: mx.cond(r.sum() > 0, lambda a: a * 10, lambda a: -a, r))(x)
    want = [np.array(r) * 10 if r.sum().item() > 0 else -np.array(r) for r in x]
    np.testing.assert_array_equal(np.array(got), np.stack(want))
    # the batched Switch is replaced by a select of both branches
    assert not any(isinstance(n._prim, Switch) for n in mx_toposort([got]))


def test_vmap_while_masks_finished_elements():
    def f(x):
        return mx.while_loop(lambda c: c[1] < x * 10, lambda c: (c[0] + 1, c[1] + x), (mx.array(0), x))

    xs = mx.array([0.5, 1.0, 2.0, 4.0])
    counts, vals = mx.vmap(f)(xs)
    want = [f(xs[k]) for k in range(4)]
    np.testing.assert_array_equal(np.array(counts), [w[0].item() for w in want])
    np.testing.assert_allclose(np.array(vals), [w[1].item() for w in want])


def test_jacrev_and_hessian_through_scan():
    w = mx.array(np.random.default_rng(4).standard_normal((3, 3)) * 0.5)

    def f(h):
        return mx.scan(lambda c, _: (mx.tanh(c @ w), None), h, None, length=3)[0]

    def f_ref(h):
        for _ in range(3):
            h = mx.tanh(h @ w)
        return h

    h = mx.array([0.1, -0.2, 0.3], mx.float64)
    np.testing.assert_allclose(np.array(mx.jacrev(f)(h)), np.array(mx.jacrev(f_ref)(h)), rtol=1e-10)
    np.testing.assert_allclose(np.array(mx.jacfwd(f)(h)), np.array(mx.jacfwd(f_ref)(h)), rtol=1e-10)
    hs = mx.hessian(lambda h: f(h).sum())(h)
    np.testing.assert_allclose(np.array(hs), np.array(mx.hessian(lambda h: f_ref(h).sum())(h)), rtol=1e-9)


def test_rules_return_control_flow_nodes():
    x = mx.array([0.5, 1.0])
    g = mx.grad(lambda x: mx.while_loop(lambda c: c.sum() < 9, lambda c: c * 2, x).sum())(x)
    assert any(isinstance(n._prim, WhileVJP) for n in mx_toposort([g]))
    t = mx.jvp(lambda x: mx.scan(lambda c, _: (c * c, None), x, None, length=3)[0], [x], [x])[1][0]
    assert any(isinstance(n._prim, Scan) for n in mx_toposort([t]))


# ---------------------------------------------------------------- errors
def _raises(exc, match, fn):
    with pytest.raises(exc, match=match):
        fn()


ERRORS = [
    ("scan_carry_shape", ValueError, r"\[scan\] The carry returned by f changes the shape of init\[1\]: \(3\) in init but \(1,3\)",
     lambda: mx.scan(lambda c, x: ((c[0], c[1][None]), x), (mx.zeros(2), mx.zeros(3)), mx.ones((2, 1)))),
    ("scan_carry_dtype", TypeError, r"\[scan\] The carry returned by f changes the dtype of init\['h'\]: int32 in init but float32",
     lambda: mx.scan(lambda c, x: ({"h": c["h"] * 0.5}, x), {"h": mx.array([1, 2])}, mx.ones((2, 1)))),
    ("scan_carry_structure", ValueError, r"\[scan\] The carry returned by f has the tree structure \(\*, \*\), but init has \(\*,\)",
     lambda: mx.scan(lambda c, x: ((c[0], c[0]), x), (mx.zeros(2),), mx.ones((2, 1)))),
    ("scan_not_pair", ValueError, r"\[scan\] The function must return a pair",
     lambda: mx.scan(lambda c, x: c, mx.zeros(2), mx.ones((2, 2)))),
    ("scan_xs_lengths", ValueError, r"\[scan\] xs\[1\] has leading axis 3 but xs\[0\] is 2",
     lambda: mx.scan(lambda c, x: (c, None), mx.zeros(2), (mx.ones((2, 2)), mx.ones((3, 2))))),
    ("scan_length_mismatch", ValueError, r"\[scan\] xs has leading axis 2 but length is 5",
     lambda: mx.scan(lambda c, x: (c, None), mx.zeros(2), mx.ones((2, 2)), length=5)),
    ("scan_no_length", ValueError, r"\[scan\] length must be given",
     lambda: mx.scan(lambda c, x: (c, None), mx.zeros(2), None)),
    ("scan_scalar_xs", ValueError, r"\[scan\] xs is a scalar",
     lambda: mx.scan(lambda c, x: (c, None), mx.zeros(2), mx.array(1.0))),
    ("while_carry_shape", ValueError, r"\[while_loop\] The carry returned by body_fun changes the shape of init_val: \(2\) in init_val but \(4\)",
     lambda: mx.while_loop(lambda c: c.sum() < 3, lambda c: mx.concatenate([c, c]), mx.zeros(2))),
    ("while_carry_dtype", TypeError, r"\[while_loop\] The carry returned by body_fun changes the dtype of init_val\[0\]: int32 in init_val but float32",
     lambda: mx.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 0.5,), (mx.array(0),))),
    ("while_cond_not_scalar", ValueError, r"\[while_loop\] cond_fun must return a scalar, but it returned shape \(2\)",
     lambda: mx.while_loop(lambda c: c < 3, lambda c: c + 1, mx.zeros(2))),
    ("while_max_iters", ValueError, r"\[while_loop\] max_iters must be None or a non-negative int",
     lambda: mx.while_loop(lambda c: c < 3, lambda c: c + 1, mx.array(0), max_iters=-1)),
    ("fori_carry_dtype", TypeError, r"\[fori_loop\] The carry returned by body_fun changes the dtype of init_val: float32 in init_val but int32",
     lambda: mx.fori_loop(0, 3, lambda i, c: i, mx.array(0.0))),
    ("fori_float_bound", TypeError, r"\[fori_loop\] The upper bound must be an integer",
     lambda: mx.fori_loop(mx.array(0), mx.array(2.5), lambda i, c: c, mx.array(0.0))),
    ("cond_pred_shape", ValueError, r"\[cond\] The predicate must be a scalar, but it has shape \(2\)",
     lambda: mx.cond(mx.array([True, False]), lambda a: a, lambda a: a, mx.zeros(2))),
    ("cond_branch_shape", ValueError, r"\[cond\] The result of true_fun changes the shape of out: \(2\) in the result of false_fun but \(3\)",
     lambda: mx.cond(mx.array(True), lambda a: mx.zeros(3), lambda a: a, mx.zeros(2))),
    ("cond_branch_dtype", TypeError, r"\[cond\] The result of true_fun changes the dtype of out\[1\]: float32 in the result of false_fun but int32",
     lambda: mx.cond(mx.array(True), lambda a: (a, mx.array(1)), lambda a: (a, mx.array(1.0)), mx.zeros(2))),
    ("cond_branch_structure", ValueError, r"\[cond\] The result of true_fun has the tree structure \{'x': \*\}, but the result of false_fun has \*",
     lambda: mx.cond(mx.array(True), lambda a: {"x": a}, lambda a: a, mx.zeros(2))),
    ("switch_float_index", TypeError, r"\[switch\] The index must be an integer scalar, but it has dtype float32",
     lambda: mx.switch(mx.array(1.0), [lambda a: a], mx.zeros(2))),
    ("switch_no_branches", ValueError, r"\[switch\] branches must be a non-empty list",
     lambda: mx.switch(0, [], mx.zeros(2))),
    ("bad_leaf", TypeError, r"\[scan\] init\[0\] is a str",
     lambda: mx.scan(lambda c, x: (c, None), ("a",), mx.ones((2, 2)))),
]


@pytest.mark.parametrize("name,exc,match,fn", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(name, exc, match, fn):
    _raises(exc, match, fn)


_ = dataclasses


def test_shapeless_compile_refuses_new_shapes():
    cf = mx.compile(lambda xs: mx.scan(lambda c, x: (c + x, c), mx.zeros(2), xs), shapeless=True)
    xs = mx.ones((3, 2))
    c, ys = cf(xs)
    np.testing.assert_array_equal(np.array(c), [3.0, 3.0])
    with pytest.raises(ValueError, match=r"\[scan\] The body was traced for input shapes"):
        cf(mx.ones((5, 2)))


def test_python_predicate_and_index():
    x = mx.array([1.0, -2.0])
    np.testing.assert_array_equal(np.array(mx.cond(True, lambda a: a * 3, lambda a: a, x)), [3.0, -6.0])
    np.testing.assert_array_equal(np.array(mx.switch(7, [lambda a: a, lambda a: -a], x)), [-1.0, 2.0])
    np.testing.assert_array_equal(np.array(mx.switch(-3, [lambda a: a, lambda a: -a], x)), [1.0, -2.0])


def test_second_order_through_while():
    w = mx.array([0.3, -0.2, 0.5], mx.float64)

    def f(x):
        c = mx.while_loop(lambda c: c[1].sum() < 3.0, lambda c: (c[0] + 1, mx.sin(c[1]) * w + c[1] * 1.1),
                          (mx.array(0), x))
        return (c[1] ** 2).sum()

    def f_ref(x):
        while x.sum().item() < 3.0:
            x = mx.sin(x) * w + x * 1.1
        return (x ** 2).sum()

    x = mx.array([0.1, 0.7, -0.4], mx.float64)
    np.testing.assert_allclose(np.array(mx.hessian(f)(x)), np.array(mx.hessian(f_ref)(x)), rtol=1e-10)
    np.testing.assert_allclose(np.array(mx.jacrev(f)(x)), np.array(mx.jacrev(f_ref)(x)), rtol=1e-10)
    v = mx.array([1.0, 2.0, 3.0], mx.float64)
    np.testing.assert_allclose(np.array(mx.grad(lambda x: (mx.grad(f)(x) * v).sum())(x)),
                               np.array(mx.grad(lambda x: (mx.grad(f_ref)(x) * v).sum())(x)), rtol=1e-10)
    np.testing.assert_allclose(np.array(mx.jacrev(mx.grad(f))(x)), np.array(mx.hessian(f_ref)(x)), rtol=1e-10)


def test_evaluating_inside_a_body_raises():
    with pytest.raises(ValueError, match=r"\[scan\] Attempting to eval an array"):
        mx.scan(lambda c, x: (c + x.item(), None), mx.zeros(()), mx.ones((3,)))
    with pytest.raises(ValueError, match=r"\[while_loop\] Attempting to eval an array"):
        mx.while_loop(lambda c: c.item() < 3, lambda c: c + 1, mx.array(0))


def test_cond_in_scan_under_vmap_and_grad_and_switch_in_while():
    x = mx.array(np.random.default_rng(5).standard_normal((4, 3)))

    def f(row):
        c, _ = mx.scan(lambda c, xt: (mx.cond(xt > 0, lambda a: a * xt, lambda a: mx.sin(a) + xt, c), None),
                       row[0], row[1:])
        return c

    def f_ref(row):
        c = row[0]
        for t in range(1, row.shape[0]):
            c = c * row[t] if row[t].item() > 0 else mx.sin(c) + row[t]
        return c

    got = mx.grad(lambda x: mx.vmap(f)(x).sum())(x)
    want = mx.grad(lambda x: mx.stack([f_ref(x[k]) for k in range(4)]).sum())(x)
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-12)

    fs = [lambda a: a * 1.1, lambda a: mx.sin(a) + a, lambda a: a + 0.3]

    def g(v):
        def body(c):
            k, z = c
            return k + 1, mx.switch(k % 3, fs, z)
        return mx.while_loop(lambda c: c[0] < 7, body, (mx.array(0), v))[1].sum()

    def g_ref(v):
        for k in range(7):
            v = fs[k % 3](v)
        return v.sum()

    got = mx.vmap(mx.grad(g))(x)
    want = np.stack([np.array(mx.grad(g_ref)(x[k])) for k in range(4)])
    np.testing.assert_allclose(np.array(got), want, rtol=1e-12)
