"""Reading the ``.mlxfn`` files the real MLX writes, and MLX-style export callbacks.

The layout was learned from files MLX 0.32.4 writes (``docs/export-format.md``
describes it). Everything is little-endian; a string or vector is a uint64
count followed by its items; a shape is a vector of int32; a dtype is a
uint32 code and a uint8 item size. A file is:

    string  MLX version          int32 trace count      uint8 shapeless
    string  metadata
    per trace:
      vector<string> keyword names       vector<uint64> input ids
      vector<(shape, dtype)> inputs      vector<uint64> output ids
      uint64 tape length, then per tape entry:
        uint64 id, uint8 has_primitive
        primitive: vector<uint64> input ids, 3 x int32 stream, string name,
                   the primitive's arguments, uint64 sibling count, then
                   (no siblings) shape, dtype  or  vector<uint64> output ids,
                   vector<shape>, vector<dtype>
        otherwise: uint8 is_constant; a constant: shape, dtype, raw bytes
                   (only the first time its id appears in the file)

Each MLX primitive name maps (``mlx_prims.PRIMS``) to an argument schema and
a builder that makes the same computation from kiln's public ops, so an
imported function is an ordinary kiln graph.
"""
from __future__ import annotations

import math
import struct

import numpy as np

from kiln import dtypes as _dt
from .graph import Node, Trace
from .kilnfmt import _err

# MLX's dtype codes (as they appear in files).
DTYPE_CODES = {0: "bool", 1: "uint8", 2: "uint16", 3: "uint32", 4: "uint64", 5: "int8", 6: "int16",
               7: "int32", 8: "int64", 9: "float16", 10: "float32", 11: "float64", 12: "bfloat16",
               13: "complex64"}
CODE_OF = {v: k for k, v in DTYPE_CODES.items()}


class _Truncated(Exception):
    pass


class Reader:
    """A cursor over the bytes of a file (every read checks the bounds)."""

    def __init__(self, blob: bytes):
        self.b = blob
        self.p = 0
        self.where = ""  # context for errors: the primitive being read

    def take(self, n: int) -> bytes:
        if n < 0 or self.p + n > len(self.b):
            raise _Truncated(f"needed {n} bytes at offset {self.p}, the file has {len(self.b)}")
        out = self.b[self.p:self.p + n]
        self.p += n
        return out

    def _s(self, fmt: str):
        st = struct.Struct("<" + fmt)
        return st.unpack(self.take(st.size))[0]

    def u8(self) -> int:
        return self._s("B")

    def boolean(self) -> bool:
        v = self.u8()
        if v > 1:
            raise ValueError(f"a boolean byte is {v} at offset {self.p - 1}")
        return bool(v)

    def i32(self) -> int:
        return self._s("i")

    def u32(self) -> int:
        return self._s("I")

    def i64(self) -> int:
        return self._s("q")

    def u64(self) -> int:
        return self._s("Q")

    def f32(self) -> float:
        return self._s("f")

    def f64(self) -> float:
        return self._s("d")

    def count(self, item_size: int = 1) -> int:
        n = self.u64()
        if n * item_size > len(self.b) - self.p:
            raise _Truncated(f"a count of {n} at offset {self.p - 8} exceeds the file")
        return n

    def string(self) -> str:
        n = self.count()
        raw = self.take(n)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"a string at offset {self.p - n} is not UTF-8") from None

    def ints(self) -> list:
        n = self.count(4)
        return list(struct.unpack(f"<{n}i", self.take(4 * n)))

    def ids(self) -> list:
        n = self.count(8)
        return list(struct.unpack(f"<{n}Q", self.take(8 * n)))

    def shape(self) -> tuple:
        return tuple(self.ints())

    def dtype(self):
        code, size = self.u32(), self.u8()
        name = DTYPE_CODES.get(code)
        if name is None:
            raise ValueError(f"unknown dtype code {code}")
        d = _dt._dtype_by_name(name)
        if d.size != size:
            raise ValueError(f"dtype {name} recorded with item size {size}")
        return d


def looks_like_mlx(blob: bytes) -> bool:
    """A file starting with a short version string ``digits.digits.digits``."""
    if len(blob) < 8:
        return False
    n = struct.unpack_from("<Q", blob)[0]
    if not 1 <= n <= 32 or len(blob) < 8 + n:
        return False
    v = blob[8:8 + n]
    return all(c in b"0123456789." for c in v) and v.count(b".") >= 1


def read(path, blob: bytes):
    """Parse an MLX export into traces. Returns ``(traces, shapeless, metadata)``."""
    from . import mlx_prims

    r = Reader(blob)
    try:
        version = r.string()
        n_traces = r.i32()
        if n_traces < 0:
            raise ValueError(f"negative trace count {n_traces}")
        shapeless = r.boolean()
        metadata = r.string()
        file_consts: dict = {}  # MLX stores a constant once per file: later traces name its id only
        traces = [_read_trace(r, shapeless, mlx_prims, file_consts) for _ in range(n_traces)]
        if r.p != len(blob):
            raise ValueError(f"{len(blob) - r.p} unexpected bytes after the last trace")
    except _Truncated as e:
        raise _err(path, f"the file is truncated ({e}){r.where}.") from None
    except mlx_prims.MissingPrimitive as e:
        raise _err(path, str(e)) from None
    except (ValueError, KeyError, struct.error) as e:
        raise _err(path, f"the file is corrupt or not an MLX export ({e}){r.where}.") from None
    del version
    return traces, shapeless, metadata


