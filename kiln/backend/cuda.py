"""The CUDA backend: CuPy on an NVIDIA GPU.

Primitives compute with ``xp``, which here is a namespace holding all of
CuPy plus small shims for the few NumPy features primitives use and CuPy
lacks (``ufunc.at``, ``ufunc.accumulate``, ``put_along_axis``, ``sort``'s
``kind=``). ``overrides`` replaces a primitive's eval only where the GPU
wants a different kernel (native half-precision GEMMs, CuPy's erf) or where
a dtype cannot live on the GPU (bfloat16, see below).

bfloat16: CuPy has no bfloat16 dtype, and emulating it (uint16 storage,
float32 compute) would need every primitive to know about the trick. kiln
therefore refuses bfloat16 on the GPU with a clear TypeError (when such a
buffer would be moved to the GPU or produced there); bfloat16 works on
``mx.cpu``.

Importing this module never fails and never touches the GPU: CuPy is
imported lazily by :func:`available`, and everything else is built the first
time the backend is used (``get_backend(mx.gpu)`` checks ``available()``
first).
"""
from __future__ import annotations

import types
import weakref

import numpy as np

name = "gpu"

_state: dict = {}  # "available" -> bool, "cupy" -> module, once probed


# Dtypes whose CuPy atomics give NumPy's exact results (checked on an H200
# with CuPy 14.2: float64 max/min come back rounded, float16 adds drift);
# others take the exact host path.
_INTS = {"int32", "int64", "uint32", "uint64"}
_ATOMIC_OK = {"add": _INTS | {"float32", "float64"}, "maximum": _INTS | {"float32"},
              "minimum": _INTS | {"float32"}}


def _cupy():
    return _state["cupy"]


def available() -> bool:
    """Whether CuPy imports and sees at least one GPU (cached; never raises)."""
    ok = _state.get("available")
    if ok is None:
        ok = False
        try:
            import cupy

            ok = cupy.cuda.runtime.getDeviceCount() > 0
            if ok:
                _state["cupy"] = cupy
        except Exception:  # no CuPy, no driver, no device: all mean "not available"
            ok = False
        _state["available"] = ok
    return ok


# ---------------------------------------------------------------- errors
_BF16_MSG = ("[gpu] bfloat16 is not supported by kiln's CUDA backend (CuPy has no bfloat16). "
             "Use float16 or float32 on the GPU, or run bfloat16 work with stream=mx.cpu.")


def _is_bf16(dtype) -> bool:
    return getattr(dtype, "name", "") == "bfloat16"


# ---------------------------------------------------------------- host fallback
def _host_idx(idx):
    """An index (tuple) with every CuPy array copied to the host."""
    if isinstance(idx, tuple):
        return tuple(_host_idx(i) for i in idx)
    if isinstance(idx, _cupy().ndarray):
        return idx.get()
    return idx


class _Ufunc:
    """A CuPy ufunc with NumPy's ``at`` and ``accumulate``.

    ``at`` is always ours (CuPy's scatter atomics on one flat index array,
    so they never see slices or mixed basic/advanced indices); with CuPy's
    own ``ufunc.at`` kiln's scatter-max/min gradient tests with repeated
    indices came out NaN on an H200 (CuPy 14.2, cause not isolated).
    ``accumulate`` is CuPy's where it exists. Calls and
    every other attribute go straight to the CuPy ufunc.
    """

    __slots__ = ("_f", "_name", "_np", "_native_acc")

    def __init__(self, f, name: str, native_acc: bool):
        self._f = f
        self._name = name
        self._np = getattr(np, name)
        self._native_acc = native_acc

    def __call__(self, *args, **kwargs):
        return self._f(*args, **kwargs)

    def __getattr__(self, attr):
        return getattr(self._f, attr)

    def at(self, a, indices, b=None) -> None:
        """Unbuffered in-place ``a[indices] op= b`` (repeated indices accumulate)."""
        cp = _cupy()
        scatter = {"add": "scatter_add", "maximum": "scatter_max", "minimum": "scatter_min"}.get(self._name)
        if scatter is not None and a.dtype.name not in _ATOMIC_OK[self._name]:
            scatter = None
        if scatter is not None and a.flags.c_contiguous:
            import cupyx

            # One flat index array in NumPy's selection layout: the atomics
            # then never see slices or mixed basic/advanced indexing.
            lin = _flat_positions(a, indices)
            try:
                getattr(cupyx, scatter)(a.reshape(-1), lin.reshape(-1),
                                        cp.broadcast_to(cp.asarray(b, dtype=a.dtype), lin.shape).reshape(-1))
                return
            except (TypeError, NotImplementedError, ValueError):
                pass  # a dtype the atomic kernels do not cover: do it on the host below
        # multiply.at (and exotic dtypes): no GPU atomic; a host round trip is exact.
        h = a.get()
        self._np.at(h, _host_idx(indices), b.get() if isinstance(b, cp.ndarray) else b)
        a[...] = cp.asarray(h)

    def accumulate(self, x, axis: int = 0, dtype=None, out=None):
        """Inclusive scan along ``axis`` (NumPy's ``ufunc.accumulate``)."""
        if out is not None:
            raise TypeError("[gpu] accumulate(out=...) is not supported.")
        cp = _cupy()
        if self._native_acc:
            return self._f.accumulate(x, axis=axis, dtype=dtype)
        dtype = dtype or x.dtype
        if self._name == "add":
            return cp.cumsum(x, axis=axis, dtype=dtype)
        if self._name == "multiply":
            return cp.cumprod(x, axis=axis, dtype=dtype)
        # Hillis-Steele: log2(n) whole-array steps instead of a length-n Python loop.
        y = cp.moveaxis(x.astype(dtype, copy=False), axis, -1)
        n = y.shape[-1]
        s = 1
        while s < n:
            y = cp.concatenate([y[..., :s], self._f(y[..., s:], y[..., :-s])], axis=-1)
            s *= 2
        return cp.ascontiguousarray(cp.moveaxis(y, -1, axis))


