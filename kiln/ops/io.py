"""Saving and loading arrays: ``.npy``, ``.npz``, ``.safetensors`` and ``.gguf``.

Files are written to a temporary file in the target's directory and moved
into place with ``os.replace``, so a failed save never leaves a half-written
file under the target name. bfloat16 round-trips in every format that has
it: ``.npy``/``.npz`` store it as two-byte void (``'<V2'``, what MLX and
``ml_dtypes`` write), safetensors as ``BF16`` and GGUF as ``BF16``.

The npy/npz readers are NumPy's; safetensors is a JSON header and raw bytes,
read and written here (the ``safetensors`` package has no bfloat16 for NumPy);
GGUF is written here (the ``gguf`` writer adds keys of its own) and read
with the optional ``gguf`` package.
"""
from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
import zipfile
import zlib
from typing import Any, Optional

import numpy as np

from kiln import dtypes as _dt
from kiln.graph.array import array
from kiln.ops import file_checks as _fc

__all__ = ["save", "savez", "savez_compressed", "save_safetensors", "save_gguf", "load"]


# ---------------------------------------------------------------- helpers
def _is_path(file) -> bool:
    return isinstance(file, (str, os.PathLike))


def _with_ext(file, ext: str):
    """``file`` with ``ext`` appended unless it already ends with it (paths only)."""
    if not _is_path(file):
        return file
    path = os.fspath(file)
    return path if path.endswith(ext) else path + ext


def _name_of(file) -> str:
    if _is_path(file):
        return os.fspath(file)
    return str(getattr(file, "name", "<file object>"))


def _host(a, op: str) -> np.ndarray:
    """An array's values as a C-contiguous NumPy array (evaluating it)."""
    if not isinstance(a, array):
        raise TypeError(f"[{op}] Expected an array but received {type(a).__name__}.")
    return _c_order(np.asarray(a))


def _c_order(buf: np.ndarray) -> np.ndarray:
    # np.ascontiguousarray would turn 0-d arrays into 1-d ones.
    return buf if buf.flags.c_contiguous else buf.copy(order="C")


