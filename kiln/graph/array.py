"""The array: a node of the lazy graph, and the user-facing array type.

An array holds its shape, dtype, the primitive that makes it and that
primitive's inputs (or none for a leaf), its stream, and once computed its
buffer (a ``numpy.ndarray`` or ``cupy.ndarray``). ``_make`` is the hot path
every op ends in: it only fills slots.
"""
from __future__ import annotations

import sys

import numpy as np

from kiln import _tree
from kiln import dtypes as _dt
from kiln.device import current_stream, memory, resolve_stream
from kiln.graph import rebind as _rebind
from kiln.graph.eval import eval_arrays

_o = None  # the kiln.core namespace, set by kiln/core/__init__.py (ops live there)


class array:
    """An N-dimensional lazy array."""

    __slots__ = ("_shape", "_dtype", "_prim", "_inputs", "_sibs", "_pos", "_buf", "_stream", "_nb",
                 "__weakref__")
    __array_priority__ = 100  # NumPy defers binary operators to us

    def __init__(self, val, dtype=None):
        self._nb = 0
        if isinstance(val, array):
            src = val if dtype is None else _o.astype(val, dtype)
            _rebind.copy_slots(self, src)
            if self._buf is not None:
                self._nb = 0  # shares the other array's buffer
            return
        buf, dt = _to_buffer(val, dtype)
        self._shape = tuple(buf.shape)
        self._dtype = dt
        self._prim = None
        self._inputs = ()
        self._sibs = None
        self._buf = buf
        self._stream = current_stream()
        self._nb = _count(buf)

    def __del__(self):
        nb = self._nb
        if nb:
            memory.active -= nb

    # ------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple:
        """The array's shape, a tuple of ints."""
        return self._shape

    @property
    def dtype(self):
        """The array's element type."""
        return self._dtype

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self._shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        n = 1
        for s in self._shape:
            n *= s
        return n

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return self._dtype.size

    @property
    def nbytes(self) -> int:
        """Bytes of the whole array."""
        return self.size * self._dtype.size

    @property
    def T(self):
        """The array with its axes reversed."""
        return _o.transpose(self)

    @property
    def at(self):
        """Accumulating updates: ``x.at[idx].add(v)`` and friends."""
        return _o._AtIndexer(self)

    # ------------------------------------------------------------ evaluation
    def _data(self):
        """This array's buffer, computing it if needed."""
        if self._buf is None:
            eval_arrays([self])
        return self._buf

    def _host(self):
        buf = self._data()
        if self._stream.device.type.name != "cpu":
            from kiln.backend import get_backend

            return get_backend(self._stream.device.type).to_host(buf)
        return buf

    def item(self):
        """The value of a one-element array as a Python scalar."""
        if self.size != 1:
            raise ValueError("[item] Only one-element arrays can be converted to Python scalars.")
        v = np.asarray(self._host()).reshape(())
        return _py_scalar(v, self._dtype)

    def tolist(self):
        """The array as nested Python lists of Python scalars."""
        h = np.asarray(self._host())
        if self._dtype is _dt.bfloat16:
            h = h.astype(np.float32)
        return h.tolist()

    def __array__(self, dtype=None, copy=None):
        h = np.asarray(self._host())
        if h.flags.writeable:
            h = h.view()
            h.flags.writeable = False  # buffers are shared; never let NumPy write them
        if dtype is not None and np.dtype(dtype) != h.dtype:
            return h.astype(dtype)
        if copy:
            return h.copy()
        return h

    def __dlpack__(self, *args, **kwargs):
        buf = self._data()
        if self._stream.device.type.name == "cpu" or isinstance(buf, (np.ndarray, np.generic)):
            buf = np.asarray(buf)  # NumPy scalars have no __dlpack__
            if not buf.flags.c_contiguous:
                buf = np.ascontiguousarray(buf)  # (never on 0-d: it would make shape (1,))
        return buf.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        buf = self._data()
        return (np.asarray(buf) if isinstance(buf, np.generic) else buf).__dlpack_device__()

    def __buffer__(self, flags):
        # NumPy (on Python >= 3.12) converts through this before __array__;
        # ascontiguousarray would turn a 0-d buffer into shape (1,).
        h = np.asarray(self._host())
        return memoryview(h if h.flags.c_contiguous else np.ascontiguousarray(h))

    def __bool__(self) -> bool:
        if self.size != 1:
            raise ValueError("The truth value of an array with more than one element is ambiguous.")
        return bool(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __complex__(self) -> complex:
        return complex(self.item())

    def __index__(self) -> int:
        if not self._dtype.is_integer:
            raise TypeError("Only integer arrays can be used as an index.")
        return int(self.item())

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() 0-dimensional array.")
        return self._shape[0]

    def __iter__(self):
        if not self._shape:
            raise TypeError("iteration over a 0-d array.")
        for i in range(self._shape[0]):
            yield self[i]

    def __repr__(self) -> str:
        from kiln.graph.printing import format_array

        return format_array(self)

    __str__ = __repr__

    def __hash__(self) -> int:
        return id(self)

    def __copy__(self):
        return array(self)

    def __deepcopy__(self, memo):
        return array(self)

    def __reduce__(self):
        return (_rebuild, (np.array(self._host()), self._dtype.name))

    def __format__(self, spec):
        if spec and self.size == 1:
            return format(self.item(), spec)
        return repr(self)

    # ------------------------------------------------------------ conversion
    def astype(self, dtype, stream=None):
        """The array cast to ``dtype``."""
        return _o.astype(self, dtype, stream=stream)

    def view(self, dtype, stream=None):
        """The same bytes reinterpreted as ``dtype``."""
        return _o.view(self, dtype, stream=stream)

    # ------------------------------------------------------------ operators
    def __add__(self, o): return _o.add(self, o)
    def __radd__(self, o): return _o.add(o, self)
    def __sub__(self, o): return _o.subtract(self, o)
    def __rsub__(self, o): return _o.subtract(o, self)
    def __mul__(self, o): return _o.multiply(self, o)
    def __rmul__(self, o): return _o.multiply(o, self)
    def __truediv__(self, o): return _o.divide(self, o)
    def __rtruediv__(self, o): return _o.divide(o, self)
    def __floordiv__(self, o): return _o.floor_divide(self, o)
    def __rfloordiv__(self, o): return _o.floor_divide(o, self)
    def __mod__(self, o): return _o.remainder(self, o)
    def __rmod__(self, o): return _o.remainder(o, self)
    def __divmod__(self, o): return _o.divmod(self, o)
    def __rdivmod__(self, o): return _o.divmod(o, self)
    def __pow__(self, o): return _o.power(self, o)
    def __rpow__(self, o): return _o.power(o, self)
    def __matmul__(self, o): return _o.matmul(self, o)
    def __rmatmul__(self, o): return _o.matmul(o, self)
    def __and__(self, o): return _o._and_op(self, o)
    def __rand__(self, o): return _o._and_op(o, self)
    def __or__(self, o): return _o._or_op(self, o)
    def __ror__(self, o): return _o._or_op(o, self)
    def __xor__(self, o): return _o.bitwise_xor(self, o)
    def __rxor__(self, o): return _o.bitwise_xor(o, self)
    def __lshift__(self, o): return _o.left_shift(self, o)
    def __rlshift__(self, o): return _o.left_shift(o, self)
    def __rshift__(self, o): return _o.right_shift(self, o)
    def __rrshift__(self, o): return _o.right_shift(o, self)
    def __lt__(self, o): return _o.less(self, o)
    def __le__(self, o): return _o.less_equal(self, o)
    def __gt__(self, o): return _o.greater(self, o)
    def __ge__(self, o): return _o.greater_equal(self, o)
    def __eq__(self, o): return _o.equal(self, o)
    def __ne__(self, o): return _o.not_equal(self, o)
    def __neg__(self): return _o.negative(self)
    def __pos__(self): return self
    def __abs__(self): return _o.abs(self)
    def __invert__(self): return _o._invert_op(self)

    # In-place forms rebind this array object to the result, as MLX does
    # (aliases see the new value; lazy consumers keep the old one).
    def __iadd__(self, o): return self._update(_o.add, o)
    def __isub__(self, o): return self._update(_o.subtract, o)
    def __imul__(self, o): return self._update(_o.multiply, o)
    def __itruediv__(self, o): return self._update(_o.divide, o)
    def __ifloordiv__(self, o): return self._update(_o.floor_divide, o)
    def __imod__(self, o): return self._update(_o.remainder, o)
    def __ipow__(self, o): return self._update(_o.power, o)
    def __imatmul__(self, o): return self._update(_o.matmul, o)
    def __iand__(self, o): return self._update(_o._and_op, o)
    def __ior__(self, o): return self._update(_o._or_op, o)
    def __ixor__(self, o): return self._update(_o.bitwise_xor, o)
    def __ilshift__(self, o): return self._update(_o.left_shift, o)
    def __irshift__(self, o): return self._update(_o.right_shift, o)

    def __getitem__(self, idx):
        return _o._getitem(self, idx)

    def __setitem__(self, idx, value):
        # sys.getrefcount here: what the caller's one variable plus this frame hold (see rebind).
        shared = sys.getrefcount(self) > _rebind.base_refs
        old = _rebind.clone(self)
        new = _o._setitem(old, idx, value)
        _rebind.rebind(self, old, new, shared)

    def _update(self, op, other):
        shared = sys.getrefcount(self) > _rebind.base_refs + 1  # one more frame than __setitem__
        old = _rebind.clone(self)
        new = op(old, other)
        if new._shape != self._shape or new._dtype is not self._dtype:
            # Python rebinds the name to the returned object; no aliasing to keep.
            return new
        _rebind.rebind(self, old, new, shared)
        return self


def _rebuild(data, dtype_name):
    return array(data, _dt._dtype_by_name(dtype_name))


# ---------------------------------------------------------------- node making
_new = object.__new__


def _make(shape: tuple, dtype, prim, inputs: tuple, stream) -> array:
    """Build one node. The op has already validated and normalised everything."""
    a = _new(array)
    a._shape = shape
    a._dtype = dtype
    a._prim = prim
    a._inputs = inputs
    a._sibs = None
    a._buf = None
    a._stream = stream
    a._nb = 0
    return a


def _make_multi(shapes, dtypes, prim, inputs: tuple, stream) -> list:
    """Build the output nodes of a primitive with several outputs."""
    outs = []
    for k, (s, d) in enumerate(zip(shapes, dtypes)):
        a = _make(tuple(s), d, prim, inputs, stream)
        a._pos = k
        outs.append(a)
    sibs = tuple(outs)
    for a in outs:
        a._sibs = sibs
    return outs


def _leaf(buf, dtype, stream=None) -> array:
    """An evaluated array around an existing buffer (never copied or written)."""
    a = _new(array)
    a._shape = tuple(buf.shape)
    a._dtype = dtype
    a._prim = None
    a._inputs = ()
    a._sibs = None
    a._buf = buf
    a._stream = stream if stream is not None else current_stream()
    a._nb = _count(buf)
    return a


def _count(buf) -> int:
    nb = buf.nbytes if getattr(buf, "base", None) is None else 0
    if nb:
        memory.active += nb
        if memory.active > memory.peak:
            memory.peak = memory.active
    return nb


# ---------------------------------------------------------------- conversion
def _py_scalar(v, dtype):
    if dtype is _dt.bfloat16:
        return float(v)
    return v.item()


def _int_dtype_for(arr: np.ndarray):
    if arr.size == 0:
        return _dt.int32
    lo, hi = int(arr.min()), int(arr.max())
    if -(2**31) <= lo and hi < 2**31:
        return _dt.int32
    return _dt.int64


def _to_buffer(val, dtype):
    """A NumPy buffer and kiln dtype for Python/NumPy/buffer-protocol data."""
    want = _dt.as_dtype(dtype) if dtype is not None else None
    if isinstance(val, np.ndarray) or isinstance(val, np.generic):
        arr = np.asarray(val)
        if arr.dtype == np.complex128:
            arr = arr.astype(np.complex64)
        dt = _dt.from_numpy(arr.dtype) if arr.dtype in _dt._BY_NP else None
        if dt is None:
            raise TypeError(f"[array] Unsupported NumPy dtype {arr.dtype}.")
        if want is None:
            if dt is _dt.float64:
                dt = _dt.float32  # as MLX: float64 NumPy data becomes float32
        else:
            dt = want
        return np.array(arr, dtype=dt.np, copy=True), dt
    if isinstance(val, bool):
        dt = want or _dt.bool_
        return np.array(val, dtype=dt.np), dt
    if isinstance(val, int):
        if want is None:
            want = _dt.int32 if -(2**31) <= val < 2**31 else _dt.int64
        try:
            return np.array(val, dtype=want.np), want
        except OverflowError:
            raise ValueError(f"[array] Integer {val} does not fit in {want}.") from None
    if isinstance(val, float):
        dt = want or _dt.float32
        return np.array(val, dtype=dt.np), dt
    if isinstance(val, complex):
        dt = want or _dt.complex64
        return np.array(val, dtype=dt.np), dt
    if isinstance(val, (list, tuple)):
        try:
            arr = np.array(val)
        except ValueError:
            raise ValueError("Initialization encountered non-uniform length.") from None
        if arr.dtype == object:
            raise ValueError("Initialization encountered non-uniform length.")
        if want is not None:
            dt = want
        elif arr.dtype.kind == "b":
            dt = _dt.bool_
        elif arr.dtype.kind in "iu":
            dt = _int_dtype_for(arr) if _all_python(val) else _dt.from_numpy(arr.dtype)
        elif arr.dtype.kind == "f":
            dt = _dt.float32 if arr.dtype == np.float64 else _dt.from_numpy(arr.dtype)
        elif arr.dtype.kind == "c":
            dt = _dt.complex64
        else:
            raise TypeError(f"[array] Cannot make an array from a list of {arr.dtype}.")
        return np.asarray(arr, dtype=dt.np), dt
    if hasattr(val, "__dlpack__") and not hasattr(val, "__array__"):
        return _to_buffer(np.from_dlpack(val), dtype)
    if hasattr(val, "__array__") or hasattr(val, "__array_interface__"):
        return _to_buffer(np.asarray(val), dtype)
    try:
        mv = memoryview(val)
    except TypeError:
        raise TypeError(f"[array] Cannot convert an object of type {type(val).__name__} to an array.") from None
    return _to_buffer(np.asarray(mv), dtype)


def _all_python(val) -> bool:
    """Whether a nested list holds only Python scalars (so ints infer int32)."""
    stack = [val]
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, np.generic) or isinstance(v, np.ndarray):
            return False
    return True


def stream_of(stream):
    return resolve_stream(stream)


_tree.register_leaf(array)  # flatten's leaves (the tree floor knows no kiln type)