def _flat_positions(a, tup):
    """Flat positions in ``a`` (C order) of the elements ``a[tup]`` selects, in its layout."""
    cp = _cupy()
    dt = cp.int32 if a.size < 2**31 - 1 else cp.int64
    return cp.arange(a.size, dtype=dt).reshape(a.shape)[tup]


def _set_last_wins(out, tup, u) -> None:
    """``out[tup] = u`` in place, where the last of repeated indices wins, as in NumPy.

    A GPU assignment with repeated indices keeps an arbitrary one of the
    competing values; kiln's gradients of scatters rely on NumPy's order. So
    every selected element gets its position in that order (C order of the
    selection), the largest position per target is kept with an atomic max,
    and each target then reads the update from that position. No host sync.
    """
    cp = _cupy()
    import cupyx

    sel = _flat_positions(out, tup)
    lin = sel.reshape(-1)
    n = lin.size
    if n == 0:
        return
    if n >= 2**31 - 1 or not out.flags.c_contiguous:  # rare: do it on the host
        h = out.get()
        h[_host_idx(tup)] = u.get() if isinstance(u, cp.ndarray) else u
        out[...] = cp.asarray(h)
        return
    win = cp.full(out.size, -1, dtype=cp.int32)
    cupyx.scatter_max(win, lin, cp.arange(n, dtype=cp.int32))
    src = cp.broadcast_to(cp.asarray(u, dtype=out.dtype), sel.shape).reshape(-1)
    flat = out.reshape(-1)
    flat[...] = cp.where(win >= 0, src[cp.maximum(win, 0)], flat)


def _make_xp(cp):
    """CuPy's namespace plus the shims primitives need (built once)."""
    ns = types.ModuleType("kiln.backend.cuda.xp", "CuPy as kiln's primitives see it.")
    ns.__dict__.update({k: v for k, v in vars(cp).items() if not k.startswith("__")})

    def _probe(f):
        try:
            f()
            return True
        except Exception:
            return False

    x = cp.arange(4, dtype=cp.float32)
    for uname in ("add", "multiply", "maximum", "minimum", "logaddexp"):
        u = getattr(cp, uname)
        ns.__dict__[uname] = _Ufunc(u, uname, _probe(lambda: u.accumulate(x, axis=0)))

    def put_along_axis(arr, indices, values, axis):
        # Always ours: CuPy's (where it exists) leaves repeated indices undefined.
        nd = arr.ndim
        tup = tuple(indices if d == axis else
                    cp.arange(indices.shape[d]).reshape((1,) * d + (-1,) + (1,) * (nd - d - 1))
                    for d in range(nd))
        _set_last_wins(arr, tup, values)

    ns.put_along_axis = put_along_axis

    # CuPy's sorts are stable already and reject most kind= values: drop kind.
    def sort(a, axis=-1, kind=None, order=None):
        return cp.sort(a, axis=axis)

    def argsort(a, axis=-1, kind=None, order=None):
        return cp.argsort(a, axis=axis)

    ns.sort = sort
    ns.argsort = argsort
    for fname, fallback in (("iinfo", np.iinfo), ("finfo", np.finfo), ("round", getattr(cp, "around", None)),
                            ("isposinf", lambda v: cp.isinf(v) & (v > 0)),
                            ("isneginf", lambda v: cp.isinf(v) & (v < 0))):
        if not hasattr(cp, fname) and fallback is not None:
            ns.__dict__[fname] = fallback
    # No ``errstate``: the GPU raises no floating-point warnings, and
    # primitives use it only where the namespace has it.
    return ns


