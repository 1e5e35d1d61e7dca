"""Header checks for the file formats ``mx.load`` reads: ``.npy``, ``.npz``, ``.safetensors``, ``.gguf``.

Every field of a header is checked against the bytes actually in the file before anything is
allocated from it, so a hostile or truncated file is refused with an error naming the file and
the field, in time and memory proportional to the file's size. GGUF headers are parsed here
(the ``gguf`` package's reader trusts its counts); ``gguf`` is only asked to dequantize blocks
whose sizes have been checked.
"""
from __future__ import annotations

import ast
import json
import struct

import numpy as np

from kiln.graph.array import array

# ---------------------------------------------------------------- shared


class HeaderError(RuntimeError):
    """A header field that does not agree with the file."""


def _refuse(where: str, name: str, field: str, why: str):
    raise HeaderError(f"[{where}] Invalid file {name}: field '{field}' {why}. "
                      "The file may be truncated or corrupt.")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _read_exact(f, n: int, where: str, name: str, field: str) -> bytes:
    """``n`` bytes of ``f``, read in bounded chunks (a lying length never allocates ``n`` at once)."""
    chunks, left = [], n
    while left > 0:
        c = f.read(min(left, 1 << 22))
        if not c:
            _refuse(where, name, field, f"claims {n} bytes but the file ends after {n - left}")
        chunks.append(c)
        left -= len(c)
    return b"".join(chunks)


# ---------------------------------------------------------------- npy

_NPY_MAGIC = b"\x93NUMPY"
_NPY_MAX_HEADER = 1 << 16  # NumPy writes a few hundred bytes; it refuses more than 10,000 by default


def npy_dtype_ok(dt: np.dtype) -> bool:
    """Whether kiln can hold ``dt`` (bfloat16 arrives as a two-byte void)."""
    if dt.hasobject or dt.names is not None or dt.subdtype is not None:
        return False
    if dt.kind == "V":
        return dt.itemsize == 2
    return dt.kind in "biufc" and dt.itemsize <= 16


def read_npy(f, name: str, size: int | None, where: str = "load") -> np.ndarray:
    """Read one ``.npy`` array from ``f`` after checking its header against ``size``.

    Args:
        f: a binary file object positioned at the magic string.
        name: the file's name, for messages.
        size: bytes from the current position to the end of the array's data (None: unknown).
        where: the op name for messages.
    Returns:
        The array (a NumPy array owning its data).
    """
    head = f.read(8)
    if len(head) < 8 or head[:6] != _NPY_MAGIC:
        _refuse(where, name, "magic", "is not the .npy magic string")
    major = head[6]
    if major == 1:
        raw = f.read(2)
        hlen = struct.unpack("<H", raw)[0] if len(raw) == 2 else -1
        used = 10
    elif major in (2, 3):
        raw = f.read(4)
        hlen = struct.unpack("<I", raw)[0] if len(raw) == 4 else -1
        used = 12
    else:
        _refuse(where, name, "version", f"is {major}.{head[7]} (1, 2 or 3 expected)")
    if hlen < 0:
        _refuse(where, name, "header_len", "is cut off")
    if hlen > _NPY_MAX_HEADER or (size is not None and used + hlen > size):
        _refuse(where, name, "header_len", f"is {hlen}, larger than the header can be")
    text = _read_exact(f, hlen, where, name, "header_len")
    used += hlen
    try:
        header = ast.literal_eval(text.decode("latin1"))
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        _refuse(where, name, "header", "is not a Python dict literal")
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        _refuse(where, name, "header", "must have exactly the keys 'descr', 'fortran_order', 'shape'")
    try:
        dt = np.lib.format.descr_to_dtype(header["descr"])
    except Exception:  # noqa: BLE001 - any malformed descr
        _refuse(where, name, "descr", f"{header['descr']!r:.60} is not a dtype")
    if not npy_dtype_ok(dt):
        raise ValueError(f"[{where}] Unsupported dtype {dt.str} in file {name} (field 'descr').")
    if not isinstance(header["fortran_order"], bool):
        _refuse(where, name, "fortran_order", "is not a bool")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(_is_int(s) and s >= 0 for s in shape):
        _refuse(where, name, "shape", f"{shape!r:.60} is not a tuple of non-negative ints")
    nbytes = _prod(shape) * dt.itemsize
    if size is not None and used + nbytes > size:
        _refuse(where, name, "shape", f"{shape} of {dt} needs {nbytes} data bytes but the file "
                f"has {size - used}")
    data = _read_exact(f, nbytes, where, name, "shape")
    buf = np.frombuffer(data, dtype=dt) if nbytes else np.zeros(0, dt)
    order = "F" if header["fortran_order"] else "C"
    return buf.reshape(shape, order=order).copy(order="C") if order == "F" else buf.reshape(shape).copy()


