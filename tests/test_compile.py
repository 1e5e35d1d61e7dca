"""mx.compile: compiled vs uncompiled, trace caching, state, simplification, fusion, transforms."""
from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
from functools import partial

import numpy as np
import pytest

import kiln.core as mx
from kiln.backend import codegen
C = importlib.import_module("kiln.transforms.compile")

from harness import OpCase, _assert_close, _to_np, check_compile, make_inputs

has_ne = pytest.mark.skipif(codegen._ne is None, reason="numexpr not installed")


def _gelu(m, x):
    return 0.5 * x * (1 + m.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)))


CASES = [
    OpCase("add", lambda m, x, y: m.add(x, y), shapes=((3, 4), (3, 4))),
    OpCase("sub_bcast", lambda m, x, y: x - y, shapes=((3, 4), (4,))),
    OpCase("mul_div", lambda m, x, y: x * y / (1.5 + y * y), shapes=((2, 3), (2, 3))),
    OpCase("exp_log", lambda m, x: m.log(1 + m.exp(x))),
    OpCase("sin_cos_tanh", lambda m, x: m.sin(x) * m.cos(x) + m.tanh(x)),
    OpCase("gelu", _gelu, shapes=((5, 7),)),
    OpCase("sum_axis", lambda m, x: m.sum(m.exp(x), axis=1), shapes=((3, 5),)),
    OpCase("sum_all", lambda m, x: m.sum(x * x)),
    OpCase("reshape_T", lambda m, x: m.transpose(m.reshape(x, (4, 3))) * 2, shapes=((3, 4),)),
    OpCase("broadcast", lambda m, x: m.broadcast_to(x, (2, 3, 4)) + 1, shapes=((3, 4),)),
    OpCase("multi_out", lambda m, x, y: (x + y, x * y, m.sin(x)), shapes=((3,), (3,))),
    OpCase("scalar_0d", lambda m, x: m.exp(x) * 3 - x, shapes=((),)),
    OpCase("empty", lambda m, x: m.sin(x) + 1, shapes=((0, 3),)),
    OpCase("float64", lambda m, x: m.tanh(x) * 0.25 + x, dtypes=("float64",)),
    OpCase("int_in", lambda m, x: x * 2 + 1, dtypes=("int32",)),
    OpCase("int_to_float", lambda m, x: m.sin(x) + x, dtypes=("int32",)),
    OpCase("cse", lambda m, x: m.sin(x) + m.sin(x) * m.sin(x)),
    OpCase("identity", lambda m, x: x),
    OpCase("where_max", lambda m, x, y: m.where(x > y, m.maximum(x, y), y * 2), shapes=((3, 4), (3, 4))),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_compile_table(case):
    check_compile(case)


@has_ne
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_compile_table_fused(case, monkeypatch):
    """The same table with every fusable group forced through numexpr kernels."""
    monkeypatch.setattr(codegen, "calibrate", False)
    monkeypatch.setattr(C, "FUSE_MIN_SIZE", 0)
    check_compile(case)


def test_compile_table_numexpr_missing(monkeypatch):
    monkeypatch.setattr(codegen, "enabled", False)
    for case in CASES:
        check_compile(case)


def _count(fn):
    calls = [0]

    def f(*a, **k):
        calls[0] += 1
        return fn(*a, **k)

    return f, calls


# ---------------------------------------------------------------- tracing and caching
def test_trace_counting():
    f, calls = _count(lambda x, y: mx.exp(x) + y)
    cf = mx.compile(f)
    x, y = mx.ones((2, 3)), mx.ones((3,))
    for _ in range(3):
        cf(x, y)
    assert cf.num_traces == 1 and calls[0] == 1
    cf(mx.ones((4, 3)), y)  # new shape: retrace
    assert cf.num_traces == 2
    cf(x.astype(mx.float64), y.astype(mx.float64))  # new dtypes: retrace
    assert cf.num_traces == 3
    cf(mx.ones((4, 3)), y)  # cached again
    assert cf.num_traces == 3


def test_shapeless_no_retrace():
    f, calls = _count(lambda x: mx.exp(x) * 2 + mx.sum(x, axis=0))
    cf = mx.compile(f, shapeless=True)
    for n in (2, 5, 7):
        xn = np.random.default_rng(n).standard_normal((n, 3)).astype(np.float32)
        _assert_close(np.array(cf(mx.array(xn))), np.exp(xn) * 2 + xn.sum(0), 1e-5, 1e-6)
    assert cf.num_traces == 1
    cf(mx.ones((2, 3, 4)))  # a new rank retraces
    assert cf.num_traces == 2


def test_shapeless_errors_instead_of_wrong_answer():
    cf = mx.compile(lambda x: mx.reshape(x, (2, 3)) + 1, shapeless=True)
    assert cf(mx.ones((6,))).shape == (2, 3)
    with pytest.raises(ValueError, match="reshape"):
        cf(mx.ones((12,)))
    cb = mx.compile(lambda x, y: x + y, shapeless=True)
    cb(mx.ones((3,)), mx.ones((3,)))
    with pytest.raises(ValueError, match="compile"):
        cb(mx.ones((3,)), mx.ones((4,)))
    cbt = mx.compile(lambda x: mx.broadcast_to(x, (4, 3)), shapeless=True)
    cbt(mx.ones((1, 3)))
    with pytest.raises(ValueError, match="broadcast"):
        cbt(mx.ones((2, 3)))


def test_constant_args_in_key_and_trees():
    f, calls = _count(lambda x, k, s="a", *, y=None: {"out": [x * k, s], "y": y if y is None else y + 1})
    cf = mx.compile(f)
    x = mx.array([1.0, 2.0])
    r = cf(x, 2)
    assert r["out"][1] == "a" and r["y"] is None
    np.testing.assert_array_equal(np.array(r["out"][0]), [2.0, 4.0])
    cf(x, 2)
    assert cf.num_traces == 1
    np.testing.assert_array_equal(np.array(cf(x, 3)["out"][0]), [3.0, 6.0])
    cf(x, 3.0)  # int vs float constants are different keys
    assert cf.num_traces == 3
    r = cf(x, 2, "b", y=x)
    assert r["out"][1] == "b"
    np.testing.assert_array_equal(np.array(r["y"]), [2.0, 3.0])
    assert cf.num_traces == 4
    nested = mx.compile(lambda d: d["a"][0] * d["a"][1] + d["b"])
    np.testing.assert_array_equal(np.array(nested({"a": (x, x), "b": x})), [2.0, 6.0])


def test_closure_constants_captured_at_trace_time():
    c = mx.array(1.0)
    cf = mx.compile(lambda x: x + c)
    x = mx.array([1.0, 2.0])
    np.testing.assert_array_equal(np.array(cf(x)), [2.0, 3.0])
    c = mx.array(5.0)  # noqa: F841 - rebinding does not change the traced constant (as in MLX)
    np.testing.assert_array_equal(np.array(cf(x)), [2.0, 3.0])
    lazy = mx.exp(mx.array([0.0, 1.0]))  # a lazy closed-over value is computed once
    cl = mx.compile(lambda x: x * lazy)
    _assert_close(np.array(cl(x)), np.array([1.0, 2.0]) * np.exp([0.0, 1.0]), 1e-6, 0)


# ---------------------------------------------------------------- captured state
def _loss(params, x, y):
    pred = mx.tanh(x * params["w"] + params["b"])
    return mx.sum((pred - y) * (pred - y))


def test_state_inputs_outputs_training_step():
    rng = np.random.default_rng(0)
    xs = [mx.array(rng.standard_normal((4, 3)).astype(np.float32)) for _ in range(4)]
    ys = [mx.array(rng.standard_normal((4, 3)).astype(np.float32)) for _ in range(4)]

    def make():
        return {"w": mx.array(np.full(3, 0.5, np.float32)), "b": mx.zeros((3,)),
                "step": mx.array(0)}

    def train(model, step_fn):
        losses = []
        for x, y in zip(xs, ys):
            losses.append(step_fn(x, y))
            mx.eval(model)
        return losses

    def make_step(model):
        def step(x, y):
            params = {"w": model["w"], "b": model["b"]}
            loss, g = mx.value_and_grad(_loss)(params, x, y)
            model["w"] = model["w"] - 0.1 * g["w"]
            model["b"] = model["b"] - 0.1 * g["b"]
            model["step"] = model["step"] + 1
            return loss
        return step

    ref_model = make()
    ref = train(ref_model, make_step(ref_model))
    model = make()
    cstep = mx.compile(make_step(model), inputs=model, outputs=model)
    got = train(model, cstep)
    assert cstep.num_traces == 1
    _assert_close([np.array(v) for v in got], [np.array(v) for v in ref], 1e-5, 1e-6)
    for k in ("w", "b", "step"):
        _assert_close(np.array(model[k]), np.array(ref_model[k]), 1e-5, 1e-6)
    assert model["step"].item() == len(xs)


def test_state_random():
    state = mx.random.state

    @partial(mx.compile, inputs=state, outputs=state)
    def draw():
        return mx.random.uniform(shape=(3,))

    mx.random.seed(3)
    a, b = np.array(draw()), np.array(draw())
    assert not np.allclose(a, b)  # the key advanced between calls
    mx.random.seed(3)
    ea, eb = np.array(mx.random.uniform(shape=(3,))), np.array(mx.random.uniform(shape=(3,)))
    _assert_close([a, b], [ea, eb], 0, 0)
    assert draw.num_traces == 1


# ---------------------------------------------------------------- errors
def test_eval_inside_compile_raises():
    msg = "Attempting to eval an array during function transformations like compile or vmap is not allowed"
    x = mx.array([1.0, 2.0])
    for fn in (lambda x: mx.sum(x).item(), lambda x: (repr(x), x)[1], lambda x: (mx.eval(x), x)[1]):
        with pytest.raises(ValueError, match=msg):
            mx.compile(fn)(x)
    state = [mx.array(1.0)]
    cf = mx.compile(lambda x: mx.sum(state[0] + x).item(), inputs=state, outputs=state)
    with pytest.raises(ValueError, match=msg):
        cf(x)
    assert type(state[0]._prim).__name__ != "Placeholder"  # restored after the failed trace
    assert state[0].item() == 1.0


def test_argument_errors():
    with pytest.raises(TypeError, match="compile"):
        mx.compile(5)
    with pytest.raises(ValueError, match="Function arguments must be trees of arrays or constants"):
        mx.compile(lambda x: x)(object())
    with pytest.raises(ValueError, match="received type ndarray"):
        mx.compile(lambda x: x)(np.ones(2))
    with pytest.raises(ValueError, match="outputs"):
        mx.compile(lambda: None, outputs=(mx.ones(2),))


# ---------------------------------------------------------------- simplification
def test_simplification_stats():
    def f(x):
        a = mx.sin(x) + mx.sin(x)               # CSE: one sin
        b = mx.stop_gradient(a).astype(mx.float32)  # no-ops for values
        _ = mx.cos(x)                           # dead
        return b * 2.0 + a * 2.0                # the two 2.0 constants are one
    cf = mx.compile(f)
    x = mx.array([0.1, 0.2, 0.3])
    _assert_close(np.array(cf(x)), np.array(f(x)), 1e-6, 1e-7)
    st = cf.plans()[0].stats
    assert st["cse"] >= 1 and st["noops"] >= 1
    names = [type(s.prim).__name__ for s in cf.plans()[0].steps]
    assert names.count("Sin") == 1 and "Cos" not in names and "StopGradient" not in names


def test_equal_constants_merged():
    c1, c2 = mx.array([1.0, 2.0]), mx.array([1.0, 2.0])  # distinct objects, equal values
    cf = mx.compile(lambda x: x * c1 + x * c2)
    x = mx.array([3.0, 4.0])
    np.testing.assert_array_equal(np.array(cf(x)), [6.0, 16.0])
    p = cf.plans()[0]
    assert p.stats["merged_consts"] >= 1 and p.stats["cse"] >= 1


# ---------------------------------------------------------------- fusion
@has_ne
def test_fused_kernel_and_cache(monkeypatch):
    monkeypatch.setattr(codegen, "calibrate", False)
    monkeypatch.setattr(C, "FUSE_MIN_SIZE", 0)
    x = mx.array(np.linspace(-2, 2, 50, dtype=np.float32))
    cf = mx.compile(lambda x: _gelu(mx, x))
    got = cf(x)
    assert got.dtype == mx.float32
    _assert_close(np.array(got), np.array(_gelu(mx, x)), 1e-6, 1e-6)
    p = cf.plans()[0]
    assert p.stats["fused_groups"] == 1 and p.stats["fused_nodes"] == p.stats["steps"]
    assert " = k" in p.source  # one kernel call, no unfused steps
    hits = codegen.stats["hits"]
    cf2 = mx.compile(lambda y: _gelu(mx, y))  # same canonical tape: kernel reused
    _assert_close(np.array(cf2(x)), np.array(got), 0, 0)
    assert codegen.stats["hits"] == hits + 1


@has_ne
def test_fusion_dtype_rules(monkeypatch):
    monkeypatch.setattr(codegen, "calibrate", False)
    monkeypatch.setattr(C, "FUSE_MIN_SIZE", 0)
    x32 = mx.array(np.linspace(0.1, 1, 8, dtype=np.float32))
    x64 = mx.array(np.linspace(0.1, 1, 8), dtype=mx.float64)
    mixed = mx.compile(lambda a, b: mx.sin(a) * 3.0 + mx.exp(b))  # float32 and float64 meet
    out = mixed(x32, x64)
    assert out.dtype == mx.float64
    want = np.sin(np.array(x32)).astype(np.float64) * 3 + np.exp(np.array(x64))
    _assert_close(np.array(out), want, 1e-6, 1e-7)
    # the float32 part may fuse, but never together with the float64 part
    for g in mixed.plans()[0].groups.values():
        assert len({d for s in g.steps for d in s.dtypes + s.in_dtypes}) == 1
    f16 = mx.compile(lambda a: mx.sin(a) * 2 + 1)
    xh = x32.astype(mx.float16)
    r = f16(xh)
    assert r.dtype == mx.float16 and not f16.plans()[0].groups  # numexpr has no float16
    _assert_close(np.array(r).astype(np.float32), np.array(mx.sin(xh) * 2 + 1).astype(np.float32), 0, 0)


def test_replay_generated_and_frees_intermediates():
    def chain(x):
        for _ in range(50):
            x = mx.sin(x) * 0.5
        return x
    cf = mx.compile(chain)
    x = mx.array([0.3, 0.7])
    _assert_close(np.array(cf(x)), np.array(chain(x)), 1e-6, 1e-7)
    src = cf.plans()[0].source
    assert src.count("del ") >= 40  # intermediates dropped as soon as they are used


# ---------------------------------------------------------------- transforms
def test_grad_of_compile():
    f = lambda x, y: mx.sum(_gelu(mx, x) * y + mx.sin(x * y))  # noqa: E731
    cf = mx.compile(f)
    case = OpCase("g", None, shapes=((3, 4), (4,)))
    x, y = (mx.array(v) for v in make_inputs(case))
    want = mx.grad(f, argnums=(0, 1))(x, y)
    got = mx.grad(cf, argnums=(0, 1))(x, y)
    _assert_close(_to_np(got), _to_np(want), 1e-5, 1e-6)
    # second order through the compiled node
    h = mx.grad(lambda x: mx.sum(mx.grad(lambda z: cf(z, y))(x)))(x)
    hw = mx.grad(lambda x: mx.sum(mx.grad(lambda z: f(z, y))(x)))(x)
    _assert_close(np.array(h), np.array(hw), 1e-4, 1e-5)


def test_compile_of_grad_and_nested_compile():
    f = lambda x: mx.sum(mx.tanh(x) * x)  # noqa: E731
    x = mx.array([0.1, -0.5, 2.0])
    cg = mx.compile(mx.grad(f))
    _assert_close(np.array(cg(x)), np.array(mx.grad(f)(x)), 1e-6, 1e-7)
    inner = mx.compile(lambda x: mx.exp(x) - 1)
    outer = mx.compile(lambda x: inner(x) * inner(2 * x))
    _assert_close(np.array(outer(x)), np.array((mx.exp(x) - 1) * (mx.exp(2 * x) - 1)), 1e-6, 1e-6)
    _assert_close(np.array(mx.grad(lambda x: mx.sum(outer(x)))(x)),
                  np.array(mx.grad(lambda x: mx.sum((mx.exp(x) - 1) * (mx.exp(2 * x) - 1)))(x)), 1e-5, 1e-6)


def test_jvp_of_compile_and_closure_gradient():
    f = lambda x: mx.sin(x) * x  # noqa: E731
    x, t = mx.array([0.3, 1.2]), mx.array([1.0, -2.0])
    _, got = mx.jvp(mx.compile(f), [x], [t])
    _, want = mx.jvp(f, [x], [t])
    _assert_close(_to_np(got), _to_np(want), 1e-6, 1e-7)
    # a closed-over traced value is an input of the Compiled node: gradients reach it
    w = mx.array([2.0, 3.0])
    g = mx.grad(lambda w: mx.sum(mx.compile(lambda x: x * w * w)(x)))(w)
    _assert_close(np.array(g), 2 * np.array(w) * np.array(x), 1e-6, 1e-7)


def test_vmap_of_compile():
    f = lambda x, y: mx.sum(mx.exp(x) * y, axis=0)  # noqa: E731
    cf = mx.compile(f)
    xs = mx.array(np.random.default_rng(1).standard_normal((5, 3, 2)).astype(np.float32))
    y = mx.array(np.random.default_rng(2).standard_normal((3, 2)).astype(np.float32))
    got = mx.vmap(cf, in_axes=(0, None))(xs, y)
    want = np.stack([np.array(f(xs[i], y)) for i in range(5)])
    _assert_close(np.array(got), want, 1e-5, 1e-6)
    cv = mx.compile(mx.vmap(f, in_axes=(0, None)))
    _assert_close(np.array(cv(xs, y)), want, 1e-5, 1e-6)


# ---------------------------------------------------------------- switches
def test_disable_enable_compile():
    f, calls = _count(lambda x: x + 1)
    cf = mx.compile(f)
    x = mx.array([1.0])
    try:
        mx.disable_compile()
        cf(x)
        cf(x)
        assert calls[0] == 2 and cf.num_traces == 0
    finally:
        mx.enable_compile()
    cf(x)
    cf(x)
    assert calls[0] == 3 and cf.num_traces == 1


@pytest.mark.parametrize("var", ["KILN_DISABLE_COMPILE", "MLX_DISABLE_COMPILE"])
def test_disable_env_var(var):
    code = ("import kiln.core as mx\n"
            "cf = mx.compile(lambda x: x * 2)\n"
            "print(cf(mx.array([1.0])).item(), cf.num_traces)\n")
    env = dict(os.environ, **{var: "1"})
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2.0", "0"]


@has_ne
def test_fusion_caps(monkeypatch):
    """Long chains fuse in pieces of bounded size; wide sums stay within numexpr's operand limit."""
    monkeypatch.setattr(codegen, "calibrate", False)
    monkeypatch.setattr(C, "FUSE_MIN_SIZE", 0)

    def chain(x):
        for _ in range(40):
            x = mx.sin(x) * 0.5 + x
        return x

    def wide(*xs):
        total = xs[0]
        for v in xs[1:]:
            total = total + v * v
        return total

    x = mx.array(np.linspace(-1, 1, 16, dtype=np.float32))
    cf = mx.compile(chain)
    _assert_close(np.array(cf(x)), np.array(chain(x)), 1e-5, 1e-6)
    groups = cf.plans()[0].groups.values()
    assert len(groups) >= 2 and all(len(g.steps) <= C._MAX_FUSED_NODES for g in groups)
    xs = [x + i for i in range(40)]
    cw = mx.compile(wide)
    _assert_close(np.array(cw(*xs)), np.array(wide(*xs)), 1e-5, 1e-5)
    for g in cw.plans()[0].groups.values():
        assert len(C._Plan._leaves(g.steps)) <= C._MAX_FUSED_LEAVES


def test_nn_training_step_with_module_and_optimizer_state():
    nn = pytest.importorskip("kiln.nn")
    optim = pytest.importorskip("kiln.optimizers")

    def run(compiled):
        mx.random.seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        opt = optim.Adam(learning_rate=1e-2)
        lg = nn.value_and_grad(model, lambda m, x, y: mx.mean((m(x) - y) ** 2))
        state = [model.state, opt.state]

        def step(x, y):
            loss, g = lg(model, x, y)
            opt.update(model, g)
            return loss

        if compiled:
            step = partial(mx.compile, inputs=state, outputs=state)(step)
        rng = np.random.default_rng(0)
        losses = []
        for _ in range(4):
            x = mx.array(rng.standard_normal((16, 4)).astype(np.float32))
            losses.append(np.array(step(x, mx.sum(x, axis=1, keepdims=True))))
            mx.eval(state)
        return losses, step

    want, _ = run(False)
    got, step = run(True)
    _assert_close(got, want, 1e-5, 1e-6)
    # the optimizer state appears during the first call, so the second call traces once more
    assert step.num_traces <= 2
