"""kiln's own file format for exported functions (``docs/export-format.md`` describes it).

Layout: a 24-byte preamble (magic, format version, header length, header
CRC-32), a UTF-8 JSON header, zero padding to a 64-byte boundary, then the
constants' raw bytes, each at a 64-byte aligned offset. The header records the
data section's length and CRC-32, so a truncated or altered file is refused
before any function is built. Primitives are stored by family and class name
with their dataclass fields as parameters.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import struct
import tempfile
import zlib

import numpy as np

from kiln import dtypes as _dt
from kiln.primitives.base import Primitive
from .graph import Node, Trace

MAGIC = b"\x89KILNFN\n"
VERSION = 1
_PRE = struct.Struct("<8sIQI")  # magic, version, header bytes, header crc32
_ALIGN = 64


class ExportFormatError(ValueError):
    """A file that is not a valid kiln (or MLX) function export."""


def _err(path, what: str) -> ExportFormatError:
    return ExportFormatError(f"[import_function] Cannot import {path!s}: {what}")


# ---------------------------------------------------------------- primitive registry
def _all_primitives() -> dict:
    """``"family.Class"`` -> class, for every loaded dataclass primitive."""
    out: dict = {}
    stack = [Primitive]
    while stack:
        c = stack.pop()
        stack.extend(c.__subclasses__())
        if c is Primitive or c.__name__.startswith("_") or not dataclasses.is_dataclass(c):
            continue
        out[prim_key(c)] = c
    return out


def prim_key(cls) -> str:
    return cls.__module__.rsplit(".", 1)[-1] + "." + cls.__qualname__


_REGISTRY: dict = {}


def lookup(key: str):
    cls = _REGISTRY.get(key)
    if cls is None:
        _REGISTRY.clear()
        _REGISTRY.update(_all_primitives())
        cls = _REGISTRY.get(key)
    return cls


# ---------------------------------------------------------------- parameter values
def encode_value(v, where: str):
    """A JSON value for a primitive parameter (tagged for what JSON lacks)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return {"float": float(v).hex()}
    if isinstance(v, (complex, np.complexfloating)):
        return {"complex": [float(v.real).hex(), float(v.imag).hex()]}
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, _dt.Dtype):
        return {"dtype": v.name}
    if isinstance(v, tuple):
        return {"tuple": [encode_value(x, where) for x in v]}
    if isinstance(v, list):
        return [encode_value(x, where) for x in v]
    raise ValueError(f"[export_function] Cannot export {where}: a parameter of type "
                     f"{type(v).__name__} has no file representation.")


def decode_value(v):
    if isinstance(v, list):
        return [decode_value(x) for x in v]
    if isinstance(v, dict):
        if len(v) != 1:
            raise ValueError(f"bad parameter value {v!r}")
        (tag, x), = v.items()
        if tag == "float":
            return float.fromhex(x)
        if tag == "complex":
            return complex(float.fromhex(x[0]), float.fromhex(x[1]))
        if tag == "dtype":
            return _dt._dtype_by_name(x)
        if tag == "tuple":
            return tuple(decode_value(e) for e in x)
        raise ValueError(f"unknown parameter tag {tag!r}")
    return v


def encode_prim(prim) -> dict:
    cls = type(prim)
    if not dataclasses.is_dataclass(cls) or lookup(prim_key(cls)) is not cls:
        raise ValueError(f"[export_function] Cannot export the primitive {cls.__name__}: it has no "
                         "file representation (only kiln's built-in primitives can be exported).")
    return {"p": prim_key(cls),
            "a": {f.name: encode_value(getattr(prim, f.name), cls.__name__)
                  for f in dataclasses.fields(cls)}}


def decode_prim(d: dict):
    key = d["p"]
    cls = lookup(key)
    if cls is None:
        raise ValueError(f"unknown primitive {key!r} (written by a newer kiln?)")
    params = {k: decode_value(v) for k, v in d.get("a", {}).items()}
    names = {f.name for f in dataclasses.fields(cls)}
    if set(params) != names:
        raise ValueError(f"primitive {key} has parameters {sorted(params)}, expected {sorted(names)}")
    return cls(**params)


# ---------------------------------------------------------------- writing
class ConstantPool:
    """Constant buffers shared by every trace of one file (deduplicated by content)."""

    def __init__(self):
        self.bufs: list = []
        self.dtypes: list = []
        self._index: dict = {}

    def add(self, buf: np.ndarray, dtype) -> int:
        raw = buf.tobytes()
        key = (dtype.name, buf.shape, hashlib.sha1(raw).digest())
        k = self._index.get(key)
        if k is None:
            k = self._index[key] = len(self.bufs)
            self.bufs.append(buf)
            self.dtypes.append(dtype)
        return k


def _shape_list(s) -> list:
    return [int(d) for d in s]


def trace_header(t: Trace, pool: ConstantPool) -> dict:
    return {
        "n_positional": t.n_pos,
        "keywords": t.kw_names,
        "inputs": [{"shape": _shape_list(s), "dtype": d.name} for s, d in zip(t.in_shapes, t.in_dtypes)],
        "constants": [pool.add(c, d) for c, d in zip(t.consts, t.const_dtypes)],
        "nodes": [dict(encode_prim(n.op), i=list(n.ins), o=list(n.outs),
                       s=[_shape_list(s) for s in n.shapes], d=[d.name for d in n.dtypes])
                  for n in t.nodes],
        "outputs": list(t.outputs),
    }