def remaining(f) -> int | None:
    """Bytes from ``f``'s position to its end, when it can seek (else None)."""
    try:
        if not f.seekable():
            return None
        pos = f.tell()
        end = f.seek(0, 2)
        f.seek(pos)
        return end - pos
    except (AttributeError, OSError, ValueError):
        return None


# ---------------------------------------------------------------- npz

# Deflate cannot expand more than about 1032:1; a member claiming more is lying.
_DEFLATE_RATIO = 1032


def check_npz_member(info, archive_size: int | None, name: str) -> None:
    """Check one zip member's sizes and method before it is decompressed."""
    import zipfile

    where = "load_npz"
    field = f"{info.filename}: "
    if info.compress_type == zipfile.ZIP_STORED:
        if info.file_size != info.compress_size:
            _refuse(where, name, field + "file_size", f"is {info.file_size} but the stored data "
                    f"is {info.compress_size} bytes")
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        if info.file_size > _DEFLATE_RATIO * info.compress_size + 1024:
            _refuse(where, name, field + "file_size", f"is {info.file_size}, more than "
                    f"{info.compress_size} deflated bytes can hold")
    else:
        _refuse(where, name, field + "compress_type", f"is {info.compress_type} (stored or deflate expected)")
    if archive_size is not None and info.header_offset + info.compress_size > archive_size:
        _refuse(where, name, field + "header_offset", "points past the end of the archive")


# ---------------------------------------------------------------- safetensors


def safetensors_header(raw, name: str, itemsizes: dict) -> tuple[dict, dict, int]:
    """Parse and check a safetensors header.

    Args:
        raw: the whole file (bytes or memoryview).
        name: the file's name, for messages.
        itemsizes: dtype tag -> bytes per element, for the tags kiln supports.
    Returns:
        ``(entries, metadata, data_start)``: name -> (tag, shape, start, end) with offsets
        relative to ``data_start``.
    """
    where = "load_safetensors"
    if len(raw) < 8:
        _refuse(where, name, "header size", f"needs 8 bytes but the file has {len(raw)}")
    n = struct.unpack("<Q", bytes(raw[:8]))[0]
    if 8 + n > len(raw):
        _refuse(where, name, "header size", f"is {n} bytes but the file is only {len(raw)} bytes")

    def no_duplicates(pairs):
        d = {}
        for k, v in pairs:
            if k in d:
                _refuse(where, name, k, "appears twice in the header")
            d[k] = v
        return d

    try:
        header = json.loads(bytes(raw[8:8 + n]).decode("utf-8"), object_pairs_hook=no_duplicates)
    except HeaderError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        _refuse(where, name, "header", f"is not valid JSON ({type(e).__name__}: {str(e)[:80]})")
    if not isinstance(header, dict):
        _refuse(where, name, "header", "is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        _refuse(where, name, "__metadata__", "must map strings to strings")
    body = len(raw) - 8 - n
    entries = {}
    for k, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            _refuse(where, name, k, "must have exactly the keys 'dtype', 'shape', 'data_offsets'")
        tag, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(tag, str) or tag not in itemsizes:
            _refuse(where, name, f"{k}.dtype", f"{tag!r:.40} is not a supported dtype")
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            _refuse(where, name, f"{k}.shape", f"{shape!r:.60} is not a list of non-negative ints")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(v) for v in offs)
                or not 0 <= offs[0] <= offs[1] <= body):
            _refuse(where, name, f"{k}.data_offsets", f"{offs!r:.60} is not [start, end] within the "
                    f"{body} data bytes")
        if offs[1] - offs[0] != _prod(shape) * itemsizes[tag]:
            _refuse(where, name, f"{k}.data_offsets", f"{offs} span {offs[1] - offs[0]} bytes but shape "
                    f"{shape} of {tag} needs {_prod(shape) * itemsizes[tag]}")
        entries[k] = (tag, tuple(shape), offs[0], offs[1])
    spans = sorted((s, e, k) for k, (_, _, s, e) in entries.items() if e > s)
    for (s0, e0, k0), (s1, _, k1) in zip(spans, spans[1:]):
        if s1 < e0:
            _refuse(where, name, f"{k1}.data_offsets", f"overlap those of {k0!r}")
    return entries, metadata, 8 + n


