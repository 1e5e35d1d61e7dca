"""Hostile input: corrupt files of every format, Python ints that overflow, shared graphs
evaluated from two threads, transforms given non-functions, and shapes that are not integers.

Loading hostile files runs in a subprocess under CPU-time and address-space limits, so a hang,
a runaway allocation or a crash fails the test instead of the run.
"""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zipfile

import numpy as np
import pytest

import kiln.core as mx

try:
    import mlx.core as mlx_core
except ImportError:  # the NumPy and kiln-only checks still run
    mlx_core = None

needs_mlx = pytest.mark.skipif(mlx_core is None, reason="real MLX (the oracle) is not installed")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ================================================================ file builders
def npy_bytes(header: str, data: bytes = b"", *, magic=b"\x93NUMPY", version=(1, 0), hlen=None) -> bytes:
    text = header.encode("latin1")
    n = len(text) if hlen is None else hlen
    size = struct.pack("<H", n) if version[0] == 1 else struct.pack("<I", n)
    return magic + bytes(version) + size + text + data


def good_npy(shape=(2, 3), dtype="<f4") -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape))
    return buf.getvalue()


def st_bytes(header, body: bytes = b"", *, n=None) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if n is None else n) + text + body


def gs(s) -> bytes:
    b = s if isinstance(s, bytes) else s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_bytes(kvs=(), tensors=(), *, version=3, n_kv=None, n_tensors=None, data=b"", magic=b"GGUF",
               align=32) -> bytes:
    """A GGUF file: ``kvs`` are (key, payload bytes incl. type tag); ``tensors`` (name, dims, type, offset)."""
    out = magic + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                              len(kvs) if n_kv is None else n_kv)
    for k, payload in kvs:
        out += gs(k) + payload
    for name, dims, gtype, offset in tensors:
        out += gs(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", gtype, offset)
    out += b"\0" * (-len(out) % align)
    return out + data


def zip_bytes(members, compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def lie_zip_size(raw: bytes, size: int) -> bytes:
    """``raw`` with the first member's uncompressed size replaced in both zip headers."""
    b = bytearray(raw)
    loc = b.find(b"PK\x03\x04")
    struct.pack_into("<I", b, loc + 22, size)
    cen = b.find(b"PK\x01\x02")
    struct.pack_into("<I", b, cen + 24, size)
    return bytes(b)


_F32 = np.arange(6, dtype="<f4").tobytes()

# name -> (file bytes, the field the error must name)
HOSTILE = {
    "npy": {
        "truncated.npy": (good_npy()[:-5], "shape"),
        "huge_shape.npy": (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }"),
                           "shape"),
        "huge_product.npy": (npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"),
                             "shape"),
        "negative_shape.npy": (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-2, -3), }", _F32),
                               "shape"),
        "float_shape.npy": (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2.0, 3), }", _F32),
                            "shape"),
        "bool_shape.npy": (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (True, 6), }", _F32),
                           "shape"),
        "bad_descr.npy": (npy_bytes("{'descr': 'nonsense', 'fortran_order': False, 'shape': (6,), }", _F32),
                          "descr"),
        "huge_void.npy": (npy_bytes("{'descr': '|V2000000000', 'fortran_order': False, 'shape': (1,), }"),
                          "descr"),
        "order.npy": (npy_bytes("{'descr': '<f4', 'fortran_order': 3, 'shape': (6,), }", _F32), "fortran_order"),
        "extra_key.npy": (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1}", _F32),
                          "header"),
        "not_dict.npy": (npy_bytes("[1, 2, 3]", _F32), "header"),
        "code.npy": (npy_bytes("__import__('os').system('echo hi')", _F32), "header"),
        "long_header.npy": (npy_bytes("{}", version=(2, 0), hlen=2**31), "header_len"),
        "version.npy": (npy_bytes("{}", version=(9, 0)), "version"),
        "magic.npy": (b"\x93NUMPZ\x01\x00" + good_npy()[8:], "magic"),
        "empty.npy": (b"", "magic"),
    },
    "npz": {
        "lying_size.npz": (lie_zip_size(zip_bytes([("a.npy", good_npy())]), 2**32 - 16), "file_size"),
        "bomb_claim.npz": (lie_zip_size(zip_bytes([("a.npy", good_npy())], zipfile.ZIP_DEFLATED), 2**32 - 16),
                           "file_size"),
        "huge_member.npz": (zip_bytes([("a.npy", npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }"))]), "shape"),
        "negative_member.npz": (zip_bytes([("a.npy", npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-6,), }", _F32))]), "shape"),
        "bzip.npz": (zip_bytes([("a.npy", good_npy())], zipfile.ZIP_BZIP2), "compress_type"),
    },
    "safetensors": {
        # The case of the issue: a negative shape and a negative end offset.
        "negative.safetensors": (st_bytes({"a": {"dtype": "F32", "shape": [-2, -3], "data_offsets": [0, -24]}},
                                          _F32), "shape"),
        "negative_offsets.safetensors": (st_bytes({"a": {"dtype": "F32", "shape": [6], "data_offsets": [-24, 0]}},
                                                  _F32), "data_offsets"),
        "past_end.safetensors": (st_bytes({"a": {"dtype": "F32", "shape": [2**20], "data_offsets": [0, 2**22]}},
                                          _F32), "data_offsets"),
        "huge_shape.safetensors": (st_bytes({"a": {"dtype": "F32", "shape": [2**62, 2**62],
                                                   "data_offsets": [0, 24]}}, _F32), "data_offsets"),
        "float_shape.safetensors": (st_bytes({"a": {"dtype": "F32", "shape": [2.5, 2], "data_offsets": [0, 24]}},
                                             _F32), "shape"),
        "bool_shape.safetensors": (st_bytes({"a": {"dtype": "F32", "shape": [True, 6], "data_offsets": [0, 24]}},
                                            _F32), "shape"),
        "dtype.safetensors": (st_bytes({"a": {"dtype": "F128", "shape": [6], "data_offsets": [0, 24]}}, _F32),
                              "dtype"),
        "overlap.safetensors": (st_bytes({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                          "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, _F32),
                                "data_offsets"),
        "missing_key.safetensors": (st_bytes({"a": {"dtype": "F32", "shape": [6]}}, _F32), "a"),
        "duplicate.safetensors": (st_bytes(b'{"a": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]}, '
                                           b'"a": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]}}', _F32),
                                  "a"),
        "deep.safetensors": (st_bytes(b"[" * 100000 + b"]" * 100000), "header"),
        "metadata.safetensors": (st_bytes({"__metadata__": {"k": 3}}), "__metadata__"),
        "header_size.safetensors": (st_bytes({}, n=2**63), "header size"),
        "short.safetensors": (b"\x01\x00", "header size"),
        "not_object.safetensors": (st_bytes([1, 2]), "header"),
    },
    "gguf": {
        # The case of the issue: a small file whose metadata claims a 2^40-item array.
        "huge_array.gguf": (gguf_bytes([("a", struct.pack("<IIQ", 9, 4, 2**40))]), "a count"),
        "huge_str_array.gguf": (gguf_bytes([("a", struct.pack("<IIQ", 9, 8, 2**40))]), "a count"),
        "huge_string.gguf": (gguf_bytes([("a", struct.pack("<I", 8) + struct.pack("<Q", 2**60))]), "a"),
        "huge_key.gguf": (gguf_bytes(n_kv=1)[:24] + struct.pack("<Q", 2**62) + b"\0" * 20, "metadata key"),
        "kv_count.gguf": (gguf_bytes(n_kv=2**60), "metadata_kv_count"),
        "tensor_count.gguf": (gguf_bytes(n_tensors=2**60), "tensor_count"),
        "n_dims.gguf": (gguf_bytes(n_tensors=1, align=1, data=gs("t") + struct.pack("<I", 2**31) + b"\0" * 40),
                        "t n_dims"),
        "dims.gguf": (gguf_bytes(tensors=[("t", [2**40, 2**40], 0, 0)], data=_F32), "offset"),
        "type.gguf": (gguf_bytes(tensors=[("t", [6], 999, 0)], data=_F32), "type"),
        "offset.gguf": (gguf_bytes(tensors=[("t", [6], 0, 2**50)], data=_F32), "offset"),
        "unaligned.gguf": (gguf_bytes(tensors=[("t", [2], 0, 3)], data=_F32), "offset"),
        "alignment.gguf": (gguf_bytes([("general.alignment", struct.pack("<II", 4, 3))]), "general.alignment"),
        "value_type.gguf": (gguf_bytes([("a", struct.pack("<I", 77))]), "a type"),
        "nested.gguf": (gguf_bytes([("a", struct.pack("<IIQ", 9, 9, 1))]), "a element type"),
        "utf8.gguf": (gguf_bytes([(b"\xff\xfe", struct.pack("<II", 4, 1))]), "metadata key"),
        "duplicate.gguf": (gguf_bytes([("a", struct.pack("<II", 4, 1)), ("a", struct.pack("<II", 4, 1))]), "a"),
        "dup_tensor.gguf": (gguf_bytes(tensors=[("t", [2], 0, 0), ("t", [2], 0, 0)], data=_F32), "t"),
        "version.gguf": (gguf_bytes(version=1), "version"),
        "magic.gguf": (gguf_bytes(magic=b"GGUG"), "magic"),
        "truncated.gguf": (gguf_bytes([("a", struct.pack("<II", 4, 1))])[:38], "a"),
    },
}

# A child process loads every file of one format and reports, per file, what happened.
_CHILD = textwrap.dedent("""
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_CPU, (60, 60))
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    import kiln.core as mx
    for path in json.loads(sys.argv[1]):
        try:
            out = mx.load(path)
            res = {"ok": True}
        except BaseException as e:
            res = {"type": type(e).__name__, "base": [c.__name__ for c in type(e).__mro__], "msg": str(e)}
        print(json.dumps({"path": path, **res}), flush=True)
""")


def _run_child(paths, timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(paths)], capture_output=True, text=True,
                       timeout=timeout, env=env)
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    return p, {r["path"]: r for r in rows}


@pytest.mark.parametrize("fmt", list(HOSTILE))
def test_hostile_files_are_refused(tmp_path, fmt):
    cases = HOSTILE[fmt]
    paths = {}
    for name, (data, _) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths[name] = str(path)
    t0 = time.monotonic()
    p, rows = _run_child(list(paths.values()))
    assert p.returncode == 0, f"the loader crashed or ran out of limits:\n{p.stderr[-3000:]}"
    for name, (data, field) in cases.items():
        r = rows[paths[name]]
        assert not r.get("ok"), f"{name} was loaded"
        assert set(r["base"]) & {"RuntimeError", "ValueError"}, (name, r)
        assert name in r["msg"], (name, r["msg"])
        assert field in r["msg"], (name, field, r["msg"])
    assert time.monotonic() - t0 < 100


def test_valid_files_still_load(tmp_path):
    x = mx.array(np.arange(12, dtype=np.float32).reshape(3, 4))
    mx.save(str(tmp_path / "a.npy"), x)
    mx.savez(str(tmp_path / "a.npz"), x=x, y=x.astype(mx.int16))
    mx.savez_compressed(str(tmp_path / "c.npz"), x=mx.zeros((64, 64)))
    mx.save_safetensors(str(tmp_path / "a.safetensors"), {"x": x, "e": mx.zeros((0, 3))}, {"k": "v"})
    mx.save_gguf(str(tmp_path / "a.gguf"), {"x": x}, {"s": "v", "n": mx.array([1, 2]), "l": ["a", "b"]})
    np.save(tmp_path / "f.npy", np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)))
    np.testing.assert_array_equal(np.array(mx.load(str(tmp_path / "a.npy"))), np.array(x))
    np.testing.assert_array_equal(np.array(mx.load(str(tmp_path / "a.npz"))["y"]), np.array(x).astype(np.int16))
    assert mx.load(str(tmp_path / "c.npz"))["x"].shape == (64, 64)
    st, meta = mx.load(str(tmp_path / "a.safetensors"), return_metadata=True)
    assert meta == {"k": "v"} and st["e"].shape == (0, 3)
    g, gmeta = mx.load(str(tmp_path / "a.gguf"), return_metadata=True)
    np.testing.assert_array_equal(np.array(g["x"]), np.array(x))
    assert gmeta["s"] == "v" and gmeta["l"] == ["a", "b"] and gmeta["n"].tolist() == [1, 2]
    np.testing.assert_array_equal(np.array(mx.load(str(tmp_path / "f.npy"))), np.arange(6).reshape(2, 3))


@needs_mlx
def test_gguf_from_mlx_loads(tmp_path):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    mlx_core.save_gguf(str(tmp_path / "m.gguf"), {"a": mlx_core.array(a), "b": mlx_core.ones((5,), mlx_core.float16)},
                       {"name": "m", "v": mlx_core.array([1.5, 2.5])})
    got, meta = mx.load(str(tmp_path / "m.gguf"), return_metadata=True)
    want, wmeta = mlx_core.load(str(tmp_path / "m.gguf"), return_metadata=True)
    for k in want:
        np.testing.assert_array_equal(np.array(got[k]), np.array(want[k]))
    assert meta["name"] == wmeta["name"]
    np.testing.assert_array_equal(np.array(meta["v"]), np.array(wmeta["v"]))


# A hypothesis fuzz over header fields, per format, in a limited child process as well.
_FUZZ = textwrap.dedent("""
    import json, resource, struct, sys, os, tempfile
    resource.setrlimit(resource.RLIMIT_CPU, (120, 120))
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
    from hypothesis import given, settings, strategies as st, HealthCheck
    import kiln.core as mx
    from test_reliability import gguf_bytes, npy_bytes, st_bytes, gs, zip_bytes
    d = tempfile.mkdtemp()
    ints = st.one_of(st.integers(-3, 40), st.integers(-2**63, 2**64 - 1), st.sampled_from([2**31, 2**40, 2**62]))
    cfg = settings(max_examples=int(sys.argv[2]), deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))

    def check(data, ext):
        path = os.path.join(d, "f." + ext)
        with open(path, "wb") as f:
            f.write(data)
        try:
            out = mx.load(path)
        except (RuntimeError, ValueError):
            return
        arrays = [out] if isinstance(out, mx.array) else list(out.values())
        # Whatever loads is backed by bytes of the file (compressed npz aside).
        assert sum(a.nbytes for a in arrays) <= max(len(data), 1) * (1100 if ext == "npz" else 1)

    @cfg
    @given(shape=st.lists(ints, max_size=4), descr=st.sampled_from(["<f4", "|u1", "<i8", "|b1", ">f2", "x"]),
           order=st.sampled_from(["False", "True", "1"]), body=st.binary(max_size=64), cut=st.integers(0, 80))
    def npy(shape, descr, order, body, cut):
        h = "{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }" % (descr, order, "".join(f"{s}," for s in shape))
        raw = npy_bytes(h, body)
        check(raw, "npy")
        check(raw[:cut], "npy")
        check(zip_bytes([("a.npy", raw)]), "npz")

    tags = st.sampled_from(["F32", "F16", "I8", "BOOL", "U64", "Q4", 3])
    entry = st.fixed_dictionaries({"dtype": tags, "shape": st.lists(ints, max_size=3),
                                   "data_offsets": st.lists(ints, min_size=0, max_size=3)})

    @cfg
    @given(header=st.dictionaries(st.text(max_size=3), entry, max_size=3), body=st.binary(max_size=64),
           n=st.one_of(st.none(), ints))
    def safetensors(header, body, n):
        try:
            raw = st_bytes(header, body, n=n if n is None or 0 <= n < 2**64 else None)
        except struct.error:
            return
        check(raw, "safetensors")

    u32 = st.one_of(st.integers(0, 13), st.integers(0, 2**32 - 1))
    u64 = st.one_of(st.integers(0, 50), st.integers(0, 2**64 - 1))

    @cfg
    @given(kvs=st.lists(st.tuples(st.text(max_size=3), u32, u32, u64, st.binary(max_size=24)), max_size=3),
           tensors=st.lists(st.tuples(st.text(max_size=3), st.lists(u64, max_size=5), u32, u64), max_size=3),
           n_kv=st.one_of(st.none(), u64), n_t=st.one_of(st.none(), u64), body=st.binary(max_size=64))
    def gguf(kvs, tensors, n_kv, n_t, body):
        payloads = [(k, struct.pack("<IIQ", t, et, c) + extra) for k, t, et, c, extra in kvs]
        raw = gguf_bytes(payloads, tensors, n_kv=n_kv, n_tensors=n_t, data=body)
        check(raw, "gguf")

    for fn in (npy, safetensors, gguf):
        fn()
    print("fuzz ok")
""")


def test_fuzz_file_headers():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", _FUZZ, ROOT, "60"], capture_output=True, text=True, timeout=300,
                       env=env)
    assert p.returncode == 0 and "fuzz ok" in p.stdout, p.stdout[-2000:] + p.stderr[-4000:]


# ================================================================ overflow
OVERFLOW = [
    ("array list int32", lambda m: m.array([2**31], dtype=m.int32)),
    ("array list int32 low", lambda m: m.array([1, -(2**31) - 1], dtype=m.int32)),
    ("array list uint8", lambda m: m.array([256], dtype=m.uint8)),
    ("array list uint8 negative", lambda m: m.array([[1], [-1]], dtype=m.uint8)),
    ("array list int64", lambda m: m.array([2**63])),
    ("array list beyond 64 bits", lambda m: m.array([2**70])),
    ("array scalar int8", lambda m: m.array(200, dtype=m.int8)),
    ("array scalar int32", lambda m: m.array(2**31, dtype=m.int32)),
    ("array scalar int64", lambda m: m.array(2**63)),
    ("full int32", lambda m: m.full((2,), 2**31, dtype=m.int32)),
    ("full int8", lambda m: m.full((2,), 300, dtype=m.int8)),
    ("full uint8", lambda m: m.full((2,), -1, dtype=m.uint8)),
    ("add int8", lambda m: m.array([1], dtype=m.int8) + 300),
    ("radd int32", lambda m: 2**31 + m.array([1], dtype=m.int32)),
    ("multiply int32", lambda m: m.array([1], dtype=m.int32) * 2**40),
    ("subtract uint8", lambda m: m.array([1], dtype=m.uint8) - (-1)),
    ("maximum int8", lambda m: m.maximum(m.array([1], dtype=m.int8), 300)),
    ("equal int8", lambda m: m.array([1], dtype=m.int8) == 300),
    ("where int8", lambda m: m.where(m.array([True]), m.array([1], dtype=m.int8), 300)),
    ("uint64 beyond", lambda m: m.array([1], dtype=m.uint64) + 2**64),
]
# MLX wraps these silently (or does not have the function); kiln refuses them.
MLX_WRAPS = {"array list uint8", "array list uint8 negative", "array scalar int8", "array scalar int32"}

IN_RANGE = [
    ("int32 max", lambda m: m.array([2**31 - 1, -(2**31)], dtype=m.int32), np.array([2**31 - 1, -(2**31)], np.int32)),
    ("uint8 max", lambda m: m.array([0, 255], dtype=m.uint8), np.array([0, 255], np.uint8)),
    ("uint64 max", lambda m: m.array([2**64 - 1], dtype=m.uint64), np.array([2**64 - 1], np.uint64)),
    ("int64 inferred", lambda m: m.array([2**31]), np.array([2**31], np.int64)),
    ("full int8", lambda m: m.full((2,), -128, dtype=m.int8), np.full((2,), -128, np.int8)),
    ("add int8", lambda m: m.array([1], dtype=m.int8) + 126, np.array([127], np.int8)),
    ("float target", lambda m: m.array([2**40], dtype=m.float32), np.array([2**40], np.float32)),
    ("astype scalar", lambda m: m.astype(127, m.int8), np.array(127, np.int8)),
]


@pytest.mark.parametrize("name,fn", OVERFLOW, ids=[c[0] for c in OVERFLOW])
def test_int_overflow_raises(name, fn):
    with pytest.raises(ValueError, match="would result in overflow"):
        mx.eval(fn(mx))


def test_astype_from_python_value_overflows():
    with pytest.raises(ValueError, match="Converting 300 to int8 would result in overflow"):
        mx.astype(300, mx.int8)


@needs_mlx
@pytest.mark.parametrize("name,fn", [c for c in OVERFLOW if c[0] not in MLX_WRAPS],
                         ids=[c[0] for c in OVERFLOW if c[0] not in MLX_WRAPS])
def test_int_overflow_raises_in_mlx_too(name, fn):
    with pytest.raises((ValueError, RuntimeError)):
        mlx_core.eval(fn(mlx_core))


@pytest.mark.parametrize("name,fn,want", IN_RANGE, ids=[c[0] for c in IN_RANGE])
def test_ints_in_range_convert(name, fn, want):
    got = fn(mx)
    assert got.dtype == getattr(mx, want.dtype.name)
    np.testing.assert_array_equal(np.array(got), want)


# ================================================================ transform misuse
TRANSFORMS = {
    "grad": lambda f: mx.grad(f),
    "value_and_grad": lambda f: mx.value_and_grad(f),
    "vjp": lambda f: mx.vjp(f, [mx.array(1.0)], [mx.array(1.0)]),
    "jvp": lambda f: mx.jvp(f, [mx.array(1.0)], [mx.array(1.0)]),
    "vmap": lambda f: mx.vmap(f),
    "compile": lambda f: mx.compile(f),
    "checkpoint": lambda f: mx.checkpoint(f),
    "custom_function": lambda f: mx.custom_function(f),
}


@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("bad", [3, None, "f", [len]], ids=["int", "None", "str", "list"])
def test_transform_of_a_non_function(transform, bad):
    if transform == "compile" and bad is None:
        pytest.skip("mx.compile(None, ...) is kiln's decorator form: it returns a partial")
    with pytest.raises(TypeError, match=rf"\[{transform}\].*callable"):
        TRANSFORMS[transform](bad)


@needs_mlx
@pytest.mark.parametrize("transform", list(TRANSFORMS))
def test_transform_of_a_non_function_in_mlx(transform):
    with pytest.raises(TypeError):
        getattr(mlx_core, transform)(3) if transform not in ("vjp", "jvp") else \
            getattr(mlx_core, transform)(3, [mlx_core.array(1.0)], [mlx_core.array(1.0)])


VMAP_OUTPUTS = {"float": lambda x: 1.5, "str": lambda x: "a", "None": lambda x: None, "int": lambda x: 3,
                "tuple with float": lambda x: (x, 2.0), "dict with int": lambda x: {"a": x, "b": 1}}


@pytest.mark.parametrize("kind", list(VMAP_OUTPUTS))
def test_vmap_of_non_array_outputs(kind):
    with pytest.raises(ValueError, match=r"\[vmap\]"):
        mx.vmap(VMAP_OUTPUTS[kind])(mx.array([1.0, 2.0]))
    if mlx_core is not None:
        with pytest.raises(ValueError):
            mlx_core.vmap(VMAP_OUTPUTS[kind])(mlx_core.array([1.0, 2.0]))


# ================================================================ hostile shapes
SHAPE_OPS = {
    "reshape": lambda m, s: m.reshape(m.zeros((4,)), s),
    "reshape method": lambda m, s: m.zeros((4,)).reshape(s),
    "zeros": lambda m, s: m.zeros(s),
    "ones": lambda m, s: m.ones(s),
    "full": lambda m, s: m.full(s, 1.0),
    "broadcast_to": lambda m, s: m.broadcast_to(m.array(1.0), s),
    "normal": lambda m, s: m.random.normal(s),
    "uniform": lambda m, s: m.random.uniform(shape=s),
    "randint": lambda m, s: m.random.randint(0, 5, s),
    "bernoulli": lambda m, s: m.random.bernoulli(0.5, s),
    "tile": lambda m, s: m.tile(m.zeros((2,)), s),
    "as_strided": lambda m, s: m.as_strided(m.zeros((4,)), s),
    "slice": lambda m, s: m.slice(m.zeros((4, 4)), m.array([0, 0]), (0, 1), s),
}
BAD_SHAPES = {"floats": (2.0, 2.0), "float entry": (2, 2.0), "str entry": ("2", 2), "None entry": (None, 2),
              "float": 4.0, "str": "4"}
GOOD_SHAPES = {"ints": (2, 2), "numpy ints": (np.int64(2), np.int32(2)), "array ints": None, "list": [2, 2]}


@pytest.mark.parametrize("op", list(SHAPE_OPS))
@pytest.mark.parametrize("bad", list(BAD_SHAPES))
def test_shape_arguments_take_integers_only(op, bad):
    with pytest.raises(TypeError, match="integer"):
        SHAPE_OPS[op](mx, BAD_SHAPES[bad])
    if mlx_core is not None:
        with pytest.raises((TypeError, RuntimeError, ValueError)):
            SHAPE_OPS[op](mlx_core, BAD_SHAPES[bad])


@pytest.mark.parametrize("op", list(SHAPE_OPS))
@pytest.mark.parametrize("good", list(GOOD_SHAPES))
def test_integer_shapes_still_work(op, good):
    shape = GOOD_SHAPES[good] if good != "array ints" else (mx.array(2), mx.array(2))
    out = SHAPE_OPS[op](mx, shape)
    want = (2, 4) if op == "tile" else (2, 2)
    assert out.shape == want


def test_shape_entries_beyond_int32():
    with pytest.raises(OverflowError, match=r"\[full\]"):
        mx.zeros((2**40, 2**40))


# ================================================================ threads
def test_shared_graph_evaluated_from_two_threads(monkeypatch):
    """Two threads evaluate one lazy graph: each node is computed once, both see the result."""
    from kiln.primitives import unary as U

    original = U.Sin.eval
    calls = {"n": 0}
    lock = threading.Lock()

    def slow(self, xp, x):
        with lock:
            calls["n"] += 1
        time.sleep(0)  # let the other thread run in the middle of an evaluation
        return original(self, xp, x)

    monkeypatch.setattr(U.Sin, "eval", slow)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for trial in range(40):
            x = mx.array(np.linspace(0, 1, 257, dtype=np.float32))
            y = x
            for _ in range(50):
                y = mx.sin(y) * 1.01 + 0.01
            z = [y + 1.0, y * 2.0]
            want = np.linspace(0, 1, 257, dtype=np.float32)
            for _ in range(50):
                want = np.sin(want) * np.float32(1.01) + np.float32(0.01)
            calls["n"] = 0
            barrier = threading.Barrier(2)
            results, errors = [None, None], []

            def work(k):
                barrier.wait()
                try:
                    mx.eval(z[k], y)
                    results[k] = (np.array(y), np.array(z[k]))
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(e)

            threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not errors, errors
            assert calls["n"] == 50, f"trial {trial}: {calls['n']} sin evaluations for 50 nodes"
            np.testing.assert_allclose(results[0][0], want, rtol=1e-5)
            np.testing.assert_array_equal(results[0][0], results[1][0])
            np.testing.assert_allclose(results[1][1], want * 2, rtol=1e-5)
    finally:
        sys.setswitchinterval(old)


def test_quantized_gguf_is_dequantized_after_the_checks(tmp_path):
    # Q5_0: a type kiln cannot keep quantized (Q4_0/Q4_1/Q8_0 load as affine-quantized arrays,
    # tests/test_quantized.py), so it is dequantized to float16 as MLX does.
    gguf = pytest.importorskip("gguf")
    from gguf.quants import dequantize, quantize

    path = str(tmp_path / "q.gguf")
    a = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    q = quantize(a, gguf.GGMLQuantizationType.Q5_0)
    w = gguf.GGUFWriter(path, "test")
    w.add_tensor("q", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q5_0)
    w.add_tensor("f", a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    got = mx.load(path)
    ref = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(path).tensors}
    want = dequantize(ref["q"], gguf.GGMLQuantizationType.Q5_0).astype(np.float16)
    assert got["q"].dtype == mx.float16 and got["q"].shape == (4, 64)
    np.testing.assert_array_equal(np.array(got["q"]), want)
    np.testing.assert_array_equal(np.array(got["f"]), a)
    # The same file cut into the quantized tensor's data is refused before dequantizing.
    raw = open(path, "rb").read()
    (tmp_path / "cut.gguf").write_bytes(raw[:-1100])
    with pytest.raises(RuntimeError, match="offset"):
        mx.load(str(tmp_path / "cut.gguf"))


@needs_mlx
def test_gguf_of_many_dimensions_from_mlx(tmp_path):
    a = np.arange(64, dtype=np.float32).reshape(2, 2, 2, 2, 2, 2)
    mlx_core.save_gguf(str(tmp_path / "d.gguf"), {"a": mlx_core.array(a)})
    np.testing.assert_array_equal(np.array(mx.load(str(tmp_path / "d.gguf"))["a"]), a)