@contextlib.contextmanager
def _atomic_open(file, op: str):
    """A binary file to write ``file`` through.

    For a path: a temporary file in the same directory, moved onto the
    target only when the block finishes without error (and removed
    otherwise). A file object is written directly.
    """
    if not _is_path(file):
        yield file
        return
    path = os.fspath(file)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                                   suffix=".tmp")
    except OSError as e:
        raise RuntimeError(f"[{op}] Failed to open file {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _to_kiln(buf: np.ndarray, name: str, where: str) -> array:
    """A loaded NumPy buffer as a kiln array (bfloat16 from two-byte voids)."""
    dt = buf.dtype
    if dt.kind == "V" and dt.itemsize == 2 and dt.names is None:
        buf = buf.view(_dt.bfloat16.np)
    elif dt.byteorder == ">" or (dt.byteorder == "=" and not _LITTLE):
        buf = buf.astype(dt.newbyteorder("<"))
    try:
        kdt = _dt.from_numpy(buf.dtype)
    except Exception:
        raise ValueError(f"[{where}] Unsupported dtype {dt.str} in file {name}.") from None
    return array(_c_order(buf), kdt)


_LITTLE = np.little_endian


# ---------------------------------------------------------------- npy / npz
def save(file, arr: array) -> None:
    """Save an array to a binary file in ``.npy`` format.

    Args:
        file (str, pathlib.Path, file): File to save to; ``.npy`` is
          appended to a path that does not end with it.
        arr (array): Array to be saved.
    """
    data = _host(arr, "save")
    file = _with_ext(file, ".npy")
    with _atomic_open(file, "save") as f:
        np.lib.format.write_array(f, data, allow_pickle=False)


def _savez(file, args, kwargs, compressed: bool, op: str) -> None:
    arrays = {}
    for i, a in enumerate(args):
        arrays[f"arr_{i}"] = a
    for k, a in kwargs.items():
        if k in arrays:
            raise ValueError(f"[{op}] Cannot use un-named variables and keyword {k}")
        arrays[k] = a
    data = {k: _host(a, op) for k, a in arrays.items()}
    file = _with_ext(file, ".npz")
    mode = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with _atomic_open(file, op) as f:
        with zipfile.ZipFile(f, "w", compression=mode, allowZip64=True) as zf:
            for k, v in data.items():
                with zf.open(k + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, v, allow_pickle=False)


def savez(file, *args, **kwargs) -> None:
    """Save several arrays to a binary file in uncompressed ``.npz`` format.

    Args:
        file (file, str, pathlib.Path): File to save to; ``.npz`` is appended
          to a path that does not end with it.
        *args (arrays): Arrays saved under the names ``arr_0``, ``arr_1``, ...
        **kwargs (arrays): Arrays saved under their keyword.
    """
    _savez(file, args, kwargs, False, "savez")


def savez_compressed(file, *args, **kwargs) -> None:
    """Save several arrays to a binary file in compressed ``.npz`` format.

    Args:
        file (file, str, pathlib.Path): File to save to; ``.npz`` is appended
          to a path that does not end with it.
        *args (arrays): Arrays saved under the names ``arr_0``, ``arr_1``, ...
        **kwargs (arrays): Arrays saved under their keyword.
    """
    _savez(file, args, kwargs, True, "savez_compressed")


def _read_npy(f, name: str, size: Optional[int] = None) -> array:
    # The header is checked against the ``size`` bytes really there before any allocation.
    buf = _fc.read_npy(f, name, size if size is not None else _fc.remaining(f))
    return _to_kiln(buf, name, "load")


def _load_npz(f, name: str) -> dict:
    archive_size = _fc.remaining(f)  # before ZipFile moves the position
    try:
        zf = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"[load_npz] {name} is not a valid .npz (zip) file: {e}") from None
    out = {}
    with zf:
        for info in zf.infolist():
            member = info.filename
            key = member[:-4] if member.endswith(".npy") else member
            _fc.check_npz_member(info, archive_size, name)
            if key in out:
                raise RuntimeError(f"[load_npz] Invalid file {name}: member {member!r} appears twice.")
            try:
                with zf.open(info) as m:
                    out[key] = _read_npy(m, f"{name}:{member}", info.file_size)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
                raise RuntimeError(f"[load_npz] Corrupt member {member} in {name}: {e}") from None
    return out


# ---------------------------------------------------------------- safetensors
_ST_DTYPES = {
    "BOOL": _dt.bool_, "U8": _dt.uint8, "I8": _dt.int8, "U16": _dt.uint16, "I16": _dt.int16,
    "U32": _dt.uint32, "I32": _dt.int32, "U64": _dt.uint64, "I64": _dt.int64,
    "F16": _dt.float16, "BF16": _dt.bfloat16, "F32": _dt.float32, "F64": _dt.float64,
    "C64": _dt.complex64,
}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}
# fp8 (E4M3) tensors load as their uint8 codes, as in MLX (mx.from_fp8 decodes them).
_ST_DTYPES["F8_E4M3"] = _dt.uint8


