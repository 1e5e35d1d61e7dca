"""Writing kiln-traced functions as MLX ``.mlxfn`` files the real MLX imports.

Each kiln node becomes one or more MLX tape entries in the layout
``mlxfn.py`` reads (see ``docs/export-format.md``). kiln's graphs differ from
MLX's in a few ways that are undone here: elementwise inputs that kiln
broadcasts implicitly get explicit ``Broadcast`` entries, reductions that drop
axes get MLX's keep-dims reduction followed by ``Squeeze``, and identities
(``StopGradient``, ``Copy``) are dropped. A kiln primitive with no MLX
counterpart here raises a ValueError naming it; nothing is written.
"""
from __future__ import annotations

import os
import struct
import tempfile

from .graph import Trace
from .mlxfn import CODE_OF

MLX_VERSION = "0.32.4"

_UNARY = {"Abs", "Negative", "Sign", "Square", "Exp", "Expm1", "Log1p", "Sin", "Cos", "Tan", "ArcSin",
          "ArcCos", "ArcTan", "Sinh", "Cosh", "Tanh", "ArcSinh", "ArcCosh", "ArcTanh", "Sigmoid", "Erf",
          "ErfInv", "Floor", "Ceil", "LogicalNot", "Conjugate", "Real", "Imag"}
_BINARY = {"Add", "Subtract", "Multiply", "Divide", "Remainder", "Power", "Maximum", "Minimum",
           "NotEqual", "Less", "LessEqual", "Greater", "GreaterEqual", "LogAddExp", "LogicalAnd",
           "LogicalOr", "ArcTan2", "FloorDivide"}
_REDUCE = {"All": 0, "Any": 1, "Sum": 2, "Prod": 3, "Min": 4, "Max": 5}
_SCAN = {"CumMax": 0, "CumMin": 1, "CumSum": 2, "CumProd": 3}
_BITWISE = {"BitwiseAnd": 0, "BitwiseOr": 1, "BitwiseXor": 2, "LeftShift": 3, "RightShift": 4}


class _W:
    """Little-endian byte writer for MLX's layout."""

    def __init__(self):
        self.parts: list = []

    def raw(self, b: bytes):
        self.parts.append(b)

    def u8(self, v):
        self.raw(struct.pack("<B", int(v)))

    def i32(self, v):
        self.raw(struct.pack("<i", int(v)))

    def u64(self, v):
        self.raw(struct.pack("<Q", int(v)))

    def f32(self, v):
        self.raw(struct.pack("<f", float(v)))

    def string(self, s: str):
        b = s.encode("utf-8")
        self.u64(len(b))
        self.raw(b)

    def ints(self, xs):
        xs = list(xs)
        self.u64(len(xs))
        self.raw(struct.pack(f"<{len(xs)}i", *xs))

    def ids(self, xs):
        xs = list(xs)
        self.u64(len(xs))
        self.raw(struct.pack(f"<{len(xs)}Q", *xs))

    def dtype(self, d):
        self.raw(struct.pack("<IB", CODE_OF[d.name], d.size))

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def _args(w: _W, schema: str, vals) -> None:
    for c, v in zip(schema, vals):
        if c == "i":
            w.i32(v)
        elif c == "b":
            w.u8(bool(v))
        elif c == "f":
            w.f32(v)
        elif c == "d":
            w.dtype(v)
        elif c == "v":
            w.ints(v)
        else:  # pragma: no cover
            raise AssertionError(c)


class _Tape:
    """MLX tape entries for one trace; ids are small integers."""

    def __init__(self):
        self.w = _W()
        self.count = 0
        self.next_id = 1

    def new_id(self) -> int:
        i = self.next_id
        self.next_id += 1
        return i

    def leaf(self, aid: int, const=None):
        self.count += 1
        self.w.u64(aid)
        self.w.u8(0)
        if const is None:
            self.w.u8(0)
            return
        buf, d = const
        self.w.u8(1)
        self.w.ints(buf.shape)
        self.w.dtype(d)
        self.w.raw(buf.tobytes())

    def prim(self, name: str, schema: str, args, ins, shapes, dtypes) -> list:
        ids = [self.new_id() for _ in shapes]
        self.count += 1
        w = self.w
        w.u64(ids[0])
        w.u8(1)
        w.ids(ins)
        w.raw(b"\0" * 12)  # stream 0 of the CPU
        w.string(name)
        _args(w, schema, args)
        if len(ids) == 1:
            w.u64(0)
            w.ints(shapes[0])
            w.dtype(dtypes[0])
        else:
            w.u64(len(ids) - 1)
            w.ids(ids)
            w.u64(len(shapes))
            for s in shapes:
                w.ints(s)
            w.u64(len(dtypes))
            for d in dtypes:
                w.dtype(d)
        return ids