def _read_trace(r: Reader, shapeless: bool, mlx_prims, file_consts: dict) -> Trace:
    kw_names = [r.string() for _ in range(r.count(8))]
    in_ids = r.ids()
    n_sig = r.count(13)
    sig = [(r.shape(), r.dtype()) for _ in range(n_sig)]
    if n_sig != len(in_ids) or len(kw_names) > len(in_ids):
        raise ValueError("the input signature disagrees with the inputs")
    out_ids = r.ids()
    val = {i: k for k, i in enumerate(in_ids)}
    n_tape = r.count(9)
    consts: list = []
    const_dtypes: list = []
    pending: list = []  # (id, buf, dtype) constants, numbered after all inputs
    entries: list = []
    for _ in range(n_tape):
        aid = r.u64()
        if r.boolean():
            ins = r.ids()
            r.take(12)  # the stream: its index and device (kiln picks its own)
            name = r.string()
            r.where = f" (in primitive {name} at offset {r.p})"
            spec = mlx_prims.lookup(name)
            args = mlx_prims.read_args(r, spec, name)
            n_sib = r.u64()
            if n_sib == 0:
                shapes, dtypes, ids = [r.shape()], [r.dtype()], [aid]
            else:
                ids = r.ids()
                shapes = [r.shape() for _ in range(r.count(4))]
                dtypes = [r.dtype() for _ in range(r.count(5))]
                if len(shapes) != len(ids) or len(dtypes) != len(ids):
                    raise ValueError(f"{name}: output counts disagree")
            entries.append((spec, name, args, ins, ids, shapes, dtypes))
        elif r.boolean():
            if aid in file_consts:
                buf, d = file_consts[aid]
            else:
                shape = r.shape()
                d = r.dtype()
                n = math.prod(shape)
                raw = r.take(n * d.size)
                buf = np.frombuffer(raw, d.np, n).reshape(shape)
                file_consts[aid] = (buf, d)
            pending.append((aid, buf, d))
        elif aid not in val:
            raise ValueError(f"tape entry {aid:#x} is neither an input, a constant nor a primitive")
    n_in = len(in_ids)
    for aid, buf, d in pending:
        val[aid] = n_in + len(consts)
        consts.append(buf)
        const_dtypes.append(d)
    nxt = n_in + len(consts)
    nodes = []
    shape_of = {k: s for k, (s, _) in enumerate(sig)}
    for k, c in enumerate(consts):
        shape_of[n_in + k] = tuple(c.shape)
    for spec, name, args, ins, ids, shapes, dtypes in entries:
        try:
            in_v = [val[i] for i in ins]
        except KeyError:
            raise ValueError(f"{name} reads an array defined after it") from None
        op = mlx_prims.MlxOp(spec, name, args, [shape_of[v] for v in in_v])
        outs = list(range(nxt, nxt + len(ids)))
        nxt += len(ids)
        for i, v, sh in zip(ids, outs, shapes):
            val[i] = v
            shape_of[v] = tuple(sh)
        nodes.append(Node(op, in_v, outs, shapes, dtypes))
    try:
        outputs = [val[i] for i in out_ids]
    except KeyError:
        raise ValueError("an output is not defined by the tape") from None
    n_pos = n_in - len(kw_names)
    t = Trace(n_pos, kw_names, [s for s, _ in sig], [d for _, d in sig], consts, nodes, outputs,
              shapeless)
    t.const_dtypes = const_dtypes
    return t


# ---------------------------------------------------------------- callbacks
def _letters(k: int) -> str:
    s = ""
    k += 1
    while k:
        k, r = divmod(k - 1, 26)
        s = chr(65 + r) + s
    return s


def emit_callback(t: Trace, callback) -> None:
    """Describe a trace to ``callback`` as MLX does: inputs, keywords, outputs, constants, primitives."""
    from . import mlx_prims

    names: dict = {}

    def nm(v):
        if v not in names:
            names[v] = _letters(len(names))
        return names[v]

    shape_of: dict = {}
    dtype_of: dict = {}
    for k, (s, d) in enumerate(zip(t.in_shapes, t.in_dtypes)):
        shape_of[k], dtype_of[k] = s, d
    for k, (c, d) in enumerate(zip(t.consts, t.const_dtypes)):
        shape_of[t.n_in + k], dtype_of[t.n_in + k] = tuple(c.shape), d
    for n in t.nodes:
        for v, s, d in zip(n.outs, n.shapes, n.dtypes):
            shape_of[v], dtype_of[v] = s, d

    def desc(v):
        return (nm(v), shape_of[v], dtype_of[v])

    callback({"type": "inputs", "inputs": [desc(v) for v in range(t.n_in)]})
    callback({"type": "keyword_inputs",
              "keywords": [(k, nm(t.n_pos + j)) for j, k in enumerate(t.kw_names)]})
    callback({"type": "outputs", "outputs": [desc(v) for v in t.outputs]})
    consts = t.constant_arrays()
    callback({"type": "constants", "constants": [(nm(t.n_in + k), c) for k, c in enumerate(consts)]})
    for n in t.nodes:
        name, args = mlx_prims.describe_kiln(n.op)
        callback({"type": "primitive", "name": name, "arguments": args,
                  "inputs": [desc(v) for v in n.ins], "outputs": [desc(v) for v in n.outs]})


