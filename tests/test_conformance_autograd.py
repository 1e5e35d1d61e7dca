"""grad / value_and_grad argument handling as in MLX: argnums forms, argnames, auxiliary outputs,
and functions that change their (list, dict, Module) arguments in place; nn.Module.freeze with
strict keys over a tree.

Each row of CALLS is run on kiln and, where importable, on the real MLX; the results (a nested
structure of floats, or the exception type) must agree. The NumPy-free checks below the table
state the expected values directly from the function's derivative.
"""
from __future__ import annotations

import numpy as np
import pytest

import kiln.core as mx
import kiln.nn as nn

try:
    import mlx.core as mlx
    import mlx.nn as mlx_nn
except ImportError:
    mlx = None

needs_mlx = pytest.mark.skipif(mlx is None, reason="real MLX not importable")


def _show(v):
    if isinstance(v, tuple):
        return tuple(_show(x) for x in v)
    if isinstance(v, list):
        return [_show(x) for x in v]
    if isinstance(v, dict):
        return {k: _show(x) for k, x in v.items()}
    if v is None:
        return None
    return round(float(v.item()), 6)


def _mul(x, y):
    return x * y


# (name, call(m, a, b)) with a = 0.5, b = 2.0
CALLS = [
    ("argnums_int", lambda m, a, b: m.grad(_mul, argnums=1)(a, b)),
    ("argnums_one_tuple", lambda m, a, b: m.grad(_mul, argnums=(0,))(a, b)),
    ("argnums_one_list", lambda m, a, b: m.grad(_mul, argnums=[0])(a, b)),
    ("argnums_two", lambda m, a, b: m.grad(_mul, argnums=(0, 1))(a, b)),
    ("argnames_only", lambda m, a, b: m.grad(_mul, argnums=[], argnames=["y"])(a, y=b)),
    ("argnames_default", lambda m, a, b: m.grad(_mul, argnames=["y"])(a, y=b)),
    ("argnums_list_and_names", lambda m, a, b: m.grad(_mul, argnums=[0], argnames=["y"])(a, y=b)),
    ("positional_by_keyword", lambda m, a, b: m.grad(_mul)(x=a, y=b)),
    ("argnums_none", lambda m, a, b: m.value_and_grad(_mul, (None, None))),
    ("argnums_empty", lambda m, a, b: m.value_and_grad(_mul, ())),
    ("argnums_repeat", lambda m, a, b: m.grad(_mul, argnums=(0, 0))(a, b)),
    ("argnums_repeat_unbound", lambda m, a, b: m.grad(_mul, argnums=(0, 0))),
    ("grad_of_tuple_output", lambda m, a, b: m.grad(lambda x: (x * 2, x))(a)),
    ("grad_of_list_output", lambda m, a, b: m.grad(lambda x: [x * 2])(a)),
    ("value_and_grad_aux", lambda m, a, b: m.value_and_grad(lambda x: (x * b, x))(a)),
    ("non_scalar_output", lambda m, a, b: m.grad(lambda x: x * 2)(m.ones(2))),
]


def _run(m, call):
    try:
        return _show(call(m, m.array(0.5), m.array(2.0)))
    except Exception as e:  # the exception's type is the outcome being compared
        return type(e).__name__


@pytest.mark.parametrize("name,call", CALLS, ids=[c[0] for c in CALLS])
@needs_mlx
def test_grad_argument_forms_match_mlx(name, call):
    assert _run(mx, call) == _run(mlx, call)


def test_grad_argument_forms_without_mlx():
    got = {name: _run(mx, call) for name, call in CALLS}
    assert got["argnums_one_tuple"] == 2.0  # d(xy)/dx at y = 2, unwrapped
    assert got["argnums_two"] == (2.0, 0.5)
    assert got["argnames_only"] == (None, {"y": 0.5})
    assert got["argnums_list_and_names"] == (2.0, {"y": 0.5})
    assert got["argnums_none"] == "TypeError"
    assert got["argnums_empty"] == "ValueError"
    assert got["grad_of_tuple_output"] == "ValueError"
    assert got["value_and_grad_aux"] == ((1.0, 0.5), 2.0)


def _inplace_outcomes(m, nnm):
    out = {}
    model = [m.array(0.0), m.array(1.0)]

    def set_second(p):
        p[1] = m.array(2.0)
        return p[0]

    g = m.grad(set_second)(model)
    out["list_written"] = (_show(model), _show(g))

    arrs = [m.array(1.0), m.array(1.0), m.array(1.0)]
    ids = [id(a) for a in arrs]

    def sum_into_second(p):
        p[1] = sum(p)
        return p[1]

    m.grad(sum_into_second)(arrs)
    out["ids_kept"] = [id(a) == i for a, i in zip(arrs, ids)]

    d = {"a": m.array(1.0)}
    g = m.grad(lambda t: t["a"] * 3)(d)
    out["dict_untouched"] = (_show(d), _show(g))

    lin = nnm.Linear(3, 3)
    x = m.ones((3,))
    g = m.grad(lambda mod: mod(x).sum())(lin)
    out["module_argument"] = (type(g).__name__, sorted(g), tuple(lin.weight.shape),
                              type(lin.weight).__name__ == "array")
    return out


