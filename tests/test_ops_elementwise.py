"""Elementwise ops (unary, binary, where, clip): forward vs NumPy and MLX,
gradients (both modes, second order), vmap, compile, dtypes and MLX's errors."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import scipy.special as sps

import kiln.core as mx
from harness import OpCase, check_compile, check_forward, check_grads, check_vmap, mlx_core, needs_mlx



# ---------------------------------------------------------------- input domains
def _uniform(lo, hi):
    def gen(rng, shape, dtype):
        return rng.uniform(lo, hi, shape)
    return gen


POS = _uniform(0.5, 2.0)
UNIT = _uniform(-0.9, 0.9)
GT1 = _uniform(1.2, 3.0)


def _away_from_int(rng, shape, dtype):
    # floor/round/remainder are smooth only away from their jumps
    return rng.integers(-5, 5, shape) + rng.uniform(0.2, 0.8, shape)


def _nonzero(rng, shape, dtype):
    v = rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)
    return v


def _small_int(rng, shape, dtype):
    return rng.integers(0, 5, shape)


def _bf16(gen=None):
    def g(rng, shape, dtype):
        v = gen(rng, shape, dtype) if gen is not None else rng.standard_normal(shape)
        return np.asarray(v).astype(ml_dtypes.bfloat16)
    return g


# ---------------------------------------------------------------- unary table
# (name, numpy reference, domain generator, differentiable)
UNARY = [
    ("abs", np.abs, _nonzero, True),
    ("negative", np.negative, None, True),
    ("sign", np.sign, None, False),
    ("square", np.square, None, True),
    ("sqrt", np.sqrt, POS, True),
    ("rsqrt", lambda x: 1 / np.sqrt(x), POS, True),
    ("reciprocal", np.reciprocal, _nonzero, True),
    ("exp", np.exp, None, True),
    ("expm1", np.expm1, None, True),
    ("log", np.log, POS, True),
    ("log2", np.log2, POS, True),
    ("log10", np.log10, POS, True),
    ("log1p", np.log1p, POS, True),
    ("sin", np.sin, None, True),
    ("cos", np.cos, None, True),
    ("tan", np.tan, UNIT, True),
    ("arcsin", np.arcsin, UNIT, True),
    ("arccos", np.arccos, UNIT, True),
    ("arctan", np.arctan, None, True),
    ("sinh", np.sinh, None, True),
    ("cosh", np.cosh, None, True),
    ("tanh", np.tanh, None, True),
    ("arcsinh", np.arcsinh, None, True),
    ("arccosh", np.arccosh, GT1, True),
    ("arctanh", np.arctanh, UNIT, True),
    ("sigmoid", sps.expit, None, True),
    ("erf", sps.erf, None, True),
    ("erfinv", sps.erfinv, UNIT, True),
    ("floor", np.floor, _away_from_int, True),
    ("ceil", np.ceil, _away_from_int, True),
    ("trunc", np.trunc, _away_from_int, True),
    ("round", np.round, _away_from_int, True),
    ("degrees", np.degrees, None, True),
    ("radians", np.radians, None, True),
    ("isnan", np.isnan, None, False),
    ("isinf", np.isinf, None, False),
    ("isfinite", np.isfinite, None, False),
    ("isposinf", np.isposinf, None, False),
    ("isneginf", np.isneginf, None, False),
    ("nan_to_num", np.nan_to_num, None, True),
    ("conj", np.conj, None, True),
    ("real", np.real, None, True),
    ("imag", np.imag, None, True),
    ("logical_not", np.logical_not, None, False),
    ("positive", np.positive, None, True),
]
# aliases must be the same functions
ALIASES = [("acos", "arccos"), ("asin", "arcsin"), ("atan", "arctan"), ("acosh", "arccosh"),
           ("asinh", "arcsinh"), ("atanh", "arctanh"), ("atan2", "arctan2"), ("pow", "power"),
           ("bitwise_left_shift", "left_shift"), ("bitwise_right_shift", "right_shift"),
           ("conjugate", "conj")]

_FLOAT_ONLY = {"erf", "erfinv"}


def _unary_cases():
    cases = []
    for name, ref, gen, diff in UNARY:
        fn = (lambda n: lambda m, x: getattr(m, n)(x))(name)
        cases.append(OpCase(f"{name}", fn, ref, shapes=((2, 3),), gen=gen, grad=diff))
        cases.append(OpCase(f"{name}_0d", fn, ref, shapes=((),), gen=gen, grad=diff, order=1))
        cases.append(OpCase(f"{name}_empty", fn, ref, shapes=((0, 3),), gen=gen, grad=False))
        cases.append(OpCase(f"{name}_T", (lambda n: lambda m, x: getattr(m, n)(x.T))(name),
                            lambda x, r=ref: r(x.T), shapes=((3, 2),), gen=gen, grad=False))
        cases.append(OpCase(f"{name}_f16", fn, lambda x, r=ref: r(x.astype(np.float32)), shapes=((2, 3),),
                            dtypes=("float16",), gen=gen, grad=False, rtol=4e-3, atol=4e-3))
        cases.append(OpCase(f"{name}_bf16",
                            (lambda n: lambda m, x: m.astype(getattr(m, n)(x), m.float32))(name),
                            None, shapes=((2, 3),), gen=_bf16(gen), dtypes=("float32",), grad=False,
                            rtol=2e-2, atol=2e-2))
        if name not in _FLOAT_ONLY:
            cases.append(OpCase(f"{name}_int32", fn, None, shapes=((2, 3),), dtypes=("int32",), grad=False,
                                gen=(lambda rng, s, d: rng.integers(1, 3, s)) if gen is not None else None,
                                rtol=1e-5))
            if name != "negative":  # refused for bool, as MLX (see ERRORS)
                cases.append(OpCase(f"{name}_bool", fn, None, shapes=((2, 3),), dtypes=("bool",), grad=False))
    # parameterised unary ops
    cases += [
        OpCase("round_dec", lambda m, x: m.round(x, 2), lambda x: np.round(x, 2), gen=_uniform(-3, 3),
               grad=False),
        OpCase("round_neg_dec", lambda m, x: m.round(x, -1), lambda x: np.round(x, -1), dtypes=("int32",),
               gen=lambda rng, s, d: rng.integers(-100, 100, s), grad=False),
        OpCase("nan_to_num_args", lambda m, x: m.nan_to_num(m.log(x), nan=1.5, posinf=2.0, neginf=-3.0),
               lambda x: np.nan_to_num(np.log(x), nan=1.5, posinf=2.0, neginf=-3.0),
               gen=lambda rng, s, d: rng.choice([-1.0, 0.0, 1.0, 2.0], s), grad=False),
        OpCase("erf_wide", lambda m, x: m.erf(x), sps.erf, shapes=((50,),), gen=_uniform(-6, 6), rtol=2e-6,
               order=1),
        OpCase("erfinv_tails", lambda m, x: m.erfinv(x), sps.erfinv, shapes=((20,),),
               gen=_uniform(-0.999, 0.999), rtol=2e-5, order=1),
        OpCase("bitwise_invert", lambda m, x: m.bitwise_invert(x), np.invert, dtypes=("int32",), grad=False),
        OpCase("bitwise_invert_u8", lambda m, x: m.bitwise_invert(x), np.invert, dtypes=("uint8",),
               grad=False),
        OpCase("bitwise_invert_bool", lambda m, x: m.bitwise_invert(x), np.invert, dtypes=("bool",),
               grad=False),
        OpCase("invert_op_int", lambda m, x: ~x, np.invert, dtypes=("int32",), grad=False),
        OpCase("invert_op_bool", lambda m, x: ~x, np.invert, dtypes=("bool",), grad=False),
        OpCase("chain", lambda m, x: m.tanh(m.exp(m.sin(x)) * 0.5),
               lambda x: np.tanh(np.exp(np.sin(x)) * 0.5)),
    ]
    return cases


# ---------------------------------------------------------------- binary table
BINARY = [
    ("add", np.add, None, True),
    ("subtract", np.subtract, None, True),
    ("multiply", np.multiply, None, True),
    ("divide", np.divide, _nonzero, True),
    ("floor_divide", lambda a, b: np.floor(a / b), _nonzero, True),
    ("remainder", np.remainder, _away_from_int, True),
    ("power", np.power, POS, True),
    ("maximum", np.maximum, None, True),
    ("minimum", np.minimum, None, True),
    ("arctan2", np.arctan2, _nonzero, True),
    ("logaddexp", np.logaddexp, None, True),
    ("equal", np.equal, None, False),
    ("not_equal", np.not_equal, None, False),
    ("less", np.less, None, False),
    ("less_equal", np.less_equal, None, False),
    ("greater", np.greater, None, False),
    ("greater_equal", np.greater_equal, None, False),
    ("logical_and", np.logical_and, None, False),
    ("logical_or", np.logical_or, None, False),
    ("logical_xor", np.logical_xor, None, False),
]
INT_BINARY = [
    ("bitwise_and", np.bitwise_and), ("bitwise_or", np.bitwise_or), ("bitwise_xor", np.bitwise_xor),
    ("left_shift", np.left_shift), ("right_shift", np.right_shift),
]


def _binary_cases():
    cases = []
    for name, ref, gen, diff in BINARY:
        fn = (lambda n: lambda m, x, y: getattr(m, n)(x, y))(name)
        cases.append(OpCase(name, fn, ref, shapes=((2, 3), (2, 3)), gen=gen, grad=diff))
        cases.append(OpCase(f"{name}_bcast", fn, ref, shapes=((2, 1, 3), (4, 1)), gen=gen, grad=diff,
                            order=1))
        cases.append(OpCase(f"{name}_0d", fn, ref, shapes=((), (3,)), gen=gen, grad=diff, order=1))
        cases.append(OpCase(f"{name}_empty", fn, ref, shapes=((0, 3), (1, 3)), gen=gen, grad=False))
        cases.append(OpCase(f"{name}_f16", fn, lambda x, y, r=ref: r(x.astype(np.float32),
                                                                     y.astype(np.float32)),
                            shapes=((2, 3), (3,)), dtypes=("float16",), gen=gen, grad=False, rtol=4e-3,
                            atol=4e-3))
        cases.append(OpCase(f"{name}_bf16", (lambda n: lambda m, x, y: m.astype(getattr(m, n)(x, y),
                                                                                m.float32))(name),
                            None, shapes=((2, 3), (3,)), gen=_bf16(gen), grad=False, rtol=2e-2, atol=2e-2))
        cases.append(OpCase(f"{name}_int32", fn, None, shapes=((2, 3), (2, 3)), dtypes=("int32",), grad=False,
                            gen=(lambda rng, s, d: rng.integers(1, 4, s)) if gen is not None else None))
        cases.append(OpCase(f"{name}_mixed", fn, None, shapes=((2, 3), (3,)), dtypes=("int32", "float32"),
                            gen=gen, grad=False))
        cases.append(OpCase(f"{name}_scalar", (lambda n: lambda m, x: getattr(m, n)(x, 2))(name),
                            None, shapes=((2, 3),), gen=gen, grad=diff, order=1))
        cases.append(OpCase(f"{name}_rscalar", (lambda n: lambda m, x: getattr(m, n)(1.5, x))(name),
                            None, shapes=((2, 3),), gen=gen, grad=diff, order=1))
    for name, ref in INT_BINARY:
        fn = (lambda n: lambda m, x, y: getattr(m, n)(x, y))(name)
        for dt in ("int32", "uint8", "int64"):
            cases.append(OpCase(f"{name}_{dt}", fn, ref, shapes=((2, 3), (2, 3)), dtypes=(dt,),
                                gen=_small_int,
                                grad=False))
        cases.append(OpCase(f"{name}_bool", fn, None, shapes=((2, 3), (3,)), dtypes=("bool",), grad=False))
        cases.append(OpCase(f"{name}_bcast", fn, ref, shapes=((2, 1, 3), (4, 1)), dtypes=("int32",),
                            gen=_small_int, grad=False))
    cases += [
        OpCase("divmod", lambda m, x, y: m.divmod(x, y), lambda x, y: list(np.divmod(x, y)),
               shapes=((2, 3), (2, 3)), gen=_away_from_int),
        OpCase("divmod_bcast", lambda m, x, y: m.divmod(x, y), lambda x, y: list(np.divmod(x, y)),
               shapes=((2, 3), (3,)), gen=_away_from_int, order=1),
        OpCase("divmod_int", lambda m, x, y: m.divmod(x, y), None, shapes=((2, 3), (2, 3)), dtypes=("int32",),
               gen=lambda rng, s, d: rng.integers(-9, 9, s) * 2 + 1, grad=False),
        OpCase("remainder_int", lambda m, x, y: m.remainder(x, y), np.remainder, dtypes=("int32",),
               shapes=((2, 3), (2, 3)), gen=lambda rng, s, d: rng.integers(-9, 9, s) * 2 + 1, grad=False),
        OpCase("floor_divide_int", lambda m, x, y: x // y, np.floor_divide, dtypes=("int32",),
               shapes=((2, 3), (2, 3)), gen=lambda rng, s, d: rng.integers(-9, 9, s) * 2 + 1, grad=False),
        OpCase("power_int", lambda m, x, y: m.power(x, y), None, dtypes=("int32",), shapes=((2, 3), (2, 3)),
               gen=lambda rng, s, d: rng.integers(-2, 4, s), grad=False),
        OpCase("power_neg_base", lambda m, x: m.power(x, 3.0), lambda x: x ** 3, gen=_nonzero, order=1),
        OpCase("and_op_bool", lambda m, x, y: x & y, np.logical_and, dtypes=("bool",), shapes=((2, 3), (2,
                                                                                                        3)),
               grad=False),
        OpCase("or_op_int", lambda m, x, y: x | y, np.bitwise_or, dtypes=("int32",), shapes=((2, 3), (2, 3)),
               grad=False),
        OpCase("and_op_mixed", lambda m, x, y: x & y, None, dtypes=("int32", "bool"), shapes=((2, 3), (2, 3)),
               grad=False),
        OpCase("xor_op", lambda m, x, y: x ^ y, np.bitwise_xor, dtypes=("int32",), shapes=((2, 3), (2, 3)),
               grad=False),
        OpCase("isclose", lambda m, x, y: m.isclose(x, x + y * 1e-6), None, shapes=((2, 3), (2, 3)),
               grad=False),
        OpCase("isclose_specials", lambda m, x, y: m.isclose(m.log(x), m.log(y), equal_nan=True), None,
               shapes=((8,), (8,)), gen=lambda rng, s, d: rng.choice([-1.0, 0.0, 1.0, 2.0], s), grad=False),
        OpCase("isclose_int", lambda m, x, y: m.isclose(x, y), None, dtypes=("int32",), shapes=((2, 3), (3,)),
               grad=False),
        OpCase("allclose", lambda m, x, y: m.allclose(x, x + y * 1e-9), None, shapes=((2, 3), (2, 3)),
               grad=False, vmap=False),
        OpCase("array_equal", lambda m, x, y: m.array_equal(x, x), None, shapes=((2, 3), (2, 3)), grad=False,
               vmap=False),
        OpCase("array_equal_diff", lambda m, x, y: m.array_equal(x, y), None, shapes=((2, 3), (2, 3)),
               grad=False, vmap=False),
        OpCase("array_equal_nan", lambda m, x: m.array_equal(m.log(x), m.log(x), equal_nan=True), None,
               gen=lambda rng, s, d: rng.choice([-1.0, 1.0], s), grad=False, vmap=False),
        OpCase("array_equal_shape", lambda m, x, y: m.array_equal(x, y), None, shapes=((2, 3), (3,)),
               grad=False, vmap=False, compile=False),
        # where / clip
        OpCase("where", lambda m, c, x, y: m.where(c > 0, x, y), lambda c, x, y: np.where(c > 0, x, y),
               shapes=((2, 3), (2, 3), (2, 3)), grad_argnums=(1, 2)),
        OpCase("where_bcast", lambda m, c, x, y: m.where(c > 0, x, y), lambda c, x, y: np.where(c > 0, x, y),
               shapes=((2, 1, 3), (4, 1), (3,)), grad_argnums=(1, 2), order=1),
        OpCase("where_scalars", lambda m, c: m.where(c > 0, 1, 2.0), lambda c: np.where(c > 0, 1, 2.0)
               .astype(np.float32), shapes=((2, 3),), grad=False),
        OpCase("where_int_cond", lambda m, c, x: m.where(c, x, 3), None, shapes=((2, 3), (2, 3)),
               dtypes=("int32", "int8"), gen=lambda rng, s, d: rng.integers(0, 2, s), grad=False),
        OpCase("clip", lambda m, x: m.clip(x, -0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7)),
        OpCase("clip_none", lambda m, x: m.clip(x, None, 0.2), lambda x: np.clip(x, None, 0.2)),
        OpCase("clip_arrays", lambda m, x, lo, hi: m.clip(x, lo, hi + 2),
               lambda x, lo, hi: np.clip(x, lo, hi + 2), shapes=((2, 3), (3,), (2, 1))),
        OpCase("clip_int_float", lambda m, x: m.clip(x, 1.5, 2.5), None, dtypes=("int32",),
               gen=lambda rng, s, d: rng.integers(0, 4, s), grad=False),
    ]
    return cases


CASES = _unary_cases() + _binary_cases()
GRAD_CASES = [c for c in CASES if c.grad and "_empty" not in c.name]
VMAP_CASES = [c for c in CASES if c.vmap and not c.name.endswith(("_empty", "_bf16", "_f16", "_T"))]
COMPILE_CASES = [c for c in CASES if c.compile and c.name.endswith(("_0d",)) or c.name in ("chain", "where",
                                                                                            "clip", "divmod")]


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


def test_aliases():
    for alias, name in ALIASES:
        assert getattr(mx, alias) is getattr(mx, name), alias


# ---------------------------------------------------------------- dtypes vs MLX
DTYPES = ["bool_", "uint8", "int8", "int16", "int32", "uint32", "int64", "float16", "bfloat16", "float32",
          "complex64"]


def _outcome(f):
    try:
        return str(f().dtype).rsplit(".", 1)[-1]
    except Exception as e:  # noqa: BLE001 - we compare exception types with MLX
        return type(e).__name__


@needs_mlx
@pytest.mark.parametrize("name", [u[0] for u in UNARY] + ["bitwise_invert"])
def test_unary_dtypes_match_mlx(name):
    for dt in DTYPES:
        want = _outcome(lambda: getattr(mlx_core, name)(mlx_core.array([1, 0], getattr(mlx_core, dt))))
        got = _outcome(lambda: getattr(mx, name)(mx.array([1, 0], getattr(mx, dt))))
        assert got == want, (name, dt)


@needs_mlx
@pytest.mark.parametrize("name", [b[0] for b in BINARY] + [b[0] for b in INT_BINARY] + ["divmod"])
def test_binary_dtypes_match_mlx(name):
    for da in ("bool_", "uint8", "int32", "float16", "bfloat16", "float32", "complex64"):
        for db in ("int32", "float16", "float32"):
            def run(m):
                out = getattr(m, name)(m.array([1, 2], getattr(m, da)), m.array([1, 2], getattr(m, db)))
                return out[0] if isinstance(out, list) else out
            assert _outcome(lambda: run(mx)) == _outcome(lambda: run(mlx_core)), (name, da, db)


# ---------------------------------------------------------------- errors vs MLX
ERRORS = [
    lambda m: m.negative(m.array([True])),
    lambda m: m.bitwise_invert(m.array([1.0])),
    lambda m: ~m.array([1.0]),
    lambda m: m.array([1.0]) & m.array([1.0]),
    lambda m: m.array([1.0]) | m.array([1.0]),
    lambda m: m.bitwise_and(m.array([1.0]), m.array([2.0])),
    lambda m: m.left_shift(m.array([1.0]), 1),
    lambda m: m.add(m.array([1, 2]), m.array([1, 2, 3])),
    lambda m: m.where(m.array([True]), m.array([1, 2]), m.array([1, 2, 3])),
    lambda m: m.clip(m.array([1.0]), None, None),
    lambda m: m.remainder(m.array([1j]), m.array([1j])),
    lambda m: m.divmod(m.array([1j]), m.array([1j])),
    lambda m: m.arctan2(m.array([1j]), m.array([1j])),
    lambda m: m.erf(m.array([1j])),
    lambda m: m.expm1(m.array([1j])),
    lambda m: m.floor(m.array([1j])),
    lambda m: m.nan_to_num(m.array([1j])),
    lambda m: m.round(m.array([1.0]), 1.5),
]


@needs_mlx
@pytest.mark.parametrize("k", range(len(ERRORS)))
def test_errors_match_mlx(k):
    f = ERRORS[k]
    with pytest.raises(Exception) as want:
        f(mlx_core)
    with pytest.raises(want.type):
        f(mx)


def test_error_names_op():
    with pytest.raises(ValueError, match=r"\[negative\]"):
        mx.negative(mx.array([True]))
    with pytest.raises(RuntimeError, match=r"\[bitwise_and\]"):
        mx.bitwise_and(mx.array([1.0]), 2)


# ---------------------------------------------------------------- rules MLX lacks or gets wrong
def test_maximum_minimum_ties_split_gradient():
    x = mx.array([1.0, 2.0, 3.0])
    y = mx.array([1.0, 5.0, 3.0])
    gx, gy = mx.grad(lambda a, b: mx.sum(mx.maximum(a, b)), argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(np.array(gx), [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(np.array(gy), [0.5, 1.0, 0.5])
    gx, gy = mx.grad(lambda a, b: mx.sum(mx.minimum(a, b)), argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(np.array(gx), [0.5, 1.0, 0.5])
    np.testing.assert_array_equal(np.array(gy), [0.5, 0.0, 0.5])


def _divmod_loss(a, b):
    q, r = mx.divmod(a, b)
    return mx.sum(q + r * 3)


def test_divmod_both_outputs_differentiate():
    x = mx.array([5.5, -3.25], dtype=mx.float64)
    y = mx.array([2.0, 1.5], dtype=mx.float64)
    gx, gy = mx.grad(_divmod_loss, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(np.array(gx), [3.0, 3.0])
    np.testing.assert_allclose(np.array(gy), -3 * np.floor(np.array(x) / np.array(y)))
    _, t = mx.jvp(_divmod_loss, [x, y], [mx.ones(2, mx.float64), mx.zeros(2, mx.float64)])
    np.testing.assert_allclose(float(t[0].item()), 6.0)


def test_where_gradient_goes_to_selected_branch():
    c = mx.array([True, False, True])
    gx, gy = mx.grad(lambda a, b: mx.sum(mx.where(c, a, b) * 2), argnums=(0, 1))(mx.ones(3), mx.ones(3))
    np.testing.assert_array_equal(np.array(gx), [2, 0, 2])
    np.testing.assert_array_equal(np.array(gy), [0, 2, 0])


def test_vmap_unbatched_operand_int_ops():
    x = mx.array(np.arange(12, dtype=np.int32).reshape(3, 4))
    y = mx.array(np.array([1, 2, 3, 4], dtype=np.int32))
    for name in ("bitwise_and", "bitwise_or", "bitwise_xor", "not_equal", "left_shift"):
        got = mx.vmap(lambda a, b, n=name: getattr(mx, n)(a, b), in_axes=(0, None))(x, y)
        want = getattr(np, name)(np.array(x), np.array(y))
        np.testing.assert_array_equal(np.array(got), want)
        got = mx.vmap(lambda a, b, n=name: getattr(mx, n)(b, a), in_axes=(1, None))(x, y[:3])
        want = getattr(np, name)(np.array(y[:3])[None, :], np.array(x).T)
        np.testing.assert_array_equal(np.array(got), want)


# ---------------------------------------------------------------- erf accuracy (xp only, vs scipy)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-13), (np.float32, 2e-6)])
def test_erf_accuracy(dtype, rtol):
    x = np.concatenate([np.linspace(-7, 7, 2001), [0.0, 1e-30, -1e-8, np.inf, -np.inf]]).astype(dtype)
    got = np.array(mx.erf(mx.array(x, dtype=mx.float64 if dtype == np.float64 else mx.float32)))
    np.testing.assert_allclose(got, sps.erf(x.astype(np.float64)), rtol=rtol, atol=1e-300)
    assert np.isnan(np.array(mx.erf(mx.array([np.nan]))))[0]


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-11), (np.float32, 3e-6)])
def test_erfinv_accuracy(dtype, rtol):
    y = np.concatenate([np.linspace(-0.999999, 0.999999, 2001), [0.0, 1e-12, 0.9999999]]).astype(dtype)
    got = np.array(mx.erfinv(mx.array(y, dtype=mx.float64 if dtype == np.float64 else mx.float32)))
    np.testing.assert_allclose(got, sps.erfinv(y.astype(np.float64)), rtol=rtol, atol=1e-12)
    edge = np.array(mx.erfinv(mx.array([1.0, -1.0, 1.5, -2.0])))
    assert edge[0] == np.inf and edge[1] == -np.inf and np.isnan(edge[2:]).all()


def test_no_write_into_inputs():
    buf = np.arange(6, dtype=np.float32).reshape(2, 3)
    a = mx.array(buf)
    before = np.array(a).copy()
    mx.eval(mx.cumsum(a, 1), mx.sort(a), mx.exp(a), mx.maximum(a, 1))
    np.testing.assert_array_equal(np.array(a), before)