def _unsupported(prim) -> ValueError:
    return ValueError(f"[export_mlx_function] The kiln primitive {type(prim).__name__} has no MLX "
                      "counterpart in kiln's .mlxfn writer; export it in kiln's format instead.")


def _emit(tape: _Tape, node, ins, info) -> list:
    """MLX entries for one kiln node; returns the MLX ids of its outputs."""
    prim = node.op
    n = type(prim).__name__
    shape, dt = node.shapes[0], node.dtypes[0]

    def bcast(i, to):
        s, d = info[i]
        if tuple(s) == tuple(to):
            return i
        j = tape.prim("Broadcast", "v", [tuple(to)], [i], [tuple(to)], [d])[0]
        info[j] = (tuple(to), d)
        return j

    def one(name, schema="", args=(), xs=None):
        return tape.prim(name, schema, list(args), ins if xs is None else xs, node.shapes, node.dtypes)

    def const(value, d, to):
        import numpy as np

        j = tape.new_id()
        tape.leaf(j, (np.array(value, dtype=d.np), d))
        info[j] = ((), d)
        return bcast(j, to)

    if n in ("IsNan", "IsInf", "IsPosInf", "IsNegInf", "IsFinite"):
        # MLX composes these from comparisons; so do we (x is floating here).
        x = ins[0]
        xs, xd = info[x]
        if n == "IsNan":
            return one("NotEqual", xs=[x, x])
        if n in ("IsPosInf", "IsNegInf"):
            return one("Equal", "b", [False], [x, const(float("inf") if n == "IsPosInf" else -float("inf"), xd, xs)])
        a = tape.prim("Abs", "", [], [x], [tuple(xs)], [xd])[0]
        info[a] = (tuple(xs), xd)
        inf = const(float("inf"), xd, xs)
        return one("Equal", "b", [False], [a, inf]) if n == "IsInf" else one("Less", xs=[a, inf])
    def prim1(name, schema, args, xs, s, d):
        j = tape.prim(name, schema, list(args), xs, [tuple(s)], [d])[0]
        info[j] = (tuple(s), d)
        return j

    if n in ("Gather", "Scatter"):
        # kiln keeps NumPy's index layout (index dims at the first indexed axis
        # when the axes are consecutive, else first); MLX's puts them first and
        # keeps a size-1 slice dim per indexed axis.
        x = ins[0]
        xs, xd = info[x]
        axes = list(prim.axes)
        idx = ins[1:] if n == "Gather" else ins[2:]
        ishape = tuple(info[idx[0]][0])
        rest = [k for k in range(len(xs)) if k not in axes]
        k, m_ = len(ishape), len(rest)
        p = axes[0] if all(b - a == 1 for a, b in zip(axes, axes[1:])) else 0
        perm = list(range(k, k + p)) + list(range(k)) + list(range(k + p, k + m_))  # MLX -> kiln
        sizes = [1 if d in axes else xs[d] for d in range(len(xs))]
        flat = ishape + tuple(xs[d] for d in rest)
        if n == "Gather":
            g = prim1("Gather", "vv", [axes, sizes], [x] + list(idx), ishape + tuple(sizes), xd)
            r = prim1("Reshape", "v", [flat], [g], flat, xd)
            if perm == list(range(len(perm))):
                return [r]
            return tape.prim("Transpose", "v", [perm], [r], [tuple(shape)], [dt])
        u = ins[1]
        inv = [0] * len(perm)
        for a, b in enumerate(perm):
            inv[b] = a
        if inv != list(range(len(inv))):
            u = prim1("Transpose", "v", [inv], [u], flat, info[u][1])
        u = prim1("Reshape", "v", [ishape + tuple(sizes)], [u], ishape + tuple(sizes), info[u][1])
        mode = {"max": 0, "min": 1, "add": 2, "prod": 3, "set": 4}[prim.mode]
        return one("Scatter", "iv", [mode, axes], [x] + list(idx) + [u])
    if n == "GatherAxis":
        x, idx = ins
        xs = info[x][0]
        ax = prim.axis % len(xs)
        x = bcast(x, tuple(xs[ax] if k == ax else s_ for k, s_ in enumerate(shape)))
        return one("GatherAxis", "i", [ax], [x, bcast(idx, shape)])
    if n == "ScatterAxis":
        x, u, idx = ins
        ax = prim.axis % len(info[x][0])
        return one("ScatterAxis", "ii", [{"add": 0, "set": 1}[prim.mode], ax], [x, idx, u])
    if n in ("Copy", "StopGradient"):
        return [ins[0]]
    if n in _UNARY:
        return one(n)
    if n == "Round" and prim.decimals == 0:
        return one("Round")
    if n in ("Log", "Log2", "Log10"):
        return one("Log", "i", [{"Log2": 0, "Log10": 1, "Log": 2}[n]])
    if n in ("Sqrt", "Rsqrt"):
        return one("Sqrt", "b", [n == "Rsqrt"])
    if n == "AsType":
        return one("AsType", "d", [prim.dtype])
    if n in _BINARY or n in ("Equal", "EqualNan") or n in _BITWISE or n in ("Where", "DivMod"):
        target = shape if n != "Where" else shape
        xs = [bcast(i, target) for i in ins]
        if n in ("Equal", "EqualNan"):
            return one("Equal", "b", [n == "EqualNan"], xs)
        if n in _BITWISE:
            return one("BitwiseBinary", "i", [_BITWISE[n]], xs)
        return one("Select" if n == "Where" else n, xs=xs)
    if n in _REDUCE or n == "ArgReduce":
        x_shape = info[ins[0]][0]
        if n == "ArgReduce":
            axes = [prim.axis]
            name, schema, args = "ArgReduce", "ii", [0 if prim.kind == "min" else 1, prim.axis]
        else:
            axes = sorted(a % max(len(x_shape), 1) for a in prim.axes)
            name, schema, args = "Reduce", "iv", [_REDUCE[n], axes]
        kept = tuple(1 if k in axes else s for k, s in enumerate(x_shape))
        if prim.keepdims or tuple(kept) == tuple(shape):
            return tape.prim(name, schema, args, ins, [tuple(shape)], [dt])
        r = tape.prim(name, schema, args, ins, [kept], [dt])
        return tape.prim("Squeeze", "v", [axes], r, [tuple(shape)], [dt])
    if n in _SCAN:
        return one("Scan", "iibb", [_SCAN[n], prim.axis, prim.reverse, prim.inclusive])
    if n == "Reshape":
        return one("Reshape", "v", [tuple(prim.shape)])
    if n == "NumberOfElements":  # mean's divisor under tracing (follows the input's shape)
        return one("NumberOfElements", "vbd", [list(prim.axes), prim.inverted, prim.dtype])
    if n == "Transpose":
        return one("Transpose", "v", [list(prim.axes)])
    if n == "BroadcastTo":
        return one("Broadcast", "v", [tuple(prim.shape)])
    if n == "Slice":
        x_shape = info[ins[0]][0]
        if hasattr(prim, "starts"):  # shape.Slice: positive steps
            start, stop, step = prim.starts, prim.stops, prim.steps
        else:  # indexing.Slice: a negative stop with a negative stride runs to the beginning,
            # which MLX writes as -(n + 1)
            start, step = prim.start, prim.strides
            stop = [-(d + 1) if (e < 0 and st < 0) else e for e, st, d in zip(prim.stop, step, x_shape)]
        return one("Slice", "vvv", [tuple(start), tuple(stop), tuple(step)])
    if n == "SliceUpdate":
        x, u = ins
        xs = info[x][0]
        stop = [-(d + 1) if (e < 0 and st < 0) else e for e, st, d in zip(prim.stop, prim.strides, xs)]
        box = tuple(len(range(*slice(b, None if (e < 0 and st < 0) else e, st).indices(d)))
                    for b, e, st, d in zip(prim.start, prim.stop, prim.strides, xs))
        return one("SliceUpdate", "ivvv", [4, tuple(prim.start), tuple(stop), tuple(prim.strides)],
                   [x, bcast(u, box)])
    if n == "Flip":
        x_shape = info[ins[0]][0]
        axes = {a % len(x_shape) for a in prim.axes}
        start = [d - 1 if k in axes else 0 for k, d in enumerate(x_shape)]
        stop = [-(d + 1) if k in axes else d for k, d in enumerate(x_shape)]
        step = [-1 if k in axes else 1 for k in range(len(x_shape))]
        return one("Slice", "vvv", [tuple(start), tuple(stop), tuple(step)])
    if n == "Concatenate":
        return one("Concatenate", "i", [prim.axis])
    if n == "Pad":
        axes = list(range(len(prim.widths)))
        return one("Pad", "vvv", [axes, [lo for lo, _ in prim.widths], [hi for _, hi in prim.widths]])
    if n == "Matmul":
        a, b = ins
        sa, sb = info[a][0], info[b][0]
        if len(sa) < 2 or len(sb) < 2:
            raise _unsupported(prim)
        batch = tuple(shape[:-2])
        return one("Matmul", xs=[bcast(a, batch + tuple(sa[-2:])), bcast(b, batch + tuple(sb[-2:]))])
    if n == "Convolution":
        return one("Convolution", "vvvvvib", [prim.stride, prim.pad_lo, prim.pad_hi, prim.kernel_dilation,
                                                prim.input_dilation, prim.groups, prim.flip])
    if n in ("Sort", "ArgSort"):
        return one(n, "i", [prim.axis])
    if n in ("Partition", "ArgPartition"):
        return one(n, "ii", [prim.kth, prim.axis])
    if n == "RandomBits":
        return one("RandomBits", "vi", [tuple(prim.shape), prim.width])
    if n == "SearchSorted":
        return one("SearchSorted", "b", [prim.right])
    raise _unsupported(prim)