def write(path, traces_json: list, pool: ConstantPool, shapeless: bool, metadata: str) -> None:
    """Write a file atomically: a temporary file beside ``path``, then a rename."""
    offsets = []
    pos = 0
    for b in pool.bufs:
        offsets.append(pos)
        pos += -(-b.nbytes // _ALIGN) * _ALIGN
    crc = 0
    chunks = []
    for b, off in zip(pool.bufs, offsets):
        raw = b.tobytes()
        pad = -(-len(raw) // _ALIGN) * _ALIGN - len(raw)
        chunk = raw + b"\0" * pad
        crc = zlib.crc32(chunk, crc)
        chunks.append(chunk)
    header = {
        "format": "kiln.function",
        "version": VERSION,
        "shapeless": bool(shapeless),
        "metadata": metadata,
        "constants": [{"dtype": d.name, "shape": _shape_list(b.shape), "offset": off, "nbytes": b.nbytes}
                      for b, d, off in zip(pool.bufs, pool.dtypes, offsets)],
        "data_bytes": pos,
        "data_crc32": crc,
        "traces": traces_json,
    }
    hb = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    pre = _PRE.pack(MAGIC, VERSION, len(hb), zlib.crc32(hb))
    head_pad = -(-(len(pre) + len(hb)) // _ALIGN) * _ALIGN - len(pre) - len(hb)
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".kilnfn-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pre)
            f.write(hb)
            f.write(b"\0" * head_pad)
            for c in chunks:
                f.write(c)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------- reading
def is_kiln_file(head: bytes) -> bool:
    return head[:len(MAGIC)] == MAGIC


def read(path, blob: bytes):
    """Parse a kiln export. Returns ``(traces, shapeless, metadata)``; raises ExportFormatError."""
    if len(blob) < _PRE.size:
        raise _err(path, "the file is truncated (shorter than its preamble).")
    magic, version, hlen, hcrc = _PRE.unpack_from(blob)
    if magic != MAGIC:
        raise _err(path, "not a kiln function export (bad magic bytes).")
    if version != VERSION:
        raise _err(path, f"unsupported format version {version} (this kiln reads version {VERSION}).")
    if _PRE.size + hlen > len(blob):
        raise _err(path, f"the file is truncated (header of {hlen} bytes, file of {len(blob)} bytes).")
    hb = blob[_PRE.size:_PRE.size + hlen]
    if zlib.crc32(hb) != hcrc:
        raise _err(path, "the header is corrupt (CRC-32 mismatch).")
    try:
        header = json.loads(hb.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _err(path, f"the header is not valid JSON ({e}).") from None
    start = -(-(_PRE.size + hlen) // _ALIGN) * _ALIGN
    try:
        if header.get("format") != "kiln.function" or header.get("version") != VERSION:
            raise ValueError("the header does not describe a kiln function export")
        nbytes = int(header["data_bytes"])
        if len(blob) < start + nbytes:
            raise _err(path, f"the file is truncated (data section of {nbytes} bytes, "
                             f"{max(0, len(blob) - start)} present).")
        if len(blob) > start + nbytes:
            raise _err(path, "unexpected bytes after the data section.")
        data = memoryview(blob)[start:start + nbytes]
        if zlib.crc32(data) != header["data_crc32"]:
            raise _err(path, "the constant data is corrupt (CRC-32 mismatch).")
        consts = []
        for c in header["constants"]:
            dt = _dt._dtype_by_name(c["dtype"])
            shape = tuple(int(s) for s in c["shape"])
            off, nb = int(c["offset"]), int(c["nbytes"])
            if nb != math.prod(shape) * dt.size or off < 0 or off + nb > nbytes:
                raise ValueError("a constant's size or offset is inconsistent")
            consts.append((np.frombuffer(data, dt.np, math.prod(shape), off).reshape(shape), dt))
        shapeless = bool(header["shapeless"])
        traces = [_read_trace(t, consts, shapeless) for t in header["traces"]]
        metadata = header.get("metadata") or ""
    except ExportFormatError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise _err(path, f"the header is malformed ({type(e).__name__}: {e}).") from None
    return traces, shapeless, metadata


def _read_trace(tj: dict, consts: list, shapeless: bool) -> Trace:
    ins = tj["inputs"]
    n_pos = int(tj["n_positional"])
    kw = [str(k) for k in tj["keywords"]]
    if n_pos + len(kw) != len(ins):
        raise ValueError("input counts disagree")
    cidx = [int(k) for k in tj["constants"]]
    tc = [consts[k] for k in cidx]
    nodes = []
    nv = len(ins) + len(tc)
    for nj in tj["nodes"]:
        prim = decode_prim(nj)
        i, o = [int(v) for v in nj["i"]], [int(v) for v in nj["o"]]
        if any(v < 0 or v >= nv for v in i) or o != list(range(nv, nv + len(o))):
            raise ValueError("a node refers to a value not defined before it")
        nv += len(o)
        shapes = [tuple(int(d) for d in s) for s in nj["s"]]
        dts = [_dt._dtype_by_name(d) for d in nj["d"]]
        if len(shapes) != len(o) or len(dts) != len(o):
            raise ValueError("a node's output shapes/dtypes disagree with its outputs")
        nodes.append(Node(prim, i, o, shapes, dts))
    outs = [int(v) for v in tj["outputs"]]
    if any(v < 0 or v >= nv for v in outs):
        raise ValueError("an output refers to an undefined value")
    t = Trace(n_pos, kw, [tuple(int(d) for d in x["shape"]) for x in ins],
              [_dt._dtype_by_name(x["dtype"]) for x in ins], [c for c, _ in tc], nodes, outs, shapeless)
    t.const_dtypes = [d for _, d in tc]
    return t
