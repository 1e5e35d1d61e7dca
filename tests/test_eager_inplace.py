"""Eval writing elementwise results into input buffers that nothing else holds.

Values must never change for anything a user (or a transform) can still see: arrays held in
variables, NumPy views of them, constants, nodes with other pending consumers, graphs kept by
grad. The spy counts donations, so the checks that it happens cannot pass vacuously.
"""
from __future__ import annotations

import numpy as np
import pytest

import kiln.core as mx
from kiln.graph import eval as E

N = 1 << 15  # float32: 128 KiB, above the backends' minimum


@pytest.fixture
def donations(monkeypatch):
    got = []
    orig = E._donor

    def spy(*args):
        r = orig(*args)
        got.append(r is not None)
        return r

    monkeypatch.setattr(E, "_donor", spy)
    return got


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal(N).astype(np.float32)


def test_chain_donates_and_is_right(donations):
    xn = _x()
    x = mx.array(xn)
    y = mx.tanh(mx.exp(x * 0.5 + 1.0) - 2.0) * 3.0
    mx.eval(y)
    want = np.tanh(np.exp(xn * np.float32(0.5) + np.float32(1)) - np.float32(2)) * np.float32(3)
    np.testing.assert_allclose(np.array(y), want, rtol=1e-6, atol=1e-6)
    assert sum(donations) >= 4  # every op after the first reuses the intermediate
    np.testing.assert_array_equal(np.array(x), xn)  # the user's input is untouched


def test_held_arrays_and_views_are_not_overwritten(donations):
    xn = _x(1)
    x = mx.array(xn)
    a = x * 2.0             # held by a variable
    b = mx.exp(x)
    view = np.asarray(b)    # NumPy view of b's buffer (after eval)
    mx.eval(a, b)
    before_a, before_b = np.array(a).copy(), view.copy()
    c = a + 1.0
    d = b * 3.0
    mx.eval(c, d)
    np.testing.assert_array_equal(np.array(a), before_a)
    np.testing.assert_array_equal(view, before_b)
    np.testing.assert_allclose(np.array(c), before_a + 1, rtol=1e-6)
    assert not any(donations[-2:])


def test_shared_intermediate_keeps_value_for_later_consumer(donations):
    xn = _x(2)
    x = mx.array(xn)
    t = mx.exp(x)
    u = t + 1.0   # t has a second pending consumer below: u must not reuse t's buffer
    v = t * 2.0
    del t
    mx.eval(u, v)
    e = np.exp(xn)
    np.testing.assert_allclose(np.array(u), e + 1, rtol=1e-6)
    np.testing.assert_allclose(np.array(v), e * 2, rtol=1e-6)


def test_rebind_and_state_update(donations):
    xn = _x(3)
    m = mx.array(np.zeros(N, np.float32))
    g = mx.array(xn)
    alias = m
    for _ in range(3):
        m = 0.9 * m + 0.1 * g
        mx.eval(m)
    np.testing.assert_allclose(np.array(m), xn * (1 - 0.9 ** 3), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.array(alias), 0)  # the old state object is intact
    s = mx.array(xn)
    s += 1.0
    s *= 2.0
    np.testing.assert_allclose(np.array(s), (xn + 1) * 2, rtol=1e-6)


def test_grad_graph_untouched(donations):
    xn = _x(4)

    def f(x):
        h = mx.exp(x * 0.1) + 1.0
        return mx.sum(mx.tanh(h) * h)

    g = mx.grad(f)(mx.array(xn))
    x64 = xn.astype(np.float64)
    h = np.exp(x64 * 0.1) + 1
    want = (1 - np.tanh(h) ** 2) * h + np.tanh(h)
    np.testing.assert_allclose(np.array(g), want * 0.1 * np.exp(x64 * 0.1), rtol=1e-4, atol=1e-6)


def test_memory_counted_once():
    mx.eval(mx.array(np.zeros(4, np.float32)))
    base = mx.get_active_memory()
    x = mx.array(_x(5))
    y = mx.exp(x * 2.0 + 1.0)
    mx.eval(y)
    assert mx.get_active_memory() - base == 2 * N * 4  # x and y, no intermediate left counted
    del y
    assert mx.get_active_memory() - base == N * 4


def test_small_arrays_not_donated(donations):
    x = mx.array(np.ones(8, np.float32))
    mx.eval(mx.exp(x * 2.0 + 1.0))
    assert not any(donations)
