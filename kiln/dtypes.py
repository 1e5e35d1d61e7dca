"""Dtypes, dtype categories, promotion, ``finfo``/``iinfo`` and ``issubdtype``.

A :class:`Dtype` wraps a NumPy dtype (bfloat16 comes from ``ml_dtypes``) and
knows its MLX name and category. Promotion follows MLX's table exactly
(checked against the real MLX in ``tests/test_dtypes.py``).
"""
from __future__ import annotations

import enum

import ml_dtypes
import numpy as np


class DtypeCategory(enum.Enum):
    """Abstract dtype categories, as in MLX (``mx.floating``, ...)."""

    complexfloating = 0
    floating = 1
    inexact = 2
    signedinteger = 3
    unsignedinteger = 4
    integer = 5
    number = 6
    generic = 7

    def __repr__(self) -> str:
        return f"DtypeCategory.{self.name}"

    __str__ = __repr__


# Parent of each category in the category lattice.
_CATEGORY_PARENT = {
    DtypeCategory.complexfloating: DtypeCategory.inexact,
    DtypeCategory.floating: DtypeCategory.inexact,
    DtypeCategory.inexact: DtypeCategory.number,
    DtypeCategory.signedinteger: DtypeCategory.integer,
    DtypeCategory.unsignedinteger: DtypeCategory.integer,
    DtypeCategory.integer: DtypeCategory.number,
    DtypeCategory.number: DtypeCategory.generic,
    DtypeCategory.generic: None,
}


class Dtype:
    """An array element type: ``kiln.core.float32`` and friends."""

    __slots__ = ("name", "size", "np", "category", "kind", "_rank")

    def __init__(self, name: str, npdtype, category: DtypeCategory | None, kind: str, rank: int):
        self.name = name
        self.np = np.dtype(npdtype)
        self.size = self.np.itemsize
        self.category = category
        self.kind = kind  # 'b', 'u', 'i', 'f', 'c'
        self._rank = rank

    def __repr__(self) -> str:
        return f"kiln.core.{self.name}"

    __str__ = __repr__

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other) -> bool:
        return self is other

    def __reduce__(self):
        return (_dtype_by_name, (self.name,))

    @property
    def is_floating(self) -> bool:
        return self.kind == "f"

    @property
    def is_inexact(self) -> bool:
        return self.kind in "fc"

    @property
    def is_integer(self) -> bool:
        return self.kind in "ui"


C = DtypeCategory
bool_ = Dtype("bool", np.bool_, None, "b", 0)
uint8 = Dtype("uint8", np.uint8, C.unsignedinteger, "u", 1)
uint16 = Dtype("uint16", np.uint16, C.unsignedinteger, "u", 2)
uint32 = Dtype("uint32", np.uint32, C.unsignedinteger, "u", 3)
uint64 = Dtype("uint64", np.uint64, C.unsignedinteger, "u", 4)
int8 = Dtype("int8", np.int8, C.signedinteger, "i", 1)
int16 = Dtype("int16", np.int16, C.signedinteger, "i", 2)
int32 = Dtype("int32", np.int32, C.signedinteger, "i", 3)
int64 = Dtype("int64", np.int64, C.signedinteger, "i", 4)
float16 = Dtype("float16", np.float16, C.floating, "f", 1)
bfloat16 = Dtype("bfloat16", ml_dtypes.bfloat16, C.floating, "f", 1)
float32 = Dtype("float32", np.float32, C.floating, "f", 2)
float64 = Dtype("float64", np.float64, C.floating, "f", 3)
complex64 = Dtype("complex64", np.complex64, C.complexfloating, "c", 4)

complexfloating = C.complexfloating
floating = C.floating
inexact = C.inexact
signedinteger = C.signedinteger
unsignedinteger = C.unsignedinteger
integer = C.integer
number = C.number
generic = C.generic

ALL_DTYPES = (bool_, uint8, uint16, uint32, uint64, int8, int16, int32, int64,
              float16, bfloat16, float32, float64, complex64)
