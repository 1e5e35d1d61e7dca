"""The CUDA backend: the shared op tables on ``mx.gpu`` against ``mx.cpu``,
transfers between devices, transforms on the GPU, memory functions.

Every GPU test skips where CuPy or an NVIDIA GPU is missing (CI has none);
``test_available_is_cheap`` runs everywhere.
"""
from __future__ import annotations

import importlib

import numpy as np
import pytest

import kiln.core as mx
from harness import OpCase, check_compile, check_grads, check_vmap, make_inputs

try:
    import cupy
except Exception:  # pragma: no cover - no CuPy on CI
    cupy = None

HAS_GPU = mx.cuda.is_available()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and an NVIDIA GPU")


# ---------------------------------------------------------------- the shared tables
def _table(module: str, *names: str) -> list:
    """OpCases from another test module's tables (empty where it does not import)."""
    try:
        mod = importlib.import_module(module)
    except Exception:  # a module whose own dependencies are missing contributes nothing
        return []
    out = []
    for n in names:
        out.extend(c for c in getattr(mod, n, []) if isinstance(c, OpCase))
    return out


def _tables() -> list:
    if not HAS_GPU:
        return []
    cases = (_table("test_ops_elementwise", "CASES") + _table("test_ops_reduce", "CASES")
             + _table("test_ops_shape", "CASES") + _table("test_ops_products", "CASES", "GATHER")
             + _table("test_indexing", "ALL_CASES") + _table("test_conv", "ALL")
             + _table("test_fft", "FORWARD") + _table("test_fast", "CASES") + _table("test_random", "CASES"))
    seen, out = set(), []
    for c in cases:
        if c.name not in seen:
            seen.add(c.name)
            out.append(c)
    return out


TABLE = _tables()

def _no_bf16(c: OpCase) -> bool:
    return "bfloat16" not in c.dtypes and "bf16" not in c.name


# Cases whose gradient or vmap check their own modules leave out or mark xfail on the CPU
# (complex-valued cotangents of the FFTs, rope's frequency input, half-precision vmap).
_FFT_NAMES = {c.name for c in _table("test_fft", "FORWARD")} if HAS_GPU else set()
_NO_GRAD = _FFT_NAMES | {"rope_freqs"}


# Subsets (every k-th case) keep the transform checks to a few minutes on the GPU.
GRAD_TABLE = [c for c in TABLE if c.grad and "_empty" not in c.name and _no_bf16(c) and c.name not in _NO_GRAD][::6]
VMAP_TABLE = [c for c in TABLE if c.vmap and _no_bf16(c) and "f16" not in c.name and "float16" not in c.name][::5]
COMPILE_TABLE = [c for c in TABLE if c.compile and _no_bf16(c)][::5]


def _run(case: OpCase, xs, device):
    """The case's outputs (NumPy) and dtypes, computed with every op on ``device``."""
    with mx.stream(device):
        out = case.fn(mx, *[mx.array(x) for x in xs])
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        mx.eval(*outs)
        return [np.array(o) for o in outs], [o.dtype for o in outs], outs




@needs_gpu
@pytest.mark.parametrize("case", TABLE, ids=[c.name for c in TABLE])
def test_table_gpu_matches_cpu(case):
    xs = make_inputs(case)
    want, want_dt, _ = _run(case, xs, mx.cpu)
    if any(x.dtype.name == "bfloat16" for x in xs) or any(d == mx.bfloat16 for d in want_dt):
        with pytest.raises(TypeError, match="bfloat16"):
            _run(case, xs, mx.gpu)
        return
    try:
        got, got_dt, outs = _run(case, xs, mx.gpu)
    except TypeError as e:
        if "bfloat16" not in str(e):
            raise
        pytest.skip("a bfloat16 intermediate: refused on the GPU by design")
    assert got_dt == want_dt
    for g, w in zip(got, want):
        assert g.shape == w.shape, case.name
        if g.dtype.kind in "fc":
            # GPU transcendental functions and reduction orders differ by a few ulps.
            tiny = 1e-2 if g.dtype.itemsize <= 2 or g.dtype == np.complex64 else 1e-5
            np.testing.assert_allclose(g, w, rtol=max(case.rtol, tiny, 2e-5), atol=max(case.atol, tiny, 1e-5),
                                       equal_nan=True, err_msg=case.name)
        else:
            np.testing.assert_array_equal(g, w, err_msg=case.name)


