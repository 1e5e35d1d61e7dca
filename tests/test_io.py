"""Saving and loading: round trips, files exchanged with the real MLX, bad input."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest

import kiln.core as mx
from tests.harness import mlx_core, needs_mlx

DTYPES = ["float32", "float16", "bfloat16", "float64", "int8", "int16", "int32", "int64",
          "uint8", "uint16", "uint32", "uint64", "bool_", "complex64"]
GGUF_DTYPES = ["float32", "float16", "bfloat16", "float64", "int8", "int16", "int32", "int64"]
# The real MLX writes no bfloat16 GGUF and reads float64/int64 GGUF tensors as other types.
MLX_GGUF_DTYPES = ["float32", "float16", "int8", "int16", "int32"]
MLX_ST_DTYPES = [d for d in DTYPES if d != "float64"]  # MLX has no F64 safetensors


def _values(dtype: str, shape=(2, 3)):
    rng = np.random.default_rng(0)
    v = rng.standard_normal(shape) * 3
    if dtype == "bool_":
        return mx.array(v > 0)
    if dtype == "complex64":
        return mx.array((v + 1j * v[::-1]).astype(np.complex64))
    if dtype.startswith("uint"):
        v = np.abs(v)
    return mx.astype(mx.array(v.astype(np.float32)), getattr(mx, dtype))


def _same(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    to = np.float32 if a.dtype == mx.bfloat16 else None
    np.testing.assert_array_equal(np.array(a, dtype=to), np.array(b, dtype=to))


def _to_mlx(a):
    if a.dtype == mx.bfloat16:
        return mlx_core.array(np.array(a, dtype=np.float32)).astype(mlx_core.bfloat16)
    return mlx_core.array(np.array(a), getattr(mlx_core, "bool_" if a.dtype.name == "bool" else a.dtype.name))


def _from_mlx(a):
    if a.dtype == mlx_core.bfloat16:
        return mx.astype(mx.array(np.array(a.astype(mlx_core.float32))), mx.bfloat16)
    name = str(a.dtype).rsplit(".", 1)[-1]
    return mx.array(np.array(a), getattr(mx, "bool_" if name == "bool" else name))


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", DTYPES)
def test_npy_round_trip_and_extension(tmp_path, dtype):
    x = _values(dtype)
    mx.save(str(tmp_path / "a"), x)
    assert os.listdir(tmp_path) == ["a.npy"]
    _same(mx.load(str(tmp_path / "a.npy")), x)


@pytest.mark.parametrize("shape", [(), (0, 3), (4,)])
def test_npy_shapes_and_non_contiguous(tmp_path, shape):
    x = _values("float32", shape)
    mx.save(tmp_path / "s.npy", x)
    _same(mx.load(tmp_path / "s.npy"), x)
    t = mx.transpose(_values("float32", (3, 4)))
    mx.save(tmp_path / "t.npy", t)
    _same(mx.load(tmp_path / "t.npy"), t)


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_round_trip(tmp_path, compressed):
    arrays = {d: _values(d) for d in DTYPES}
    save = mx.savez_compressed if compressed else mx.savez
    save(str(tmp_path / "z"), _values("int32"), **arrays)
    out = mx.load(str(tmp_path / "z.npz"))
    assert set(out) == set(arrays) | {"arr_0"}
    for k, v in arrays.items():
        _same(out[k], v)


def test_safetensors_round_trip_with_metadata(tmp_path):
    arrays = {d: _values(d) for d in DTYPES}
    arrays["scalar"] = mx.array(2.5)
    mx.save_safetensors(str(tmp_path / "m"), arrays, metadata={"step": "3", "who": "kiln"})
    out, meta = mx.load(str(tmp_path / "m.safetensors"), return_metadata=True)
    assert meta == {"step": "3", "who": "kiln"}
    for k, v in arrays.items():
        _same(out[k], v)
    assert mx.load(str(tmp_path / "m.safetensors"), return_metadata=True)[1] == meta
    mx.save_safetensors(str(tmp_path / "n.safetensors"), {"a": arrays["float32"]})
    assert mx.load(str(tmp_path / "n.safetensors"), return_metadata=True)[1] == {}


def test_gguf_round_trip_with_metadata(tmp_path):
    pytest.importorskip("gguf")
    arrays = {d: _values(d) for d in GGUF_DTYPES}
    meta = {"name": "kiln", "tags": ["a", "b"], "n": mx.array(3), "v": mx.array([1.0, 2.0]),
            "u": mx.array(7, mx.uint8)}
    mx.save_gguf(str(tmp_path / "g"), arrays, meta)
    out, got = mx.load(str(tmp_path / "g.gguf"), return_metadata=True)
    for k, v in arrays.items():
        _same(out[k], v)
    assert got["name"] == "kiln" and got["tags"] == ["a", "b"]
    for k in ("n", "v", "u"):
        _same(got[k], meta[k])


def test_file_objects_and_format_argument(tmp_path):
    x = _values("float32")
    buf = io.BytesIO()
    mx.save(buf, x)
    buf.seek(0)
    _same(mx.load(buf, format="npy"), x)
    mx.save(str(tmp_path / "a.npy"), x)
    os.rename(tmp_path / "a.npy", tmp_path / "weights.bin")
    _same(mx.load(str(tmp_path / "weights.bin"), format="npy"), x)


# ---------------------------------------------------------------- exchange with MLX
@needs_mlx
@pytest.mark.parametrize("fmt", ["npy", "npz", "safetensors", "gguf"])
def test_kiln_files_load_in_mlx_and_back(tmp_path, fmt):
    dtypes = {"npy": DTYPES, "npz": DTYPES, "safetensors": MLX_ST_DTYPES, "gguf": MLX_GGUF_DTYPES}[fmt]
    arrays = {d: _values(d) for d in dtypes}
    p = str(tmp_path / f"k.{fmt}")
    if fmt == "npy":
        for d, v in arrays.items():
            mx.save(str(tmp_path / f"{d}.npy"), v)
            _same(_from_mlx(mlx_core.load(str(tmp_path / f"{d}.npy"))), v)
            mlx_core.save(str(tmp_path / f"m_{d}.npy"), _to_mlx(v))
            _same(mx.load(str(tmp_path / f"m_{d}.npy")), v)
        return
    if fmt == "npz":
        mx.savez(p, **arrays)
        mlx_core.savez(str(tmp_path / "m.npz"), **{k: _to_mlx(v) for k, v in arrays.items()})
        theirs = mlx_core.load(p)
        ours = mx.load(str(tmp_path / "m.npz"))
    elif fmt == "safetensors":
        mx.save_safetensors(p, arrays, {"a": "b"})
        mlx_core.save_safetensors(str(tmp_path / "m.safetensors"),
                                  {k: _to_mlx(v) for k, v in arrays.items()}, {"a": "b"})
        theirs, tmeta = mlx_core.load(p, return_metadata=True)
        ours, ometa = mx.load(str(tmp_path / "m.safetensors"), return_metadata=True)
        assert tmeta == ometa == {"a": "b"}
    else:
        pytest.importorskip("gguf")
        meta = {"s": "t", "l": ["x", "y"], "n": mx.array(3)}
        mx.save_gguf(p, arrays, meta)
        mlx_core.save_gguf(str(tmp_path / "m.gguf"), {k: _to_mlx(v) for k, v in arrays.items()},
                           {"s": "t", "l": ["x", "y"], "n": mlx_core.array(3)})
        theirs, tmeta = mlx_core.load(p, return_metadata=True)
        ours, ometa = mx.load(str(tmp_path / "m.gguf"), return_metadata=True)
        assert tmeta["s"] == ometa["s"] == "t" and tmeta["l"] == ometa["l"] == ["x", "y"]
        assert int(tmeta["n"].item()) == ometa["n"].item() == 3
    for k, v in arrays.items():
        _same(_from_mlx(theirs[k]), v)
        _same(ours[k], v)


# ---------------------------------------------------------------- bad input
def _write(path, data: bytes):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


@pytest.mark.parametrize("name,exc", [("missing.npy", RuntimeError), ("missing.npz", ValueError),
                                      ("missing.safetensors", RuntimeError),
                                      ("missing.gguf", ValueError)])
def test_missing_file(tmp_path, name, exc):
    with pytest.raises(exc, match="missing"):
        mx.load(str(tmp_path / name))


def test_truncated_and_corrupt_files(tmp_path):
    x = _values("float32", (8, 8))
    mx.save(str(tmp_path / "ok.npy"), x)
    mx.savez(str(tmp_path / "ok.npz"), a=x)
    mx.save_safetensors(str(tmp_path / "ok.safetensors"), {"a": x})
    cases = [
        ("t.npy", (tmp_path / "ok.npy").read_bytes()[:100], RuntimeError),
        ("junk.npy", b"hello world", RuntimeError),
        ("t.npz", (tmp_path / "ok.npz").read_bytes()[:60], ValueError),
        ("t.safetensors", (tmp_path / "ok.safetensors").read_bytes()[:50], RuntimeError),
        ("d.safetensors", (tmp_path / "ok.safetensors").read_bytes()[:-10], RuntimeError),
        ("j.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}", RuntimeError),
        ("t.gguf", b"GGUF\x03\x00", RuntimeError),
    ]
    for name, data, exc in cases:
        path = _write(tmp_path / name, data)
        if name.endswith(".gguf"):
            pytest.importorskip("gguf")
        with pytest.raises(exc, match=name):
            mx.load(path)


def test_format_errors(tmp_path):
    x = _values("float32")
    mx.save(str(tmp_path / "a.npy"), x)
    with pytest.raises(ValueError, match="Unknown file format txt"):
        mx.load(_write(tmp_path / "x.txt", b"hi"))
    with pytest.raises(ValueError, match="Could not infer file format"):
        mx.load(_write(tmp_path / "noext", b"hi"))
    with pytest.raises(ValueError, match="Unknown file format foo"):
        mx.load(str(tmp_path / "a.npy"), format="foo")
    with pytest.raises(ValueError, match="metadata not supported for format npy"):
        mx.load(str(tmp_path / "a.npy"), return_metadata=True)
    with pytest.raises(ValueError, match="Unsupported dtype"):
        np.save(tmp_path / "s.npy", np.array(["a", "b"]))
        mx.load(str(tmp_path / "s.npy"))


def test_save_errors():
    with pytest.raises(ValueError, match="Metadata must be a dictionary"):
        mx.save_safetensors(io.BytesIO(), {"a": mx.ones(2)}, metadata={"a": 1})
    with pytest.raises(ValueError, match="un-named variables and keyword arr_0"):
        mx.savez(io.BytesIO(), mx.ones(2), arr_0=mx.ones(3))
    with pytest.raises(TypeError):
        mx.save(io.BytesIO(), [1, 2])
    with pytest.raises(RuntimeError, match=r"\[save_gguf\] dtype"):
        mx.save_gguf(io.BytesIO(), {"a": mx.ones(2, mx.uint32)})
    with pytest.raises(RuntimeError, match="Failed to open file"):
        mx.save("/nonexistent-dir/sub/a", mx.ones(2))


def test_failed_save_leaves_no_file(tmp_path):
    target = tmp_path / "w.safetensors"
    mx.save_safetensors(str(target), {"a": mx.ones(3)})
    before = target.read_bytes()
    # The second array fails to convert after the first was accepted.
    with pytest.raises(TypeError):
        mx.save_safetensors(str(target), {"a": mx.zeros(3), "b": [1, 2]})
    with pytest.raises(RuntimeError):
        mx.save_gguf(str(tmp_path / "new"), {"a": mx.ones(2), "b": mx.ones(2, mx.uint32)})
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["w.safetensors"]


def test_write_error_midway_removes_temp_file(tmp_path, monkeypatch):
    # A failure while writing (disk full, ...) must not leave a partial file.
    target = tmp_path / "big.npy"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", boom)
    with pytest.raises(OSError, match="disk full"):
        mx.save(str(target), mx.ones(4))
    assert os.listdir(tmp_path) == []