def trace_bytes(t: Trace) -> bytes:
    if t.shapeless:
        raise ValueError("[export_mlx_function] Shapeless exports cannot be written in MLX's format "
                         "(MLX's shapeless files carry extra shape inputs kiln does not make).")
    tape = _Tape()
    ids: dict = {}
    info: dict = {}
    for v in range(t.n_in):
        ids[v] = tape.new_id()
        info[ids[v]] = (t.in_shapes[v], t.in_dtypes[v])
        tape.leaf(ids[v])
    for k, (c, d) in enumerate(zip(t.consts, t.const_dtypes)):
        v = t.n_in + k
        ids[v] = tape.new_id()
        info[ids[v]] = (tuple(c.shape), d)
        tape.leaf(ids[v], (c, d))
    for node in t.nodes:
        outs = _emit(tape, node, [ids[i] for i in node.ins], info)
        for v, o, s, d in zip(node.outs, outs, node.shapes, node.dtypes):
            ids[v] = o
            info[o] = (tuple(s), d)
    w = _W()
    w.u64(len(t.kw_names))
    for k in t.kw_names:
        w.string(k)
    w.ids([ids[v] for v in range(t.n_in)])
    w.u64(t.n_in)
    for s, d in zip(t.in_shapes, t.in_dtypes):
        w.ints(s)
        w.dtype(d)
    w.ids([ids[v] for v in t.outputs])
    w.u64(tape.count)
    return w.bytes() + tape.w.bytes()


def write(path, traces: list, metadata: str = "") -> None:
    """Write ``traces`` (kiln ``Trace`` objects) as one ``.mlxfn`` file, atomically."""
    body = [trace_bytes(t) for t in traces]
    w = _W()
    w.string(MLX_VERSION)
    w.i32(len(traces))
    w.u8(0)
    w.string(metadata)
    blob = w.bytes() + b"".join(body)
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".mlxfn-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