def test_inplace_updates_of_arguments_inside_grad():
    got = _inplace_outcomes(mx, nn)
    assert got["list_written"] == ([0.0, 2.0], [1.0, 0.0])
    assert got["ids_kept"] == [True, False, True]
    assert got["dict_untouched"] == ({"a": 1.0}, {"a": 3.0})
    assert got["module_argument"] == ("dict", ["bias", "weight"], (3, 3), True)


@needs_mlx
def test_inplace_updates_of_arguments_inside_grad_match_mlx():
    assert _inplace_outcomes(mx, nn) == _inplace_outcomes(mlx, mlx_nn)


FREEZE = [("bias", True), ("bias", False), ("nope", True), (["bias", "nope"], True),
          (["bias", "nope"], False), ("layers", True), ("layers", False)]


def _freeze_outcome(nnm, keys, recurse):
    m = nnm.Sequential(nnm.Linear(2, 2, bias=False), nnm.Linear(2, 2))
    try:
        m.freeze(keys=keys, strict=True, recurse=recurse)
    except KeyError as e:
        return f"KeyError {e}"
    from kiln.utils import tree_flatten

    return sorted(k for k, _ in tree_flatten(dict(m.trainable_parameters())))


@pytest.mark.parametrize("keys,recurse", FREEZE)
def test_freeze_strict_keys(keys, recurse):
    got = _freeze_outcome(nn, keys, recurse)
    if keys == "bias" and recurse:
        assert got == ["layers.0.weight", "layers.1.weight"]
    elif keys == "nope" or (keys != "layers" and not recurse) or isinstance(keys, list):
        assert got.startswith("KeyError")
    if mlx is not None:
        assert got == _freeze_outcome(mlx_nn, keys, recurse)


# (name, f): functions with a bool (non-differentiable) output whose JVP tangent must be a
# float32 zero, as in MLX, so arithmetic on it works
BOOL_OUTPUTS = [
    ("greater", lambda m, x: m.greater(x, 0.0)),
    ("less", lambda m, x: m.less(x, 0.0)),
    ("equal", lambda m, x: m.equal(x, 2.0)),
    ("greater_equal", lambda m, x: m.greater_equal(x, 0.0)),
    ("less_equal", lambda m, x: m.less_equal(x, 0.0)),
    ("not_equal", lambda m, x: m.not_equal(x, 0.0)),
    ("isnan", lambda m, x: m.isnan(x)),
    ("logical_not", lambda m, x: m.logical_not(x > 1)),
    ("where_of_compare", lambda m, x: m.where(x > 1, x, 0.0)),
]


def _bool_tangent(m, f):
    x = m.array([1.0, -2.0, 3.0])
    _, (t,) = m.jvp(lambda a: f(m, a), [x], [m.ones_like(x)])
    return str(t.dtype).split(".")[-1], t.tolist()


@pytest.mark.parametrize("name,f", BOOL_OUTPUTS, ids=[b[0] for b in BOOL_OUTPUTS])
def test_bool_output_tangent_dtype(name, f):
    dtype, values = _bool_tangent(mx, f)
    assert dtype == "float32"
    if name != "where_of_compare":
        assert values == [0.0, 0.0, 0.0]
    else:
        assert values == [0.0, 0.0, 1.0]
    if mlx is not None:
        assert (dtype, values) == _bool_tangent(mlx, f)


CUM_TIES = [{}, {"inclusive": False}, {"reverse": True}, {"reverse": True, "inclusive": False}]


def _cum_grads(m, kw):
    a = m.array([3.0, 3.0, 1.0, 5.0, 5.0])
    return (m.grad(lambda y: m.cummax(y, **kw).sum())(a).tolist(),
            m.grad(lambda y: m.cummin(y, **kw).sum())(-a).tolist())


@pytest.mark.parametrize("kw", CUM_TIES, ids=str)
def test_cummax_cummin_ties_go_to_the_latest(kw):
    got = _cum_grads(mx, kw)
    # each output's gradient lands on the latest (in scan order) element holding the extreme
    want = {(): [1.0, 2.0, 0.0, 1.0, 1.0], (("inclusive", False),): [1.0, 2.0, 0.0, 1.0, 0.0],
            (("reverse", True),): [0.0, 0.0, 0.0, 4.0, 1.0],
            (("inclusive", False), ("reverse", True)): [0.0, 0.0, 0.0, 3.0, 1.0]}[tuple(sorted(kw.items()))]
    assert got == (want, want)
    if mlx is not None:
        assert got == _cum_grads(mlx, kw)


