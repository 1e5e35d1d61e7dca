"""Fused kernels (compile's numba CPU path): every op-table primitive fused against unfused and eager,
broadcast layouts, groups with several outputs, the one-warning fallback, the on-disk cache."""
from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import kiln.core as mx
from kiln.backend import cpu_kernels

from harness import _assert_close, _to_np, check_compile, make_inputs

import test_ops_elementwise
import test_ops_products
import test_ops_reduce
import test_ops_shape

F = importlib.import_module("kiln.transforms.compile.fusion")
needs_numba = pytest.mark.skipif(not cpu_kernels.available, reason="numba not installed")

TABLE = [c for mod in (test_ops_elementwise, test_ops_reduce, test_ops_shape, test_ops_products)
         for c in mod.CASES if c.compile]


def _run(case, mode, monkeypatch):
    monkeypatch.setattr(F.options, "mode", mode)
    xs = make_inputs(case, 0)
    cf = mx.compile(lambda *a: case.fn(mx, *a))
    out = cf(*[mx.array(x) for x in xs])
    return _to_np(out), cf


@needs_numba
@pytest.mark.parametrize("case", TABLE, ids=[c.name for c in TABLE])
def test_table_fused_vs_unfused(case, monkeypatch):
    """Each primitive of the op tables through a kernel (fusion forced on): equal to unfused and eager."""
    monkeypatch.setattr(F.options, "mode", "on")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no kernel may fall back silently here
        check_compile(case)
    fused, _ = _run(case, "on", monkeypatch)
    plain, _ = _run(case, "off", monkeypatch)
    _assert_close(fused, plain, 1e-5, 1e-6, f"{case.name} fused vs unfused")


def _gelu(m, x):
    return 0.5 * x * (1 + m.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)))


BIG = 1 << 18  # above cpu_kernels.PARALLEL_MIN: the prange loop


@needs_numba
@pytest.mark.parametrize("n", [1000, BIG])
def test_gelu_fused_serial_and_parallel(n, monkeypatch):
    monkeypatch.setattr(F.options, "mode", "on")
    x = mx.array(np.random.default_rng(0).standard_normal(n).astype(np.float32) * 4)
    cf = mx.compile(lambda x: _gelu(mx, x))
    got = np.array(cf(x))
    want = np.array(_gelu(mx, x))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)
    p = cf.plans()[0]
    assert p.stats["fused_groups"] == 1 and p.stats["fused_nodes"] == p.stats["steps"]


@needs_numba
def test_tanh_approximation_special_values(monkeypatch):
    monkeypatch.setattr(F.options, "mode", "on")
    vals = np.array([0.0, -0.0, 1e-30, -1e-8, 0.5, 3.0, 8.9, 9.5, 50.0, -50.0, np.inf, -np.inf, np.nan],
                    dtype=np.float32)
    cf = mx.compile(lambda x: mx.tanh(x) * 1.0)
    got = np.array(cf(mx.array(vals)))
    np.testing.assert_allclose(got, np.tanh(vals.astype(np.float64)), rtol=1e-6, atol=1e-6)
    assert np.isnan(got[-1])


BCAST = [
    ("bias", lambda x, b, c: mx.tanh(x + b) * 2.0, (64, 48), (48,), ()),
    ("keepdims", lambda x, b, c: mx.exp(x - mx.max(x, axis=-1, keepdims=True)) * c, (64, 48), (48,), ()),
    ("rows3d", lambda x, b, c: x * mx.reshape(b, (1, 1, 48)) + mx.sin(x), (4, 16, 48), (48,), ()),
    ("transposed", lambda x, b, c: mx.transpose(x) * 3.0 + 1.0, (48, 64), (48,), ()),
    ("middle", lambda x, b, c: x * mx.reshape(b, (1, 48, 1)) - 1.0, (3, 48, 5), (48,), ()),
    ("scalar0d", lambda x, b, c: (x * c + c) * x, (7, 5), (5,), ()),
]


@needs_numba
@pytest.mark.parametrize("name,fn,xs,bs,cs", BCAST, ids=[b[0] for b in BCAST])
def test_broadcast_layouts(name, fn, xs, bs, cs, monkeypatch):
    """Bias, keepdims, inner/outer, transposed and irregular (materialised) leaves all give eager's values."""
    rng = np.random.default_rng(1)
    x, b = mx.array(rng.standard_normal(xs).astype(np.float32)), mx.array(rng.standard_normal(bs).astype(np.float32))
    c = mx.array(np.float32(0.7))
    want = np.array(fn(x, b, c))
    for mode in ("on", "off"):
        monkeypatch.setattr(F.options, "mode", mode)
        got = mx.compile(fn)(x, b, c)
        _assert_close(np.array(got), want, 1e-5, 1e-6, f"{name} {mode}")