# ---------------------------------------------------------------- overrides
def _matmul(prim, xp, a, b):
    # cuBLAS multiplies half precision natively (float32 accumulation) and
    # handles broadcast batches and strides itself: no NumPy workarounds.
    return xp.matmul(a, b)


def _astype(prim, xp, x):
    if _is_bf16(prim.dtype.np):
        raise TypeError(_BF16_MSG)
    return x.astype(prim.dtype.np)


def _erf(prim, xp, x):
    from cupyx.scipy import special

    y = special.erf(x if x.dtype in (xp.float32, xp.float64) else x.astype(xp.float32))
    return y.astype(x.dtype, copy=False)


def _erfinv(prim, xp, x):
    from cupyx.scipy import special

    y = special.erfinv(x.astype(xp.float64))
    return y.astype(x.dtype, copy=False)


def _scatter(prim, xp, x, u, *idx):
    if prim.mode != "set":
        return prim.eval(xp, x, u, *idx)  # accumulating modes go through the xp ufunc shims
    out = x.copy()
    _set_last_wins(out, prim.index_tuple(idx, x.ndim), u)
    return out


def _build_overrides() -> dict:
    # Keyed by primitive name: a backend imports no primitive.
    return {"Matmul": _matmul, "AsType": _astype, "Erf": _erf, "ErfInv": _erfinv, "Scatter": _scatter}


def __getattr__(attr):
    # ``xp`` and ``overrides`` are built on first access (after ``available()``),
    # so importing this module on a machine without CuPy is free.
    if attr == "xp":
        if not available():
            raise AttributeError("[gpu] CuPy and an NVIDIA GPU are required for kiln's CUDA backend.")
        ns = _make_xp(_cupy())
        globals()["xp"] = ns
        return ns
    if attr == "overrides":
        ov = _build_overrides()
        globals()["overrides"] = ov
        return ov
    raise AttributeError(attr)


# ---------------------------------------------------------------- transfers
# NumPy buffers used on the GPU (user arrays, cached 0-d constants) are
# copied once and the copy is reused while the host buffer lives.
_uploaded: dict = {}


def _forget(key):
    _uploaded.pop(key, None)


def from_host(buf):
    """A host (NumPy) buffer as a CuPy array on the current GPU."""
    if _is_bf16(buf.dtype):
        raise TypeError(_BF16_MSG)
    return _cupy().asarray(buf)


def to_host(buf):
    """A buffer (CuPy, or NumPy for arrays made from host data) as a NumPy array."""
    if isinstance(buf, (np.ndarray, np.generic)):
        return buf
    return buf.get()


def _upload(b):
    if not isinstance(b, np.ndarray):  # NumPy scalars cannot be weakly referenced
        return from_host(np.asarray(b))
    key = id(b)
    hit = _uploaded.get(key)
    if hit is not None and hit[0]() is b:
        return hit[1]
    d = from_host(b)
    _uploaded[key] = (weakref.ref(b, lambda _r, k=key: _forget(k)), d)
    return d


def adopt(bufs):
    """Input buffers as CuPy arrays: host buffers are uploaded (once per buffer)."""
    cp_ndarray = _cupy().ndarray
    out = bufs
    for k, b in enumerate(bufs):
        if type(b) is not cp_ndarray:
            if out is bufs:
                out = list(bufs)
            out[k] = _upload(b)
    return out


# ---------------------------------------------------------------- device facts and memory
def synchronize() -> None:
    """Wait for all work queued on the current GPU."""
    _cupy().cuda.Device().synchronize()


def cache_memory() -> int:
    """Bytes CuPy's memory pool holds but no array uses."""
    pool = _cupy().get_default_memory_pool()
    return int(pool.total_bytes() - pool.used_bytes())


def clear_cache() -> None:
    """Return the memory pools' free blocks to the driver."""
    cp = _cupy()
    cp.get_default_memory_pool().free_all_blocks()
    cp.get_default_pinned_memory_pool().free_all_blocks()


def device_count() -> int:
    """Number of visible GPUs."""
    return int(_cupy().cuda.runtime.getDeviceCount()) if available() else 0


def device_info() -> dict:
    """Name, architecture and memory of the current GPU."""
    cp = _cupy()
    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    name_ = props.get("name", b"")
    if isinstance(name_, bytes):
        name_ = name_.decode(errors="replace")
    free, total = dev.mem_info
    return {
        "device_name": name_,
        "architecture": f"sm_{props.get('major', 0)}{props.get('minor', 0)}",
        "memory_size": int(total),
        "free_memory": int(free),
        "max_buffer_length": int(total),
    }