GRAD_PARAMS = [pytest.param(c, id=c.name) for c in GRAD_TABLE]


@needs_gpu
@pytest.mark.parametrize("case", GRAD_PARAMS)
def test_grads_on_gpu(case):
    with mx.stream(mx.gpu):
        check_grads(case, rtol=1e-3, atol=1e-5, identity_rtol=1e-5)


@needs_gpu
@pytest.mark.parametrize("case", VMAP_TABLE, ids=[c.name for c in VMAP_TABLE])
def test_vmap_on_gpu(case):
    with mx.stream(mx.gpu):
        check_vmap(case)


@needs_gpu
@pytest.mark.parametrize("case", COMPILE_TABLE, ids=[c.name for c in COMPILE_TABLE])
def test_compile_on_gpu(case):
    with mx.stream(mx.gpu):
        check_compile(case)


# ---------------------------------------------------------------- devices and transfers
def test_available_is_cheap():
    from kiln.backend import cuda

    a = cuda.available()
    assert isinstance(a, bool) and cuda.available() is a
    assert mx.cuda.is_available() is a
    if not a:
        with pytest.raises(ValueError):
            mx.set_default_device(mx.gpu)


@needs_gpu
def test_gpu_is_default_device():
    assert mx.default_device() == mx.gpu
    assert mx.device_count(mx.gpu) >= 1


@needs_gpu
def test_results_live_on_the_gpu():
    x = mx.array(np.arange(6, dtype=np.float32).reshape(2, 3), dtype=mx.float32)
    y = mx.exp(x, stream=mx.gpu) + 1
    mx.eval(y)
    assert isinstance(y._buf, cupy.ndarray)
    np.testing.assert_allclose(np.array(y), np.exp(np.arange(6).reshape(2, 3)) + 1, rtol=1e-6)


@needs_gpu
def test_cpu_input_used_on_gpu_and_back():
    rng = np.random.default_rng(0)
    a_np = rng.standard_normal((4, 5)).astype(np.float32)
    b_np = rng.standard_normal((5, 3)).astype(np.float32)
    a = mx.sin(mx.array(a_np), stream=mx.cpu)  # computed on the host
    b = mx.array(b_np)
    c = mx.matmul(a, b, stream=mx.gpu)  # a is moved to the GPU once
    d = mx.sum(c * 2, stream=mx.cpu)  # and the GPU result back to the host
    mx.eval(d)
    assert isinstance(a._buf, (np.ndarray, np.generic)) and isinstance(c._buf, cupy.ndarray)
    assert isinstance(d._buf, (np.ndarray, np.generic))
    np.testing.assert_allclose(np.array(c), np.sin(a_np) @ b_np, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d.item(), 2 * (np.sin(a_np) @ b_np).sum(), rtol=1e-4)


@needs_gpu
def test_host_buffer_uploaded_once():
    from kiln.backend import cuda

    x = mx.array(np.ones((3, 3), np.float32))
    d1 = cuda.adopt([x._buf])[0]
    d2 = cuda.adopt([x._buf])[0]
    assert d1 is d2
    assert (cuda.adopt([d1])[0]) is d1


@needs_gpu
def test_dtypes_round_trip():
    for dt in ("bool_", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
               "float16", "float32", "float64", "complex64"):
        v = (np.arange(6) % 3).astype(np.dtype(dt.rstrip("_")))
        x = mx.array(v, dtype=getattr(mx, dt))
        y = mx.add(x, x, stream=mx.gpu) if dt != "bool_" else mx.logical_not(x, stream=mx.gpu)
        mx.eval(y)
        assert isinstance(y._buf, cupy.ndarray) and y.dtype == getattr(mx, dt)
        want = v + v if dt != "bool_" else ~v
        np.testing.assert_array_equal(np.array(y), want)


@needs_gpu
def test_bfloat16_is_refused_clearly():
    x = mx.array(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="bfloat16"):
        mx.eval(mx.astype(x, mx.bfloat16, stream=mx.gpu))
    h = mx.astype(x, mx.bfloat16, stream=mx.cpu)
    with pytest.raises(TypeError, match="bfloat16"):
        mx.eval(mx.abs(h, stream=mx.gpu))
    np.testing.assert_array_equal(np.array(mx.abs(h, stream=mx.cpu)).astype(np.float32), np.ones(3))


