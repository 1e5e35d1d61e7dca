"""Table-driven checks shared by every op test file.

An ``OpCase`` describes one op once: ``fn(m, *xs)`` is written against a
namespace ``m`` so the same lambda runs on ``kiln.core`` and on the real
``mlx.core``; ``ref(*xs)`` is the NumPy reference. Each test file keeps a
list of cases and parametrises the checks below over it:

* ``check_forward``  — values/shape/dtype vs NumPy and vs real MLX;
* ``check_grads``    — VJP and JVP vs central differences (float64), to
  second order, plus the dot-product identity <v, J u> = <J^T v, u>;
* ``check_vmap``     — vmap vs stacking a Python loop, for several in_axes;
* ``check_compile``  — compiled vs uncompiled.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import pytest

import kiln.core as mx

try:  # the real MLX is the oracle where it installs
    import mlx.core as mlx_core
except Exception:  # pragma: no cover
    mlx_core = None

needs_mlx = pytest.mark.skipif(mlx_core is None, reason="real MLX not installed")


@dataclasses.dataclass
class OpCase:
    """One op in a table.

    Attributes:
        name: test id.
        fn: ``fn(m, *xs)`` using namespace ``m`` (kiln.core or mlx.core).
        ref: NumPy reference ``ref(*xs)`` or None.
        shapes: input shapes (one tuple per input).
        dtypes: input dtypes as NumPy dtype names (one per input, or one for all).
        gen: optional ``gen(rng, shape, dtype) -> np.ndarray`` for inputs (domain).
        grad: whether the op is differentiable (checked by check_grads).
        grad_argnums: which inputs to differentiate (default: all float inputs).
        vmap: whether to run vmap checks.
        mlx: whether to compare against real MLX.
        rtol/atol: tolerances for the forward check.
        order: highest derivative order to check.
    """

    name: str
    fn: Callable
    ref: Optional[Callable] = None
    shapes: tuple = ((3, 4),)
    dtypes: tuple = ("float32",)
    gen: Optional[Callable] = None
    grad: bool = True
    grad_argnums: Optional[tuple] = None
    vmap: bool = True
    mlx: bool = True
    compile: bool = True
    rtol: float = 1e-5
    atol: float = 1e-6
    order: int = 2

    def __repr__(self):
        return self.name


def make_inputs(case: OpCase, seed: int = 0, dtype_override=None):
    """The case's inputs as NumPy arrays (floats as ``dtype_override`` when given)."""
    rng = np.random.default_rng(seed)
    shapes = case.shapes
    dts = case.dtypes if len(case.dtypes) == len(shapes) else case.dtypes * len(shapes)
    out = []
    for s, d in zip(shapes, dts):
        d = dtype_override if (dtype_override and np.dtype(d).kind == "f") else d
        if case.gen is not None:
            v = case.gen(rng, s, d)
        elif np.dtype(d).kind == "f":
            v = rng.standard_normal(s)
        elif np.dtype(d).kind == "b":
            v = rng.random(s) > 0.5
        elif np.dtype(d).kind == "u":
            v = rng.integers(0, 10, s)
        else:
            v = rng.integers(-10, 10, s)
        out.append(np.asarray(v).astype(d))
    return out


def _to_np(x):
    if isinstance(x, (list, tuple)):
        return [_to_np(v) for v in x]
    return np.array(x)