def save_safetensors(file, arrays: dict, metadata: Optional[dict] = None) -> None:
    """Save arrays to a binary file in ``.safetensors`` format.

    Args:
        file (file, str, pathlib.Path): File to save to; ``.safetensors`` is
          appended to a path that does not end with it.
        arrays (dict(str, array)): Names mapped to arrays.
        metadata (dict(str, str), optional): Text metadata saved in the header.
    """
    if not isinstance(arrays, dict):
        raise TypeError("[save_safetensors] arrays must be a dictionary of names to arrays.")
    if metadata is not None and not (
            isinstance(metadata, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise ValueError("[save_safetensors] Metadata must be a dictionary with string keys and values")
    header: dict = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    chunks = []
    offset = 0
    for k in sorted(arrays):
        if not isinstance(k, str) or k == "__metadata__":
            raise ValueError(f"[save_safetensors] Invalid tensor name {k!r}.")
        a = arrays[k]
        data = _host(a, "save_safetensors")
        raw = data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
        header[k] = {"dtype": _ST_NAMES[a.dtype], "shape": list(data.shape),
                     "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data start is 8-byte aligned
    with _atomic_open(_with_ext(file, ".safetensors"), "save_safetensors") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


def _load_safetensors(f, name: str):
    where = "load_safetensors"
    raw = f.read()
    # Every field is checked against the file before anything is allocated from it.
    entries, metadata, data_start = _fc.safetensors_header(
        raw, name, {k: d.size for k, d in _ST_DTYPES.items()})
    body = memoryview(raw)[data_start:]
    out = {}
    for k, (tag, shape, start, end) in entries.items():
        dtype = _ST_DTYPES[tag]
        buf = np.frombuffer(body[start:end], dtype=np.dtype(dtype.np).newbyteorder("<"))
        out[k] = _to_kiln(buf.reshape(shape), name, where)
    return out, dict(metadata)


# ---------------------------------------------------------------- gguf
# GGUF value types (metadata) and tensor types, from the GGUF specification.
_GV = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7,
       "str": 8, "arr": 9, "u64": 10, "i64": 11, "f64": 12}
_GV_OF_DTYPE = {
    _dt.uint8: (0, "<u1"), _dt.int8: (1, "<i1"), _dt.uint16: (2, "<u2"), _dt.int16: (3, "<i2"),
    _dt.uint32: (4, "<u4"), _dt.int32: (5, "<i4"), _dt.float32: (6, "<f4"), _dt.bool_: (7, "<u1"),
    _dt.uint64: (10, "<u8"), _dt.int64: (11, "<i8"), _dt.float64: (12, "<f8"),
}
_GT_OF_DTYPE = {_dt.float32: 0, _dt.float16: 1, _dt.int8: 24, _dt.int16: 25, _dt.int32: 26,
                _dt.int64: 27, _dt.float64: 28, _dt.bfloat16: 30}
_DTYPE_OF_GT = {v: k for k, v in _GT_OF_DTYPE.items()}
_GGUF_ALIGN = 32


def _gguf_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _gguf_value(key: str, v) -> bytes:
    """The type tag and bytes of one metadata value."""
    if isinstance(v, str):
        return struct.pack("<I", _GV["str"]) + _gguf_str(v)
    if isinstance(v, (list, tuple)):
        if not all(isinstance(s, str) for s in v):
            raise ValueError(f"[save_gguf] Metadata list {key!r} must hold only strings.")
        body = b"".join(_gguf_str(s) for s in v)
        return struct.pack("<IIQ", _GV["arr"], _GV["str"], len(v)) + body
    if isinstance(v, (bool, int, float)):
        v = array(v)
    if not isinstance(v, array):
        raise ValueError(f"[save_gguf] Metadata {key!r} must be an array, a string or a list "
                         f"of strings, not {type(v).__name__}.")
    if v.dtype not in _GV_OF_DTYPE or v.ndim > 1:
        raise ValueError(f"[save_gguf] Metadata {key!r}: only scalar or 1D arrays of "
                         f"integer, bool or float32/64 types are supported, got {v.dtype} "
                         f"with shape {v.shape}.")
    tag, fmt = _GV_OF_DTYPE[v.dtype]
    data = np.asarray(v).astype(fmt).tobytes()
    if v.ndim == 0:
        return struct.pack("<I", tag) + data
    return struct.pack("<IIQ", _GV["arr"], tag, v.size) + data


def save_gguf(file, arrays: dict, metadata: Optional[dict] = None) -> None:
    """Save arrays to a binary file in ``.gguf`` format (version 3).

    Args:
        file (file, str, pathlib.Path): File to save to; ``.gguf`` is appended
          to a path that does not end with it.
        arrays (dict(str, array)): Names mapped to arrays (float32, float16,
          bfloat16, float64, int8, int16, int32 or int64).
        metadata (dict(str, Union[array, str, list(str)]), optional): Values
          are scalar or 1D arrays, strings, or lists of strings.
    """
    if not isinstance(arrays, dict):
        raise TypeError("[save_gguf] arrays must be a dictionary of names to arrays.")
    metadata = metadata or {}
    kv = []
    for k, v in metadata.items():
        if not isinstance(k, str):
            raise ValueError("[save_gguf] Metadata keys must be strings.")
        kv.append(_gguf_str(k) + _gguf_value(k, v))
    infos, chunks = [], []
    offset = 0
    for k, a in arrays.items():
        data = _host(a, "save_gguf")
        if a.dtype not in _GT_OF_DTYPE:
            raise RuntimeError(f"[save_gguf] dtype {a.dtype.name} is not supported (array {k!r}).")
        raw = data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
        dims = tuple(reversed(data.shape))  # GGUF lists dimensions fastest first
        infos.append(_gguf_str(k) + struct.pack("<I", len(dims))
                     + b"".join(struct.pack("<Q", d) for d in dims)
                     + struct.pack("<IQ", _GT_OF_DTYPE[a.dtype], offset))
        pad = -len(raw) % _GGUF_ALIGN
        chunks.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kv)) + b"".join(kv) + b"".join(infos)
    head += b"\0" * (-len(head) % _GGUF_ALIGN)
    with _atomic_open(_with_ext(file, ".gguf"), "save_gguf") as f:
        f.write(head)
        for c in chunks:
            f.write(c)


