"""Shapeless compile replays on new shapes exactly (no shapes of the first trace baked in), in-place
updates of arguments, tuple subclasses through compile, and arguments reached through closures.

One table drives every shapeless check: each case is traced on its first shape and replayed on
the others, against the uncompiled function (and against real MLX where it is importable).
"""
from __future__ import annotations

import collections

import numpy as np
import pytest

import kiln.core as mx

try:
    import mlx.core as mlx
except ImportError:  # NumPy/uncompiled checks run without it
    mlx = None

needs_mlx = pytest.mark.skipif(mlx is None, reason="real MLX not importable")


def _slice_set(m, x):
    x[2] = m.array([3.0])
    return x


def _slice_add(m, x):
    x[1:3] += 1.0
    return x


# (name, fn(m, x), shapes: the first is traced, the rest replayed)
SHAPELESS = [
    ("mean_all", lambda m, x: m.mean(x, keepdims=True), [(2,), (4,), (7,)]),
    ("mean_axis", lambda m, x: m.mean(x, axis=1), [(2, 3), (2, 5), (4, 1)]),
    ("var_axis", lambda m, x: m.var(x, axis=0), [(3, 2), (6, 2)]),
    ("mean_traced_on_one", lambda m, x: m.mean(m.abs(x)), [(1,), (2,), (5,)]),
    ("zeros_like", lambda m, x: m.zeros_like(x) + 1, [(1, 1, 32), (2, 2, 16)]),
    ("ones_like", lambda m, x: m.ones_like(x) * x, [(3,), (5,)]),
    ("full_like", lambda m, x: m.full_like(x, 2.5) - x, [(2, 3), (4, 3)]),
    ("reshape_infer", lambda m, x: m.reshape(x, (x.shape[0] * x.shape[1], -1)),
     [(2, 3, 4), (2, 3, 8)]),
    ("flatten_infer", lambda m, x: m.reshape(x, (-1,)) * 2, [(2, 3), (4, 5)]),
    ("slice_set", _slice_set, [(4,), (5,), (9,)]),
    ("slice_add", _slice_add, [(4,), (6,)]),
]


@pytest.mark.parametrize("name,fn,shapes", SHAPELESS, ids=[c[0] for c in SHAPELESS])
def test_shapeless_replay_matches_uncompiled(name, fn, shapes):
    cfun = mx.compile(lambda x: fn(mx, x), shapeless=True)
    rng = np.random.default_rng(0)
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        got = cfun(mx.array(x))
        want = fn(mx, mx.array(x))
        assert got.shape == want.shape, (name, shape)
        np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=1e-6)
        if mlx is not None:
            ref = fn(mlx, mlx.array(x))
            np.testing.assert_allclose(np.array(got), np.array(ref), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shapeless", [False, True])
def test_inplace_update_of_argument_is_compiled(shapeless):
    cfun = mx.compile(lambda x: _slice_set(mx, x), shapeless=shapeless)
    a = mx.array([0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(np.array(cfun(a)), [0, 1, 3, 3])
    np.testing.assert_array_equal(np.array(a), [0, 1, 2, 3])  # the caller's array is not written


def test_shapeless_reshape_that_no_longer_fits_raises():
    cfun = mx.compile(lambda x: x.reshape(x.shape[0] * x.shape[1], -1), shapeless=True)
    cfun(mx.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="reshape"):
        cfun(mx.zeros((5, 5, 5)))


def test_shapeless_fixed_broadcast_target_raises():
    target = (2, 2)
    cfun = mx.compile(lambda a: mx.broadcast_to(a, target), shapeless=True)
    assert cfun(mx.array(0.0)).shape == target
    with pytest.raises(ValueError):
        cfun(mx.array(0.0).reshape(1, 1, 1))


def test_number_of_elements_under_grad_and_vmap():
    x = mx.array(np.arange(12, dtype=np.float32).reshape(3, 4))
    # a lazy input takes the graph path of mean
    g = mx.grad(lambda x: mx.mean(x * 1.0))(x)
    np.testing.assert_allclose(np.array(g), np.full((3, 4), 1 / 12, np.float32), rtol=1e-6)
    v = mx.vmap(lambda r: mx.mean(r * 1.0))(x)
    np.testing.assert_allclose(np.array(v), np.arange(12).reshape(3, 4).mean(1), rtol=1e-6)


State = collections.namedtuple("State", ["a", "b"])


class Vector(tuple):
    pass


TUPLE_KINDS = [
    ("tuple", lambda a, b: (a, b)),
    ("namedtuple", lambda a, b: State(a, b)),
    ("tuple_subclass", lambda a, b: Vector([a, b])),
]


@pytest.mark.parametrize("name,make", TUPLE_KINDS, ids=[k[0] for k in TUPLE_KINDS])
def test_tuple_kinds_round_trip_through_compile(name, make):
    def f(t):
        return make(t[0] + 10, t[1] * 10)

    out = mx.compile(f)(make(mx.array([1, 2]), mx.array([3, 4])))
    assert type(out) is type(make(1, 2))
    np.testing.assert_array_equal(np.array(out[0]), [11, 12])
    np.testing.assert_array_equal(np.array(out[1]), [30, 40])


def _closure_cases(m):
    lazy = m.array([1, 2, 3]) + 2
    done = m.array([1, 2, 3]) + 2
    m.eval(done)
    leaf = m.array([1, 2, 3])
    return [
        ("evaluated_closure", lambda a: a + done, m.array(1)),
        ("lazy_closure", lambda a: a + lazy, m.array(1)),
        ("leaf_closure", lambda a: a + leaf, m.array(1)),
        ("closure_is_argument", lambda a: a + (done + 1), done),
        ("lazy_closure_is_argument", lambda a: a + lazy, lazy),
    ]


def _outcome(m, f, a):
    try:
        return np.array(m.compile(f)(a)).tolist()
    except ValueError:
        return "ValueError"


def test_arguments_reached_through_closures():
    got = {name: _outcome(mx, f, a) for name, f, a in _closure_cases(mx)}
    assert got["closure_is_argument"] == "ValueError"
    assert got["lazy_closure_is_argument"] == "ValueError"
    assert got["leaf_closure"] == [2, 3, 4]
    assert got["lazy_closure"] == [4, 5, 6]


@needs_mlx
def test_arguments_reached_through_closures_match_mlx():
    got = {name: _outcome(mx, f, a) for name, f, a in _closure_cases(mx)}
    want = {name: _outcome(mlx, f, a) for name, f, a in _closure_cases(mlx)}
    assert got == want


def test_compiled_inner_function_closing_over_a_vmap_tracer():
    x = mx.array(np.array([[-1.0, 2.0], [3.0, -4.0]], np.float32))

    def outer(x):
        x = mx.abs(x)

        @mx.compile
        def inner(z):
            return -mx.exp(x)  # closes over its own argument's tracer

        return inner(x)

    np.testing.assert_allclose(np.array(mx.vmap(outer)(x)), -np.exp(np.abs(np.array(x))), rtol=1e-6)