def _adam(p, g, m, v):
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * (g * g)
    p = p - 0.01 * m / (mx.sqrt(v) + 1e-8)
    return p, m, v


@needs_numba
def test_optimizer_update_is_one_group_with_three_outputs(monkeypatch):
    monkeypatch.setattr(F.options, "mode", "on")
    rng = np.random.default_rng(2)
    args = [mx.array(rng.standard_normal((32, 16)).astype(np.float32)) for _ in range(4)]
    cf = mx.compile(_adam)
    got = cf(*args)
    want = _adam(*args)
    for g, w in zip(got, want):
        _assert_close(np.array(g), np.array(w), 1e-5, 1e-6, "adam")
    groups = cf.plans()[0].groups
    assert len(groups) == 1 and len(groups[0].outs) == 3
    assert cf.plans()[0].source.count(" = s") == 1  # p, m and v in one kernel call


@needs_numba
def test_value_used_inside_and_outside_a_group(monkeypatch):
    """A fused value that an unfused step also reads becomes a kernel output (no cycle, right order)."""
    monkeypatch.setattr(F.options, "mode", "on")

    def f(x, w):
        h = mx.tanh(x * 2.0)            # fused
        s = h @ w                       # unfused, reads h
        return mx.exp(h) + 1.0, s * h[:, :1]  # the fused group must not wait on s
    rng = np.random.default_rng(3)
    x, w = mx.array(rng.standard_normal((8, 8)).astype(np.float32)), mx.array(rng.standard_normal((8, 8)).astype(np.float32))
    got, want = mx.compile(f)(x, w), f(x, w)
    for g, w_ in zip(got, want):
        _assert_close(np.array(g), np.array(w_), 1e-5, 1e-5, "inside/outside")


@needs_numba
def test_failed_kernel_warns_once_and_runs_unfused(monkeypatch):
    monkeypatch.setattr(F.options, "mode", "on")

    def broken(self, codes, parallel):
        raise RuntimeError("simulated numba failure")
    monkeypatch.setattr(cpu_kernels.Kernel, "_build", broken)
    monkeypatch.setattr(cpu_kernels, "_kernels", {})  # fresh Kernel objects (no compiled variants)
    cf = mx.compile(lambda x: mx.sin(x) * 2.0 + 1.0)
    x = mx.array(np.linspace(-1, 1, 10, dtype=np.float32))
    with pytest.warns(RuntimeWarning, match=r"\[compile\] The fused kernel for Sin\+Multiply\+Add failed"):
        y = cf(x)
        mx.eval(y)
    _assert_close(np.array(y), np.sin(np.array(x)) * 2 + 1, 1e-6, 1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_close(np.array(cf(x)), np.array(y), 0, 0)  # no second warning


@needs_numba
def test_auto_mode_skips_small_arrays_and_off_mode_never_fuses(monkeypatch):
    cf = mx.compile(lambda x: mx.sin(x) * 2.0 + 1.0)
    small = mx.array(np.ones(10, np.float32))
    monkeypatch.setattr(F.options, "mode", "auto")
    mx.eval(cf(small))
    assert cf.plans()[0].source.count(" = s") == 3  # three NumPy calls below FUSE_MIN_SIZE
    monkeypatch.setattr(F.options, "mode", "off")
    big = mx.array(np.ones(F.FUSE_MIN_SIZE * 2, np.float32))
    cf2 = mx.compile(lambda x: mx.sin(x) * 2.0 + 1.0)
    mx.eval(cf2(big))
    assert cf2.plans()[0].source.count(" = s") == 3
    with pytest.raises(ValueError, match="compile"):
        F.set_fusion("sometimes")


@needs_numba
def test_shapeless_fused_replay_on_new_sizes(monkeypatch):
    monkeypatch.setattr(F.options, "mode", "auto")
    cf = mx.compile(lambda x: _gelu(mx, x), shapeless=True)
    for n in (8, F.FUSE_MIN_SIZE * 3, 5):  # small: unfused branch; large: the kernel
        x = mx.array(np.linspace(-3, 3, n, dtype=np.float32))
        _assert_close(np.array(cf(x)), np.array(_gelu(mx, x)), 1e-5, 2e-6, f"n={n}")
    assert cf.num_traces == 1


@needs_numba
def test_grad_and_vmap_of_fused_function(monkeypatch):
    monkeypatch.setattr(F.options, "mode", "on")
    x = mx.array(np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4))
    f = lambda x: mx.sum(_gelu(mx, x))  # noqa: E731
    _assert_close(np.array(mx.grad(mx.compile(f))(x)), np.array(mx.grad(f)(x)), 1e-5, 1e-6)
    _assert_close(np.array(mx.compile(mx.grad(f))(x)), np.array(mx.grad(f)(x)), 1e-5, 1e-6)
    g = lambda x: _gelu(mx, x) * 2.0  # noqa: E731
    _assert_close(np.array(mx.vmap(mx.compile(g))(x)), np.array(g(x)), 1e-5, 1e-6)