def _custom_rules(m):
    out = {}
    my_exp = m.custom_function(m.exp)

    @my_exp.vjp
    def _v(x, dx, ex):  # one argument: the array itself, as in MLX
        return m.ones_like(x) * 42

    out["vjp"] = m.grad(my_exp)(m.array(1.0)).item()

    @my_exp.jvp
    def _j(x, dx):
        return m.ones_like(x) * 7 * dx

    @my_exp.vmap
    def _vm(x, axis):
        return m.ones_like(x) * 3, axis

    out["jvp"] = m.jvp(my_exp, [m.array(1.0)], [m.array(1.0)])[1][0].item()
    out["vmap"] = m.vmap(my_exp)(m.ones(3)).tolist()

    @m.custom_function
    def double(params):
        return {"out": 2 * params["x"] * params["y"]}

    @double.vjp
    def _dv(primals, cot, outs):
        return {"x": m.zeros_like(primals["x"]), "y": m.ones_like(primals["y"])}

    g = m.grad(lambda p: double(p)["out"].sum())({"x": m.ones(2), "y": m.ones(2)})
    out["tree_vjp"] = (g["x"].tolist(), g["y"].tolist())

    @double.jvp
    def _dj(p, t):
        return {"out": 2 * p["x"] * t["y"] + 2 * p["y"] * t["x"] + 1}

    out["tree_jvp"] = m.jvp(lambda a, b: double({"x": a, "y": b})["out"],
                            [m.ones(2), m.ones(2)], [m.ones(2), m.ones(2)])[1][0].tolist()
    return out


def test_custom_function_rule_argument_forms():
    got = _custom_rules(mx)
    assert got == {"vjp": 42.0, "jvp": 7.0, "vmap": [3.0, 3.0, 3.0],
                   "tree_vjp": ([0.0, 0.0], [1.0, 1.0]), "tree_jvp": [5.0, 5.0]}
    if mlx is not None:
        assert got == _custom_rules(mlx)


def _inplace_rules(m):
    def scatter_const(x, idx):
        x[idx] = 2.0
        return x.sum()

    def slice_neg_step(a, b):
        a[4:-5:-2] = b
        return a

    def add_in_place(a):
        a += 3 * a
        return a.sum()

    out = {"scatter": m.grad(scatter_const)(m.array([1.0, 2.0, 3.0, 4.0]), m.array([1, 3])).tolist()}
    cot = m.array([1.0, 2.0, 3.0, 4.0])
    _, (ga, gb) = m.vjp(slice_neg_step, (m.ones((4,)), m.zeros((2,))), (cot,))
    out["slice_vjp"] = (ga.tolist(), gb.tolist())
    _, (t,) = m.jvp(slice_neg_step, (m.ones((4,)), m.zeros((2,))), (m.ones((4,)), m.full((2,), 5.0)))
    out["slice_jvp"] = t.tolist()
    out["add_in_place"] = m.grad(add_in_place)(m.ones((3,))).tolist()
    return out


def test_in_place_updates_of_differentiated_arguments():
    got = _inplace_rules(mx)
    assert got["scatter"] == [1.0, 0.0, 1.0, 0.0]  # overwritten slots get no gradient
    assert got["slice_vjp"] == ([1.0, 0.0, 3.0, 0.0], [4.0, 2.0])
    assert got["slice_jvp"] == [1.0, 5.0, 1.0, 5.0]
    assert got["add_in_place"] == [4.0, 4.0, 4.0]
    if mlx is not None:
        assert got == _inplace_rules(mlx)


def test_complex_prod_vjp_agrees_with_multiply():
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((2, 5)) + 1j * rng.standard_normal((2, 5))).astype(np.complex64)
    c = (rng.standard_normal(5) + 1j * rng.standard_normal(5)).astype(np.complex64)
    _, (g,) = mx.vjp(lambda x: x.prod(axis=0), [mx.array(z)], [mx.array(c)])
    np.testing.assert_allclose(np.array(g), np.stack([np.conj(z[1]) * c, np.conj(z[0]) * c]), rtol=1e-5)
    _, gm = mx.vjp(mx.multiply, [mx.array(z[0]), mx.array(z[1])], [mx.array(c)])
    np.testing.assert_allclose(np.array(g), np.stack([np.array(a) for a in gm]), rtol=1e-6)