_BY_NAME = {d.name: d for d in ALL_DTYPES}
_BY_NP = {d.np: d for d in ALL_DTYPES}


def _dtype_by_name(name: str) -> Dtype:
    return _BY_NAME[name]


def from_numpy(npdtype) -> Dtype:
    """The kiln dtype for a NumPy dtype (float64 stays float64)."""
    d = _BY_NP.get(np.dtype(npdtype))
    if d is None:
        raise TypeError(f"[array] Unsupported NumPy dtype {np.dtype(npdtype)}.")
    return d


def _promote_pair(a: Dtype, b: Dtype) -> Dtype:
    if a is b:
        return a
    ka, kb = a.kind, b.kind
    if ka == "b":
        return b
    if kb == "b":
        return a
    if ka == "c" or kb == "c":
        return complex64
    if ka == "f" or kb == "f":
        if ka == "f" and kb == "f":
            if {a, b} == {float16, bfloat16}:
                return float32
            return a if a._rank >= b._rank else b
        return a if ka == "f" else b  # a float beats any integer
    if ka == kb:  # both signed or both unsigned
        return a if a._rank >= b._rank else b
    u, s = (a, b) if ka == "u" else (b, a)
    if u is uint64:
        return float32
    if s._rank > u._rank:
        return s
    return (int16, int32, int64)[u._rank - 1]


_PROMOTE = {(a, b): _promote_pair(a, b) for a in ALL_DTYPES for b in ALL_DTYPES}


def promote_types(a: Dtype, b: Dtype) -> Dtype:
    """The dtype two arrays of dtypes ``a`` and ``b`` combine to, as in MLX."""
    return _PROMOTE[(a, b)]


def issubdtype(a, b) -> bool:
    """Whether ``a`` (a dtype or category) is ``b`` or falls under category ``b``."""
    if isinstance(b, Dtype):
        return a is b
    if isinstance(a, Dtype):
        if a is bool_:
            return b is DtypeCategory.generic
        cat = a.category
    else:
        cat = a
    while cat is not None:
        if cat is b:
            return True
        cat = _CATEGORY_PARENT[cat]
    return False


class finfo:
    """Machine limits of a floating-point dtype."""

    def __init__(self, dtype):
        dtype = as_dtype(dtype)
        if not dtype.is_inexact:
            raise ValueError(f"[finfo] dtype {dtype} is not inexact.")
        self.dtype = dtype
        info = ml_dtypes.finfo(dtype.np) if dtype is bfloat16 else np.finfo(dtype.np)
        self.min = float(info.min)
        self.max = float(info.max)
        self.eps = float(info.eps)
        self.smallest_normal = float(info.smallest_normal)
        self.bits = int(info.bits)

    def __repr__(self) -> str:
        return f"finfo(min={self.min:g}, max={self.max:g}, dtype={self.dtype.name})"


class iinfo:
    """Limits of an integer dtype."""

    def __init__(self, dtype):
        dtype = as_dtype(dtype)
        if not dtype.is_integer:
            raise ValueError(f"[iinfo] dtype {dtype} is not integral.")
        self.dtype = dtype
        info = np.iinfo(dtype.np)
        self.min = int(info.min)
        self.max = int(info.max)
        self.bits = int(info.bits)

    def __repr__(self) -> str:
        return f"iinfo(min={self.min}, max={self.max}, dtype={self.dtype.name})"


def as_dtype(d) -> Dtype:
    """Accept a kiln Dtype, a NumPy dtype/type, or a dtype name."""
    if isinstance(d, Dtype):
        return d
    if isinstance(d, str):
        if d in _BY_NAME:
            return _BY_NAME[d]
        if d == "bool_":
            return bool_
    try:
        return from_numpy(np.dtype(d))
    except TypeError:
        pass
    mod = type(d).__module__
    if mod.startswith("mlx"):  # an mlx.core.Dtype
        return _BY_NAME[str(d).rsplit(".", 1)[-1]]
    raise TypeError(f"Cannot interpret {d!r} as a kiln dtype.")