@needs_numba
def test_disk_cache_reused_by_a_second_process(tmp_path):
    code = (
        "import numpy as np, kiln.core as mx\n"
        "from kiln.backend import cpu_kernels\n"
        "from kiln.transforms.compile import set_fusion\n"
        "set_fusion('on')\n"
        "f = mx.compile(lambda x: mx.cos(x) * 3.0 - x)\n"
        "y = f(mx.array(np.arange(5, dtype=np.float32)))\n"
        "assert np.allclose(np.array(y), np.cos(np.arange(5)) * 3 - np.arange(5), atol=1e-6)\n"
        "print(cpu_kernels.stats['sources'])\n"
    )
    env = dict(os.environ, KILN_KERNEL_CACHE=str(tmp_path))
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert first.stdout.split() == ["1"] and second.stdout.split() == ["0"]
    assert any(p.suffix == ".nbi" for p in (tmp_path / "__pycache__").iterdir())  # numba's machine-code index


def _layer_norm(x):
    mu = mx.mean(x, axis=-1, keepdims=True)
    var = mx.mean(mx.square(x - mu), axis=-1, keepdims=True)
    return (x - mu) * mx.rsqrt(var + 1e-5)


REDUCTIONS = [
    ("softmax", lambda x: mx.softmax(x, axis=-1)),
    ("logsumexp", lambda x: mx.logsumexp(x, axis=-1)),
    ("log_softmax", lambda x: x - mx.logsumexp(x, axis=-1, keepdims=True)),
    ("layer_norm", _layer_norm),
    ("fast_layer_norm", lambda x: mx.fast.layer_norm(x, None, None, 1e-5)),
    ("rms_norm", lambda x: mx.fast.rms_norm(x, None, 1e-5)),
    ("sum_sq_2axes", lambda x: mx.sum(mx.square(x) * 0.5, axis=(-2, -1))),
    ("max_of_tanh", lambda x: mx.max(mx.tanh(x) * 2.0, axis=-1)),
    ("min_keepdims", lambda x: mx.min(mx.exp(x) - 1.0, axis=-1, keepdims=True)),
]