# ---------------------------------------------------------------- gguf

# Value types of the GGUF specification: tag -> (struct format, size) for fixed-size ones.
_GGUF_FIXED = {0: ("<u1", 1), 1: ("<i1", 1), 2: ("<u2", 2), 3: ("<i2", 2), 4: ("<u4", 4), 5: ("<i4", 4),
               6: ("<f4", 4), 7: ("<u1", 1), 10: ("<u8", 8), 11: ("<i8", 8), 12: ("<f8", 8)}
_GGUF_STR, _GGUF_ARR, _GGUF_BOOL = 8, 9, 7


class _Cursor:
    __slots__ = ("raw", "pos", "name")

    def __init__(self, raw, name):
        self.raw, self.pos, self.name = raw, 0, name

    def need(self, n: int, field: str):
        if n < 0 or self.pos + n > len(self.raw):
            _refuse("load_gguf", self.name, field, f"needs {n} bytes at offset {self.pos} but the file "
                    f"has {len(self.raw) - self.pos} left")

    def u32(self, field):
        self.need(4, field)
        v = struct.unpack_from("<I", self.raw, self.pos)[0]
        self.pos += 4
        return v

    def u64(self, field):
        self.need(8, field)
        v = struct.unpack_from("<Q", self.raw, self.pos)[0]
        self.pos += 8
        return v

    def string(self, field):
        n = self.u64(field + " length")
        self.need(n, field)
        b = bytes(self.raw[self.pos:self.pos + n])
        self.pos += n
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            _refuse("load_gguf", self.name, field, "is not UTF-8")

    def fixed(self, tag, count, field):
        fmt, size = _GGUF_FIXED[tag]
        self.need(count * size, field)
        a = np.frombuffer(self.raw, dtype=fmt, count=count, offset=self.pos).copy()
        self.pos += count * size
        return a


def _gguf_value(c: _Cursor, tag: int, key: str):
    """One metadata value as MLX returns it: str, list of str, or an array."""
    if tag == _GGUF_STR:
        return c.string(key)
    if tag in _GGUF_FIXED:
        v = c.fixed(tag, 1, key).reshape(())
        v = v.astype(bool) if tag == _GGUF_BOOL else v.astype(v.dtype.newbyteorder("="))
        return array(v)
    if tag != _GGUF_ARR:
        _refuse("load_gguf", c.name, key + " type", f"is {tag}, not a GGUF value type")
    etag = c.u32(key + " element type")
    count = c.u64(key + " count")
    if etag == _GGUF_STR:
        c.need(8 * count, key + " count")  # every string takes at least its 8-byte length
        return [c.string(f"{key}[{i}]") for i in range(count)]
    if etag in _GGUF_FIXED:
        v = c.fixed(etag, count, key + " count")
        if count == 0:
            return array(np.zeros((0,), np.float32))
        v = v.astype(bool) if etag == _GGUF_BOOL else v.astype(v.dtype.newbyteorder("="))
        return array(v)
    _refuse("load_gguf", c.name, key + " element type", f"is {etag} (nested arrays are not supported)")