@needs_gpu
def test_scatter_with_repeats_on_gpu():
    # ufunc.at semantics (repeated indices accumulate) through CuPy's atomics and the host fallback
    idx = mx.array(np.array([0, 2, 0, 1, 0], np.int32))
    upd = mx.array(np.arange(1, 6, dtype=np.float32))
    with mx.stream(mx.gpu):
        base = mx.ones(4)
        got = {m: np.array(getattr(base.at[idx], m)(upd)) for m in ("add", "multiply", "maximum", "minimum")}
    want = {}
    for m, uf in (("add", np.add), ("multiply", np.multiply), ("maximum", np.maximum), ("minimum", np.minimum)):
        w = np.ones(4, np.float32)
        uf.at(w, np.array([0, 2, 0, 1, 0]), np.arange(1, 6, dtype=np.float32))
        want[m] = w
    for m in got:
        np.testing.assert_array_equal(got[m], want[m], err_msg=m)
    # assignment: the last of repeated indices wins, as on the CPU
    rows = mx.array(np.array([[1, 1, 3], [1, 0, 1]], np.int32))
    vals = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    with mx.stream(mx.gpu):
        a = mx.zeros((5, 4))
        a[rows] = mx.array(vals)
        b = mx.put_along_axis(mx.zeros((2, 3)), rows[:, :2] % 3, mx.array(vals[:, :2, 0]), axis=1)
    w = np.zeros((5, 4), np.float32)
    w[np.array([[1, 1, 3], [1, 0, 1]])] = vals
    np.testing.assert_array_equal(np.array(a), w)
    wb = np.zeros((2, 3), np.float32)
    np.put_along_axis(wb, np.array([[1, 1], [1, 0]]), vals[:, :2, 0], axis=1)
    np.testing.assert_array_equal(np.array(b), wb)


@needs_gpu
def test_scans_on_gpu():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((3, 37)).astype(np.float32)
    x = mx.array(v)
    with mx.stream(mx.gpu):
        np.testing.assert_array_equal(np.array(mx.cummax(x, axis=1)), np.maximum.accumulate(v, axis=1))
        np.testing.assert_array_equal(np.array(mx.cummin(x, axis=0)), np.minimum.accumulate(v, axis=0))
        np.testing.assert_allclose(np.array(mx.logcumsumexp(x, axis=1)), np.logaddexp.accumulate(v, axis=1),
                                   rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- memory
@needs_gpu
def test_memory_functions():
    info = mx.device_info(mx.gpu)
    assert info["device_name"] and info["memory_size"] > 0
    mx.clear_cache()
    x = mx.add(mx.zeros((1 << 20,), stream=mx.gpu), 1, stream=mx.gpu)  # a real 4 MiB buffer
    mx.eval(x)
    assert isinstance(x._buf, cupy.ndarray)
    assert mx.get_active_memory() >= x.nbytes
    del x
    assert mx.get_cache_memory() >= 1 << 22  # the freed block stays in CuPy's pool ...
    mx.clear_cache()
    # ... until the cache is cleared (blocks split from a chunk still in use stay)
    assert mx.get_cache_memory() < 1 << 20
    mx.synchronize()


@needs_gpu
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("method", ["add", "maximum", "minimum"])
def test_scatter_accumulate_is_exact(dtype, method):
    # CuPy's float64 max/min atomics round; kiln must still match NumPy exactly.
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(50) * 100).astype(dtype)
    b = (rng.standard_normal(200) * 100).astype(dtype)
    i = rng.integers(0, 50, 200)
    ref = a.copy()
    getattr(np, method).at(ref, i, b)
    d = getattr(mx, dtype)
    got = getattr(mx.array(a, dtype=d).at[mx.array(i)], method)(mx.array(b, dtype=d))
    assert got.dtype == d
    if method == "add" and dtype.startswith("float"):
        # Atomic adds sum in another order than NumPy's loop: equal up to rounding.
        tol = 1e-2 if dtype == "float16" else 1e-5
        np.testing.assert_allclose(np.array(got), ref, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(np.array(got), ref)