def _assert_close(got, want, rtol, atol, what=""):
    if isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), what
        for g, w in zip(got, want):
            _assert_close(g, w, rtol, atol, what)
        return
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if got.dtype.kind in "fc" or want.dtype.kind in "fc":
        np.testing.assert_allclose(got.astype(np.complex128 if got.dtype.kind == "c" else np.float64),
                                   want, rtol=rtol, atol=atol, err_msg=what, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def check_forward(case: OpCase):
    """Values, shape and dtype against the NumPy reference and (where installed) the real MLX.

    The NumPy check runs without MLX; a case whose only reference is MLX is skipped when MLX is
    missing, and a case with no reference at all fails: a check that compares nothing is a hole.
    """
    if case.ref is None and not case.mlx:
        raise AssertionError(f"{case.name}: nothing to compare (no NumPy reference, mlx=False)")
    xs = make_inputs(case)
    out = case.fn(mx, *[mx.array(x) for x in xs])
    got = _to_np(out)
    if case.ref is not None:
        _assert_close(got, case.ref(*xs), case.rtol, case.atol, f"{case.name} vs NumPy")
    if case.mlx and mlx_core is None and case.ref is None:
        pytest.skip("real MLX not installed: this case's only reference is MLX")
    if case.mlx and mlx_core is not None:
        mout = case.fn(mlx_core, *[mlx_core.array(x) for x in xs])
        _assert_close(got, _to_np(mout), case.rtol, case.atol, f"{case.name} vs MLX")
        outs = out if isinstance(out, (list, tuple)) else [out]
        mouts = mout if isinstance(mout, (list, tuple)) else [mout]
        for o, mo in zip(outs, mouts):
            assert o.dtype.name == str(mo.dtype).rsplit(".", 1)[-1], f"{case.name}: dtype {o.dtype} vs MLX {mo.dtype}"
            assert tuple(o.shape) == tuple(mo.shape)


# ---------------------------------------------------------------- gradients
def _scalarize(out, w):
    """Reduce an op's output(s) to a scalar with fixed random weights."""
    outs = out if isinstance(out, (list, tuple)) else [out]
    total = None
    for o, wi in zip(outs, w):
        if not mx.issubdtype(o.dtype, mx.inexact):
            continue
        t = mx.sum(o.astype(mx.float64) * wi)
        total = t if total is None else total + t
    assert total is not None, "check_grads: the op has no floating-point output to differentiate"
    return total


def _diff_argnums(case, xs):
    if case.grad_argnums is not None:
        return case.grad_argnums
    return tuple(i for i, x in enumerate(xs) if x.dtype.kind == "f")


def check_grads(case: OpCase, eps: float = 1e-6, rtol: float = 1e-4, atol: float = 1e-6,
                identity_rtol: float = 1e-7):
    """VJP and JVP against central differences in float64, then second order.

    Fails when the case has no floating-point input to differentiate (nothing to compare).
    """
    xs = make_inputs(case, dtype_override="float64")
    argnums = _diff_argnums(case, xs)
    assert argnums, f"{case.name}: no floating-point input to differentiate"
    rng = np.random.default_rng(1)
    out0 = case.fn(mx, *[mx.array(x, dtype=mx.float64) if x.dtype == np.float64 else mx.array(x) for x in xs])
    outs0 = out0 if isinstance(out0, (list, tuple)) else [out0]
    w = [mx.array(rng.standard_normal(o.shape), dtype=mx.float64) for o in outs0]

    def to_kiln(vals):
        return [mx.array(v, dtype=mx.float64) if v.dtype == np.float64 else mx.array(v) for v in vals]

    def scalar_f(*diff):
        args = list(to_kiln(xs))
        for i, d in zip(argnums, diff):
            args[i] = d
        return _scalarize(case.fn(mx, *args), w)

    primals = [mx.array(xs[i], dtype=mx.float64) for i in argnums]
    _check_first_order(scalar_f, primals, eps, rtol, atol, case.name, identity_rtol)
    if case.order >= 2:
        # Second order: the gradient function itself, checked the same way.
        v = [mx.array(rng.standard_normal(p.shape), dtype=mx.float64) for p in primals]

        def grad_dot(*diff):
            g = mx.grad(scalar_f, argnums=list(range(len(diff))))(*diff)
            return sum(mx.sum(gi * vi) for gi, vi in zip(g, v))

        _check_first_order(grad_dot, primals, eps * 10, rtol * 10, atol * 10, case.name + " (2nd order)",
                           identity_rtol)


def _numeric_grad(f, primals, eps):
    grads = []
    base = [np.array(p) for p in primals]
    for k, p in enumerate(base):
        g = np.zeros(p.shape)
        flat = p.reshape(-1)
        for j in range(flat.size):
            plus = [b.copy() for b in base]
            minus = [b.copy() for b in base]
            plus[k].reshape(-1)[j] += eps
            minus[k].reshape(-1)[j] -= eps
            fp = f(*[mx.array(q, dtype=mx.float64) for q in plus]).item()
            fm = f(*[mx.array(q, dtype=mx.float64) for q in minus]).item()
            g.reshape(-1)[j] = (fp - fm) / (2 * eps)
        grads.append(g)
    return grads


def _check_first_order(f, primals, eps, rtol, atol, name, identity_rtol=1e-7):
    num = _numeric_grad(f, primals, eps)
    # reverse mode
    rev = mx.grad(f, argnums=list(range(len(primals))))(*primals)
    for g, n in zip(rev, num):
        _assert_close(np.array(g), n, rtol, atol, f"{name}: VJP vs finite differences")
    # forward mode, along a random direction, and the dot-product identity
    rng = np.random.default_rng(7)
    u = [mx.array(rng.standard_normal(p.shape), dtype=mx.float64) for p in primals]
    _, jvp_out = mx.jvp(f, primals, u)
    want = sum(float(np.sum(n * np.array(ui))) for n, ui in zip(num, u))
    np.testing.assert_allclose(float(jvp_out[0].item()), want, rtol=rtol * 10, atol=atol * 10,
                               err_msg=f"{name}: JVP vs finite differences")
    got_rev = sum(float(mx.sum(g * ui).item()) for g, ui in zip(rev, u))
    # identity_rtol: ops computing in float32/complex64 (fft) cannot reach 1e-7.
    np.testing.assert_allclose(got_rev, float(jvp_out[0].item()), rtol=identity_rtol, atol=1e-9,
                               err_msg=f"{name}: <v, J u> != <J^T v, u>")


# ---------------------------------------------------------------- vmap
def vmap_axes_patterns(n_inputs: int):
    """in_axes patterns to try: all 0, last axis, and None on each input in turn."""
    pats = [(0,) * n_inputs, (-1,) * n_inputs]
    if n_inputs > 1:
        for i in range(n_inputs):
            pats.append(tuple(None if j == i else 0 for j in range(n_inputs)))
    return pats


def check_vmap(case: OpCase, in_axes=None):
    """vmap against stacking a Python loop, for ``in_axes`` or several patterns of it."""
    batch, out_axes = 3, 0
    xs = make_inputs(case)
    rng = np.random.default_rng(2)
    for pattern in ([in_axes] if in_axes is not None else vmap_axes_patterns(len(xs))):
        batched = []
        for x, ax in zip(xs, pattern):
            if ax is None:
                batched.append(x)
            else:
                stack = np.stack([make_inputs(case, int(rng.integers(1 << 30)))[len(batched)]
                                  for _ in range(batch)], axis=ax if ax >= 0 else x.ndim + 1 + ax)
                batched.append(stack)
        f = lambda *a: case.fn(mx, *a)  # noqa: E731
        got = mx.vmap(f, in_axes=pattern, out_axes=out_axes)(*[mx.array(b) for b in batched])
        loop = []
        for k in range(batch):
            args = [mx.array(b) if ax is None else mx.array(np.take(b, k, axis=ax)) for b, ax in zip(batched, pattern)]
            loop.append(f(*args))
        if isinstance(got, (list, tuple)):
            for j, g in enumerate(got):
                want = np.stack([np.array(lo[j]) for lo in loop], axis=out_axes)
                _assert_close(np.array(g), want, 1e-5, 1e-6, f"{case.name} vmap {pattern}")
        else:
            want = np.stack([np.array(lo) for lo in loop], axis=out_axes)
            _assert_close(np.array(got), want, 1e-5, 1e-6, f"{case.name} vmap {pattern}")


# ---------------------------------------------------------------- compile
def check_compile(case: OpCase):
    """Compiled against uncompiled: the trace and a replay."""
    xs = make_inputs(case)
    f = lambda *a: case.fn(mx, *a)  # noqa: E731
    want = f(*[mx.array(x) for x in xs])
    cf = mx.compile(f)
    for _ in range(2):  # trace, then replay
        got = cf(*[mx.array(x) for x in xs])
        _assert_close(_to_np(got), _to_np(want), 1e-5, 1e-6, f"{case.name} compiled")
        gs = got if isinstance(got, (list, tuple)) else [got]
        ws = want if isinstance(want, (list, tuple)) else [want]
        for g, w in zip(gs, ws):
            assert g.dtype == w.dtype and g.shape == w.shape