@needs_numba
@pytest.mark.parametrize("name,fn", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
@pytest.mark.parametrize("shape", [(6, 33), (2, 3, 40), (4, 0)], ids=["2d", "3d", "empty_axis"])
def test_reductions_with_prologue(name, fn, shape, monkeypatch):
    if 0 in shape and name in ("max_of_tanh", "min_keepdims", "softmax", "logsumexp", "log_softmax"):
        pytest.skip("max/min of an empty axis is an error in eager too")
    x = mx.array(np.random.default_rng(4).standard_normal(shape).astype(np.float32) * 3)
    want = np.array(fn(x))
    monkeypatch.setattr(F.options, "mode", "on")
    cf = mx.compile(fn)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = np.array(cf(x))
    _assert_close(got, want, 1e-5, 1e-6, name)
    if 0 not in shape and name not in ("fast_layer_norm", "rms_norm"):
        assert cf.plans()[0].stats["fused_reductions"] >= 1


@needs_numba
def test_fused_max_propagates_nan_and_cross_entropy(monkeypatch):
    monkeypatch.setattr(F.options, "mode", "on")
    x = np.random.default_rng(5).standard_normal((4, 10)).astype(np.float32)
    x[1, 3] = np.nan
    f = lambda a: mx.max(a * 1.0, axis=-1)  # noqa: E731
    got = np.array(mx.compile(f)(mx.array(x)))
    assert np.isnan(got[1]) and not np.isnan(got[[0, 2, 3]]).any()
    import kiln.nn as nn
    logits = mx.array(np.random.default_rng(6).standard_normal((16, 10)).astype(np.float32))
    y = mx.array(np.arange(16) % 10)
    ce = lambda lg: nn.losses.cross_entropy(lg, y, reduction="mean")  # noqa: E731
    _assert_close(np.array(mx.compile(ce)(logits)), np.array(ce(logits)), 1e-5, 1e-6, "cross_entropy")
    g = mx.grad(ce)
    _assert_close(np.array(mx.compile(g)(logits)), np.array(g(logits)), 1e-5, 1e-6, "cross_entropy grad")


@needs_numba
def test_auto_mode_fuses_long_chains_of_tiny_arrays(monkeypatch):
    """FUSE_MIN_STEPS: 200 ops on 16 elements become a few kernel calls (per-op dispatch gone)."""
    monkeypatch.setattr(F.options, "mode", "auto")

    def chain(x):
        for _ in range(100):
            x = x * 0.999
            x = x + 0.001
        return x
    x = mx.array(np.random.default_rng(7).standard_normal(16).astype(np.float32))
    cf = mx.compile(chain)
    _assert_close(np.array(cf(x)), np.array(chain(x)), 1e-5, 1e-6, "chain")
    p = cf.plans()[0]
    assert p.stats["fused_nodes"] == 200 and p.source.count(" = s") == len(p.groups) <= 4


def _sgd_state(n=64):
    rng = np.random.default_rng(8)
    return {"p": mx.array(rng.standard_normal(n).astype(np.float32)),
            "m": mx.array(np.zeros(n, np.float32))}


def _make_step(state):
    def step(g):
        m = 0.9 * state["m"] + g
        state["p"] = state["p"] - 0.1 * m
        state["m"] = m
        return mx.sum(state["p"])
    return mx.compile(step, inputs=[state], outputs=[state])


@needs_numba
def test_state_donated_in_place_when_nobody_holds_it(monkeypatch):
    monkeypatch.setattr(F.options, "mode", "on")
    state = _sgd_state()
    step = _make_step(state)
    g = mx.array(np.ones(64, np.float32))
    want_p, want_m = np.array(state["p"]), np.array(state["m"])
    for _ in range(3):
        want_m = 0.9 * want_m + 1
        want_p = want_p - 0.1 * want_m
        mx.eval(step(g), state)
        _assert_close(np.array(state["p"]), want_p, 1e-6, 1e-6, "p")
        _assert_close(np.array(state["m"]), want_m, 1e-6, 1e-6, "m")
    ptr = state["p"]._buf.ctypes.data  # an address, not a reference (holding the buffer stops donation)
    mx.eval(step(g), state)
    assert state["p"]._buf.ctypes.data == ptr  # the kernel wrote p's new value into its old buffer


@needs_numba
def test_donation_never_overwrites_an_array_the_user_holds(monkeypatch):
    monkeypatch.setattr(F.options, "mode", "on")
    state = _sgd_state()
    step = _make_step(state)
    g = mx.array(np.ones(64, np.float32))
    mx.eval(step(g), state)
    held = state["p"]                   # the user keeps the old parameter...
    held_np = np.array(held).copy()
    view = np.asarray(state["m"])       # ...and a NumPy view of the old momentum
    view_copy = view.copy()
    mx.eval(step(g), state)
    np.testing.assert_array_equal(np.array(held), held_np)
    np.testing.assert_array_equal(view, view_copy)
    assert not np.shares_memory(state["p"]._buf, held._buf)
    p_before = np.array(state["p"]).copy()
    lazy = state["p"] * 2               # a pending graph reading the old value
    mx.eval(step(g), state)
    np.testing.assert_array_equal(np.array(lazy), 2 * p_before)  # evaluated after the step: the old value


@needs_numba
def test_no_donation_when_state_is_also_an_argument(monkeypatch):
    monkeypatch.setattr(F.options, "mode", "on")
    state = _sgd_state()
    step = _make_step(state)

    def both(g):
        out = step(g)
        return out
    mx.eval(step(mx.array(np.ones(64, np.float32))), state)
    p = state["p"]
    want = np.array(p) - 0.1 * (0.9 * np.array(state["m"]) + np.array(p))
    mx.eval(both(state["p"]), state)  # the old p is both the gradient argument and the state
    _assert_close(np.array(state["p"]), want, 1e-6, 1e-6, "p")


@needs_numba
def test_auto_mode_leaves_scalar_libm_groups_to_numpy_on_large_arrays(monkeypatch):
    """exp is one libm call per element in a kernel (NumPy's loop is SIMD): unfused when large; tanh
    (float32, vectorised here) fuses."""
    monkeypatch.setattr(F.options, "mode", "auto")
    x = mx.array(np.linspace(-2, 2, 2 * F.FUSE_MIN_SIZE, dtype=np.float32))
    with_exp = mx.compile(lambda x: mx.exp(x * 0.5) + 1.0)
    with_tanh = mx.compile(lambda x: mx.tanh(x * 0.5) + 1.0)
    _assert_close(np.array(with_exp(x)), np.exp(np.array(x) * 0.5) + 1, 1e-6, 1e-6, "exp")
    _assert_close(np.array(with_tanh(x)), np.tanh(np.array(x) * 0.5) + 1, 1e-6, 1e-6, "tanh")
    assert with_exp.plans()[0].source.count(" = s") == 3
    assert with_tanh.plans()[0].source.count(" = s") == 1
    assert cpu_kernels.vectorised("tanh({0})", "float32") and not cpu_kernels.vectorised("tanh({0})", "float64")