def parse_gguf(raw, name: str, tensor_sizes) -> tuple[list, dict]:
    """Parse and check a GGUF (version 2 or 3) file held in ``raw``.

    Args:
        raw: the whole file (bytes).
        name: the file's name, for messages.
        tensor_sizes: ``f(ggml_type) -> (block elements, block bytes)`` or None for an unknown type.
    Returns:
        ``(tensors, metadata)``: tensors as (name, shape in row-major order, ggml type, absolute
        offset, byte size), metadata as MLX returns it.
    """
    where = "load_gguf"
    c = _Cursor(raw, name)
    c.need(4, "magic")
    if bytes(raw[:4]) != b"GGUF":
        _refuse(where, name, "magic", "is not 'GGUF'")
    c.pos = 4
    version = c.u32("version")
    if version not in (2, 3):
        _refuse(where, name, "version", f"is {version} (2 or 3 expected)")
    n_tensors = c.u64("tensor_count")
    n_kv = c.u64("metadata_kv_count")
    # Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info 8 + 4 + 4 + 8.
    c.need(13 * n_kv, "metadata_kv_count")
    c.need(24 * n_tensors + 13 * n_kv, "tensor_count")
    metadata, alignment = {}, 32
    for _ in range(n_kv):
        key = c.string("metadata key")
        if key in metadata:
            _refuse(where, name, key, "appears twice")
        tag = c.u32(key + " type")
        if key == "general.alignment":
            if tag != 4:
                _refuse(where, name, key, "must be a uint32")
            alignment = int(c.fixed(4, 1, key)[0])
            if alignment == 0 or alignment & (alignment - 1):
                _refuse(where, name, key, f"is {alignment}, not a power of two")
            metadata[key] = array(np.array(alignment, np.uint32))
            continue
        metadata[key] = _gguf_value(c, tag, key)
    infos = []
    seen = set()
    for _ in range(n_tensors):
        tname = c.string("tensor name")
        if tname in seen:
            _refuse(where, name, tname, "names two tensors")
        seen.add(tname)
        nd = c.u32(tname + " n_dims")
        # ggml itself stops at 4 dimensions, but MLX writes more: only the file bounds them.
        c.need(8 * nd, tname + " n_dims")
        dims = [c.u64(f"{tname} dims[{i}]") for i in range(nd)]
        gtype = c.u32(tname + " type")
        offset = c.u64(tname + " offset")
        sizes = tensor_sizes(gtype)
        if sizes is None:
            _refuse(where, name, tname + " type", f"is {gtype}, not a known tensor type")
        block, block_bytes = sizes
        n = _prod(dims)
        if block > 1 and (not dims or dims[0] % block):
            _refuse(where, name, f"{tname} dims[0]", f"is {dims[0] if dims else 'missing'}, not a multiple "
                    f"of the block size {block}")
        if offset % alignment:
            _refuse(where, name, tname + " offset", f"is {offset}, not a multiple of the alignment {alignment}")
        infos.append((tname, tuple(reversed(dims)), gtype, offset, n // block * block_bytes))
    start = -(-c.pos // alignment) * alignment
    tensors = []
    for tname, shape, gtype, offset, nbytes in infos:
        if start + offset + nbytes > len(raw):
            _refuse(where, name, tname + " offset", f"{offset} with {nbytes} bytes of data runs past the "
                    f"end of the file ({len(raw)} bytes)")
        tensors.append((tname, shape, gtype, start + offset, nbytes))
    return tensors, metadata
