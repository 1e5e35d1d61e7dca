import itertools

import numpy as np
import pytest

import kiln.core as mx
from harness import mlx_core, needs_mlx

NAMES = ["bool_", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
         "float16", "bfloat16", "float32", "float64", "complex64"]


@needs_mlx
@pytest.mark.parametrize("a,b", list(itertools.product(NAMES, NAMES)))
def test_promotion_matches_mlx(a, b):
    ka, kb = getattr(mx, a), getattr(mx, b)
    ma, mb = getattr(mlx_core, a), getattr(mlx_core, b)
    want = (mlx_core.zeros((1,), ma) + mlx_core.zeros((1,), mb)).dtype
    got = (mx.zeros((1,), ka) + mx.zeros((1,), kb)).dtype
    assert got.name == str(want).rsplit(".", 1)[-1]


@needs_mlx
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scalar", [True, 2, 2.5, 1j])
def test_weak_scalars_match_mlx(name, scalar):
    got = (mx.zeros((2,), getattr(mx, name)) + scalar).dtype
    want = (mlx_core.zeros((2,), getattr(mlx_core, name)) + scalar).dtype
    assert got.name == str(want).rsplit(".", 1)[-1]


def test_names_sizes_and_repr():
    assert repr(mx.float32) == "kiln.core.float32"
    assert str(mx.bool_) == "kiln.core.bool"
    assert mx.float16.size == 2 and mx.complex64.size == 8 and mx.bfloat16.size == 2
    assert repr(mx.floating) == "DtypeCategory.floating"


@pytest.mark.parametrize("d,cat,want", [
    ("float32", "floating", True), ("float32", "inexact", True), ("float32", "number", True),
    ("int32", "signedinteger", True), ("int32", "integer", True), ("uint8", "signedinteger", False),
    ("uint8", "unsignedinteger", True), ("bool_", "integer", False), ("bool_", "generic", True),
    ("complex64", "inexact", True), ("complex64", "floating", False), ("float16", "float16", True),
])
def test_issubdtype(d, cat, want):
    assert mx.issubdtype(getattr(mx, d), getattr(mx, cat)) is want
    if mlx_core is not None:
        assert mlx_core.issubdtype(getattr(mlx_core, d), getattr(mlx_core, cat)) is want


def test_category_lattice():
    assert mx.issubdtype(mx.floating, mx.inexact)
    assert mx.issubdtype(mx.integer, mx.number)
    assert not mx.issubdtype(mx.inexact, mx.integer)


@needs_mlx
@pytest.mark.parametrize("name", ["float16", "bfloat16", "float32", "float64"])
def test_finfo(name):
    k, m = mx.finfo(getattr(mx, name)), mlx_core.finfo(getattr(mlx_core, name))
    assert (k.min, k.max, k.eps) == (m.min, m.max, m.eps)
    assert repr(k) == repr(m)


@needs_mlx
@pytest.mark.parametrize("name", ["uint8", "int16", "int32", "int64", "uint64"])
def test_iinfo(name):
    k, m = mx.iinfo(getattr(mx, name)), mlx_core.iinfo(getattr(mlx_core, name))
    assert (k.min, k.max) == (m.min, m.max)
    assert repr(k) == repr(m)


def test_finfo_rejects_ints():
    with pytest.raises(ValueError):
        mx.finfo(mx.int32)
    with pytest.raises(ValueError):
        mx.iinfo(mx.float32)


def test_numpy_dtype_roundtrip():
    for name in NAMES:
        d = getattr(mx, name)
        x = mx.zeros((2,), d)
        assert np.array(x).dtype == d.np