def _gguf_sizes(gtype: int):
    """(elements, bytes) of one block of GGML tensor type ``gtype``; None if unknown."""
    if gtype in _DTYPE_OF_GT:
        return 1, _DTYPE_OF_GT[gtype].size
    try:
        import gguf

        return tuple(gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(gtype)])
    except (ImportError, ValueError, KeyError):
        return None


# GGML block types kept quantized: type -> (bytes per block of 32, bits)
_GGUF_AFFINE = {2: (18, 4), 3: (20, 4), 8: (34, 8)}


def _gguf_affine(raw: np.ndarray, gt: int, shape: tuple):
    """A Q4_0/Q4_1/Q8_0 tensor as (packed uint32 codes, float16 scales, float16 biases).

    Each GGML block holds 32 values with a float16 scale ``d`` (Q4_1 also a
    minimum ``m``): Q4_0 is ``d * (q - 8)``, Q4_1 ``d * q + m``, Q8_0
    ``d * q`` with signed q; as affine groups of 32 that is scale ``d`` and
    bias ``-8d``, ``m`` or ``-128d`` (Q8_0 codes shifted by 128).
    """
    from kiln.primitives.quantized import pack

    nbytes, bits = _GGUF_AFFINE[gt]
    blocks = raw.view(np.uint8).reshape(-1, nbytes)
    d = blocks[:, 0:2].copy().view("<f2")[:, 0]
    if gt == 8:
        q = blocks[:, 2:].copy().view(np.int8).astype(np.int16) + 128
        bias = (-128.0 * d.astype(np.float32)).astype(np.float16)
    else:
        off = 2 if gt == 2 else 4
        qs = blocks[:, off:off + 16]
        q = np.concatenate([qs & 0xF, qs >> 4], axis=1)
        bias = ((-8.0 * d.astype(np.float32)).astype(np.float16) if gt == 2
                else blocks[:, 2:4].copy().view("<f2")[:, 0])
    rows = shape[:-1]
    k = shape[-1]
    codes = q.astype(np.uint32).reshape(rows + (k,))
    return (pack(np, codes, bits), d.reshape(rows + (k // 32,)).astype(np.float16),
            bias.reshape(rows + (k // 32,)).astype(np.float16))


def _load_gguf(path: str, name: str):
    where = "load_gguf"
    with open(path, "rb") as f:
        raw = f.read()
    # The header is parsed here with every count, length and offset checked against the file
    # (the gguf package's reader trusts them); gguf only dequantizes checked blocks.
    tensors, metadata = _fc.parse_gguf(raw, name, _gguf_sizes)
    arrays = {}
    for tname, shape, gt, offset, nbytes in tensors:
        data = np.frombuffer(raw, dtype=np.uint8, count=nbytes, offset=offset)
        if gt in _GGUF_AFFINE:
            # Q4_0 / Q4_1 / Q8_0 load as affine-quantized arrays, as MLX's do (the parser has
            # checked that the last dimension is whole blocks of 32 and the bytes are there).
            wq, sc, bi = _gguf_affine(data, gt, shape)
            base = tname[:-len("weight")] if tname.endswith(".weight") else tname + "."
            arrays[base + "scales"] = _to_kiln(sc, name, where)
            arrays[base + "biases"] = _to_kiln(bi, name, where)
            buf = wq
        elif gt in _DTYPE_OF_GT:
            dtype = _DTYPE_OF_GT[gt]
            buf = data.view(np.dtype(dtype.np).newbyteorder("<")).reshape(shape)
        else:
            try:
                import gguf
                from gguf.quants import dequantize
            except ImportError:
                raise ImportError(f"[{where}] Tensor {tname!r} of {name} is quantized; dequantizing it needs "
                                  "the optional 'gguf' package (pip install gguf).") from None
            # Quantized tensors are dequantized to float16 (as MLX does for the types it cannot keep).
            row = shape[-1] if shape else 1
            block, block_bytes = _gguf_sizes(gt)
            rows = data.reshape(-1, row // block * block_bytes) if nbytes else data.reshape(0, 1)
            try:
                buf = dequantize(rows, gguf.GGMLQuantizationType(gt)).astype(np.float16).reshape(shape)
            except Exception as e:  # noqa: BLE001 - the dequantizer's own checks
                raise RuntimeError(f"[{where}] Cannot dequantize tensor {tname!r} of {name}: {e}") from None
        arrays[tname] = _to_kiln(np.array(buf), name, where)
    return arrays, metadata


# ---------------------------------------------------------------- load
_FORMATS = ("npy", "npz", "safetensors", "gguf")


def load(file, /, format: Optional[str] = None, return_metadata: bool = False, *,
         stream=None) -> Any:
    """Load array(s) from a binary file.

    Supported formats: ``.npy``, ``.npz``, ``.safetensors`` and ``.gguf``.

    Args:
        file (file, str, pathlib.Path): File to load from.
        format (str, optional): Format of the file; inferred from the file
          extension when ``None``. Default: ``None``.
        return_metadata (bool, optional): Also return the metadata of formats
          that have it (safetensors, gguf). Default: ``False``.

    Returns:
        array, dict, or tuple: An array for ``.npy``; a dict of names to
        arrays otherwise; with ``return_metadata`` a tuple ``(arrays, metadata)``.
    """
    name = _name_of(file)
    if format is None:
        base = os.path.basename(name)
        if "." not in base:
            raise ValueError(f"[load] Could not infer file format from extension of {name}")
        format = base.rsplit(".", 1)[1]
    if format not in _FORMATS:
        raise ValueError(f"[load] Unknown file format {format} (file {name})")
    if return_metadata and format in ("npy", "npz"):
        raise ValueError(f"[load] metadata not supported for format {format}")
    if format == "gguf":
        if not _is_path(file):
            raise ValueError("[load_gguf] .gguf files can only be loaded from a path.")
        if not os.path.isfile(name):
            raise ValueError(f"[load_gguf] Failed to open {name}")
        arrays, metadata = _load_gguf(name, name)
        return (arrays, metadata) if return_metadata else arrays
    with _open_for_read(file, format) as f:
        if format == "npy":
            a = _read_npy(f, name)
            if _is_path(file):
                _check_npy_end(f, name)
            return a
        if format == "npz":
            return _load_npz(f, name)
        arrays, metadata = _load_safetensors(f, name)
        return (arrays, metadata) if return_metadata else arrays


def _check_npy_end(f, name: str) -> None:
    """Nothing is expected after an array's data in a .npy file."""
    if f.read(1):
        raise RuntimeError(f"[load] Unexpected data after the array in {name}.")


@contextlib.contextmanager
def _open_for_read(file, format: str):
    if not _is_path(file):
        yield file
        return
    path = os.fspath(file)
    try:
        f = open(path, "rb")
    except OSError as e:
        kind = ValueError if format == "npz" else RuntimeError
        where = {"npz": "load_npz", "safetensors": "load_safetensors"}.get(format, "load")
        raise kind(f"[{where}] Failed to open file {path}: {e.strerror or e}") from None
    with f:
        yield f

