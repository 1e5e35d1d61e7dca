"""``mx.searchsorted``: values vs NumPy and MLX, vmap, gradients, errors."""
from __future__ import annotations

import numpy as np
import pytest
from harness import mlx_core, needs_mlx

import kiln.core as mx

SEQS = [np.array([1.0, 2.0, 2.0, 4.0], np.float32), np.array([0, 3, 3, 9, 12], np.int32),
        np.array([1.0, np.nan], np.float32), np.array([], np.float32)]
VALUES = [np.array([0.0, 2.0, 3.0, 5.0, np.nan], np.float32), np.array([[3, -1], [12, 7]], np.int32),
          np.array(2.5, np.float32)]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("k", range(len(SEQS)))
@pytest.mark.parametrize("j", range(len(VALUES)))
def test_values_match_numpy_and_mlx(side, k, j):
    a, v = SEQS[k], VALUES[j]
    got = mx.searchsorted(mx.array(a), mx.array(v), side=side)
    assert got.dtype == mx.uint32 and got.shape == v.shape
    dt = np.promote_types(a.dtype, v.dtype)
    np.testing.assert_array_equal(np.asarray(got), np.searchsorted(a.astype(dt), v.astype(dt), side=side))
    if mlx_core is not None:
        want = mlx_core.searchsorted(mlx_core.array(a), mlx_core.array(v), side=side)
        np.testing.assert_array_equal(np.asarray(got), np.array(want))


@pytest.mark.parametrize("side", ["left", "right"])
def test_vmap_over_values_and_compile(side):
    seq = np.sort(np.random.default_rng(0).integers(0, 6, 5)).astype(np.float32)
    vals = np.random.default_rng(1).integers(-1, 7, (3, 4)).astype(np.float32)
    f = lambda a, v: mx.searchsorted(a, v, side=side)  # noqa: E731
    loop = np.stack([np.searchsorted(seq, v, side=side) for v in vals])
    np.testing.assert_array_equal(np.asarray(mx.vmap(f, in_axes=(None, 0))(mx.array(seq), mx.array(vals))), loop)
    np.testing.assert_array_equal(np.asarray(mx.vmap(f, in_axes=(None, 1))(mx.array(seq), mx.array(vals))), loop.T)
    np.testing.assert_array_equal(np.asarray(mx.compile(f)(mx.array(seq), mx.array(vals))),
                                  np.searchsorted(seq, vals, side=side))


@needs_mlx
def test_vmap_over_sequences_is_refused_as_in_mlx():
    msgs = []
    for m in (mx, mlx_core):
        with pytest.raises(ValueError) as e:
            m.vmap(lambda s: m.searchsorted(s, m.array([1.0])))(m.zeros((3, 4)))
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]


def test_gradient_is_zero():
    g = mx.grad(lambda v: mx.searchsorted(mx.array([1.0, 2.0]), v).astype(mx.float32).sum())(mx.array([1.5]))
    np.testing.assert_array_equal(np.asarray(g), [0.0])


@needs_mlx
@pytest.mark.parametrize("args", [((2, 2), (3,), "left"), ((3,), (3,), "middle")])
def test_errors_match_mlx(args):
    sa, sv, side = args
    msgs = []
    for m in (mx, mlx_core):
        with pytest.raises(ValueError) as e:
            m.searchsorted(m.ones(sa), m.ones(sv), side=side)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]
