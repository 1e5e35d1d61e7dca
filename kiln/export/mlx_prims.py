"""MLX's primitives, as its ``.mlxfn`` files and export callbacks name them, mapped to kiln.

``PRIMS`` maps an MLX primitive name to the schema of its serialised
arguments and a builder that computes the same values with kiln's public ops
(so an imported MLX function is an ordinary kiln graph: every transformation
works on it). Schemas were read off files the real MLX 0.32.4 writes, one
varied parameter at a time. Schema letters: ``i`` int32, ``b`` bool (uint8),
``f`` float32, ``F`` float64, ``d`` dtype, ``v`` vector<int32>, ``q`` int64,
``Q`` vector<int64>, ``s`` string.

``describe_kiln`` goes the other way for export callbacks: a kiln primitive
as MLX's name and argument list.
"""
from __future__ import annotations

import dataclasses


class MissingPrimitive(ValueError):
    """An MLX primitive that kiln cannot run."""


def _mx():
    # The ops floor (kiln.core, the public namespace, sits above this package).
    import kiln.ops as ops

    return ops


def _cpu():
    from kiln.device import cpu

    return cpu


# ---------------------------------------------------------------- builders
def _un(fname):
    def build(ins, args, node):
        return [getattr(_mx(), fname)(ins[0])]
    return build


def _bin(fname):
    def build(ins, args, node):
        return [getattr(_mx(), fname)(ins[0], ins[1])]
    return build


def _log(ins, args, node):
    mx = _mx()
    return [{0: mx.log2, 1: mx.log10, 2: mx.log}[args[0]](ins[0])]


def _sqrt(ins, args, node):
    mx = _mx()
    return [mx.rsqrt(ins[0]) if args[0] else mx.sqrt(ins[0])]


def _equal(ins, args, node):
    mx = _mx()
    a, b = ins
    eq = mx.equal(a, b)
    if args[0]:
        eq = mx.logical_or(eq, mx.logical_and(mx.isnan(a), mx.isnan(b)))
    return [eq]


def _bitwise(ins, args, node):
    mx = _mx()
    f = [mx.bitwise_and, mx.bitwise_or, mx.bitwise_xor, mx.left_shift, mx.right_shift][args[0]]
    return [f(ins[0], ins[1])]


def _reduce(ins, args, node):
    mx = _mx()
    f = [mx.all, mx.any, mx.sum, mx.prod, mx.min, mx.max][args[0]]
    return [f(ins[0], axis=list(args[1]), keepdims=True)]


def _argreduce(ins, args, node):
    mx = _mx()
    f = [mx.argmin, mx.argmax][args[0]]
    return [f(ins[0], axis=args[1], keepdims=True)]


def _scan(ins, args, node):
    mx = _mx()
    kind, axis, reverse, inclusive = args
    f = [mx.cummax, mx.cummin, mx.cumsum, mx.cumprod, mx.logcumsumexp][kind]
    return [f(ins[0], axis=axis, reverse=reverse, inclusive=inclusive)]


def _slices(start, stop, strides):
    # MLX records a reversed slice's stop as a negative index past the start
    # (e.g. -4 on a length-3 axis): Python's slice rules read it the same way.
    return tuple(slice(b, e, s) for b, e, s in zip(start, stop, strides))


def _slice(ins, args, node):
    return [ins[0][_slices(*args)]]


_SCATTER_MODES = {0: "max", 1: "min", 2: "add", 3: "prod", 4: "set"}
_AT_METHODS = {"max": "maximum", "min": "minimum", "add": "add", "prod": "multiply"}


def _slice_update(ins, args, node):
    mode = _SCATTER_MODES[args[0]]
    a, upd = ins
    idx = _slices(*args[1:])
    if mode == "set":
        return [_set_slice(a, upd, idx)]
    return [getattr(a.at[idx], _AT_METHODS[mode])(upd)]


def _set_slice(a, upd, idx):
    out = _mx().array(a)
    out[idx] = upd
    return out


def _gather(ins, args, node):
    from kiln.primitives.indexing import gather

    mx = _mx()
    a, idx = ins[0], list(ins[1:])
    axes, sizes = list(args[0]), list(args[1])
    rest = [d for d in range(a.ndim) if d not in axes]
    for d in rest:
        if sizes[d] != a.shape[d]:
            a = mx.take(a, mx.arange(sizes[d]), axis=d) if sizes[d] else a
    for d in axes:
        if sizes[d] != 1:
            raise MissingPrimitive("[import_function] Gather with a slice larger than 1 along an "
                                   "indexed axis is not supported by kiln.")
    if not idx:
        return [mx.reshape(a, tuple(sizes))]
    shape = mx.broadcast_shapes(*[i.shape for i in idx])
    idx = [mx.broadcast_to(i, shape) for i in idx]
    at = mx.transpose(a, axes + rest)
    g = gather(at, idx, tuple(range(len(axes))))
    return [mx.reshape(g, tuple(shape) + tuple(sizes[d] if d in rest else 1 for d in range(a.ndim)))]


def _scatter(ins, args, node):
    from kiln.primitives.indexing import scatter

    mx = _mx()
    mode = _SCATTER_MODES[args[0]]
    axes = list(args[1])
    a, idx, upd = ins[0], list(ins[1:-1]), ins[-1]
    rest = [d for d in range(a.ndim) if d not in axes]
    if not idx:
        raise MissingPrimitive("[import_function] Scatter without indices is not supported by kiln.")
    shape = mx.broadcast_shapes(*[i.shape for i in idx])
    idx = [mx.broadcast_to(i, shape) for i in idx]
    k = len(shape)
    slice_dims = upd.shape[k:]
    for d in axes:
        if slice_dims[d] != 1:
            raise MissingPrimitive("[import_function] Scatter of slices larger than 1 along an "
                                   "indexed axis is not supported by kiln.")
    for d in rest:
        if slice_dims[d] != a.shape[d]:
            raise MissingPrimitive("[import_function] Scatter of partial slices is not supported "
                                   "by kiln.")
    perm = axes + rest
    at = mx.transpose(a, perm)
    u = mx.reshape(upd, tuple(shape) + tuple(a.shape[d] for d in rest))
    out = scatter(at, u, idx, tuple(range(len(axes))), mode)
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return [mx.transpose(out, inv)]


def _gather_axis(ins, args, node):
    return [_mx().take_along_axis(ins[0], ins[1], axis=args[0])]


def _scatter_axis(ins, args, node):
    from kiln.primitives.indexing import scatter_axis

    a, idx, upd = ins
    upd = _mx().broadcast_to(upd, idx.shape)
    return [scatter_axis(a, upd, idx, args[1], {0: "add", 1: "set"}[args[0]])]


def _broadcast(ins, args, node):
    # In shapeless exports MLX gives Broadcast the other operands as extra
    # inputs: the target shape is then their broadcast, not the traced one.
    mx = _mx()
    if len(ins) > 1:
        return [mx.broadcast_to(ins[0], mx.broadcast_shapes(*[i.shape for i in ins]))]
    return [mx.broadcast_to(ins[0], tuple(args[0]))]


def _broadcast_axes(ins, args, node):
    # Broadcast the first input against the others on every axis but ``args[0]``
    # (MLX's shapeless matmul uses it for the batch axes).
    mx = _mx()
    nd = max(i.ndim for i in ins)
    ignore = {a % nd for a in args[0]}

    def kept(s):
        s = (1,) * (nd - len(s)) + tuple(s)
        return tuple(d for k, d in enumerate(s) if k not in ignore)

    b = mx.broadcast_shapes(*[kept(i.shape) for i in ins])
    x = ins[0]
    xs = (1,) * (nd - x.ndim) + tuple(x.shape)
    it = iter(b)
    shape = tuple(xs[k] if k in ignore else next(it) for k in range(nd))
    return [mx.broadcast_to(x, shape)]


def _pad(ins, args, node):
    mx = _mx()
    a, val = ins
    axes, lo, hi = args
    widths = [(0, 0)] * a.ndim
    for ax, l, h in zip(axes, lo, hi):
        widths[ax] = (l, h)
    return [mx.pad(a, widths, constant_values=val)]


def _conv(ins, args, node):
    stride, lo, hi, kd, idl, groups, flip = args
    return [_mx().conv_general(ins[0], ins[1], stride=list(stride), padding=(list(lo), list(hi)),
                               kernel_dilation=list(kd), input_dilation=list(idl), groups=groups,
                               flip=flip)]


def _fft(ins, args, node):
    mx = _mx()
    # The axes are int64; the third flag is always false in what MLX 0.32.4
    # writes: refuse a file where it is not.
    axes, inverse, real, extra = args
    if extra:
        raise MissingPrimitive("[import_function] FFT with its third flag set (not seen from MLX "
                               "0.32.4) is not supported by kiln.")
    x = ins[0]
    if real and inverse:
        s = [node.shapes[0][a] for a in axes]
        return [mx.fft.irfftn(x, s=s, axes=list(axes))]
    s = [x.shape[a] for a in axes]
    f = mx.fft.rfftn if real else (mx.fft.ifftn if inverse else mx.fft.fftn)
    return [f(x, s=s, axes=list(axes))]


def _searchsorted(ins, args, node):
    return [_mx().searchsorted(ins[0], ins[1], side="right" if args[0] else "left")]


def _number_of_elements(ins, args, node):
    # The product of the input's sizes along ``axes`` (or its inverse), as ``dtype``;
    # shapeless files use it for means so the count follows the call's shapes.
    mx = _mx()
    axes, inverted, dtype = args
    n = 1
    for a in axes:
        n *= ins[0].shape[a]
    return [mx.array(1.0 / n if inverted else n, dtype=dtype)]


def _gather_mm(ins, args, node):
    mx = _mx()
    a, b, li, ri = ins
    return [mx.gather_mm(a, b, li, ri, sorted_indices=args[1])]


def _arange(ins, args, node):
    mx = _mx()
    return [mx.arange(args[0], args[1], args[2], dtype=node.dtypes[0])]


def _full(ins, args, node):
    mx = _mx()
    return [mx.broadcast_to(mx.astype(ins[0], node.dtypes[0]), node.shapes[0])]


def _inverse(ins, args, node):
    mx = _mx()
    tri, upper = args
    if tri:
        return [mx.linalg.tri_inv(ins[0], upper=upper, stream=_cpu())]
    return [mx.linalg.inv(ins[0], stream=_cpu())]


def _eigh(ins, args, node):
    mx = _mx()
    uplo, vectors = args
    if vectors:
        return list(mx.linalg.eigh(ins[0], UPLO=uplo, stream=_cpu()))
    return [mx.linalg.eigvalsh(ins[0], UPLO=uplo, stream=_cpu())]


def _eig(ins, args, node):
    mx = _mx()
    if args[0]:
        return list(mx.linalg.eig(ins[0], stream=_cpu()))
    return [mx.linalg.eigvals(ins[0], stream=_cpu())]


def _svd(ins, args, node):
    mx = _mx()
    out = mx.linalg.svd(ins[0], compute_uv=args[0], stream=_cpu())
    return list(out) if args[0] else [out]


PRIMS: dict = {
    # unary, no arguments
    **{n: ("", _un(f)) for n, f in {
        "Abs": "abs", "Negative": "negative", "Sign": "sign", "Square": "square", "Exp": "exp",
        "Expm1": "expm1", "Log1p": "log1p", "Sin": "sin", "Cos": "cos", "Tan": "tan",
        "ArcSin": "arcsin", "ArcCos": "arccos", "ArcTan": "arctan", "Sinh": "sinh", "Cosh": "cosh",
        "Tanh": "tanh", "ArcSinh": "arcsinh", "ArcCosh": "arccosh", "ArcTanh": "arctanh",
        "Sigmoid": "sigmoid", "Erf": "erf", "ErfInv": "erfinv", "Floor": "floor", "Ceil": "ceil",
        "Round": "round", "LogicalNot": "logical_not", "Conjugate": "conjugate", "Real": "real",
        "Imag": "imag",
    }.items()},
    "Log": ("i", _log),
    "Sqrt": ("b", _sqrt),
    "AsType": ("d", lambda ins, a, n: [_mx().astype(ins[0], a[0])]),
    "View": ("d", lambda ins, a, n: [_mx().view(ins[0], a[0])]),
    # binary
    **{n: ("", _bin(f)) for n, f in {
        "Add": "add", "Subtract": "subtract", "Multiply": "multiply", "Divide": "divide",
        "Remainder": "remainder", "Power": "power", "Maximum": "maximum", "Minimum": "minimum",
        "NotEqual": "not_equal", "Less": "less", "LessEqual": "less_equal", "Greater": "greater",
        "GreaterEqual": "greater_equal", "LogAddExp": "logaddexp", "LogicalAnd": "logical_and",
        "LogicalOr": "logical_or", "ArcTan2": "arctan2", "FloorDivide": "floor_divide",
        "Matmul": "matmul",
    }.items()},
    "Equal": ("b", _equal),
    "BitwiseBinary": ("i", _bitwise),
    "DivMod": ("", lambda ins, a, n: list(_mx().divmod(ins[0], ins[1]))),
    "Select": ("", lambda ins, a, n: [_mx().where(ins[0], ins[1], ins[2])]),
    "GatherMM": ("bb", _gather_mm),
    "AddMM": ("ff", lambda ins, a, n: [_mx().addmm(ins[2], ins[0], ins[1], alpha=a[0], beta=a[1])]),
    # shapes
    "Broadcast": ("v", _broadcast),
    "BroadcastAxes": ("v", _broadcast_axes),
    "Reshape": ("v", lambda ins, a, n: [_mx().reshape(ins[0], tuple(a[0]))]),
    "Transpose": ("v", lambda ins, a, n: [_mx().transpose(ins[0], list(a[0]))]),
    "Squeeze": ("v", lambda ins, a, n: [_mx().squeeze(ins[0], axis=tuple(a[0]))]),
    "ExpandDims": ("v", lambda ins, a, n: [_mx().expand_dims(ins[0], tuple(a[0]))]),
    "Flatten": ("ii", lambda ins, a, n: [_mx().flatten(ins[0], a[0], a[1])]),
    "Unflatten": ("iv", lambda ins, a, n: [_mx().unflatten(ins[0], a[0], tuple(a[1]))]),
    "Slice": ("vvv", _slice),
    "SliceUpdate": ("ivvv", _slice_update),
    "DynamicSlice": ("vv", lambda ins, a, n: [_mx().slice(ins[0], ins[1], tuple(a[0]), tuple(a[1]))]),
    "DynamicSliceUpdate": ("v", lambda ins, a, n: [_mx().slice_update(ins[0], ins[1], ins[2],
                                                                       tuple(a[0]))]),
    "Concatenate": ("i", lambda ins, a, n: [_mx().concatenate(list(ins), axis=a[0])]),
    "Pad": ("vvv", _pad),
    "Split": ("vi", lambda ins, a, n: list(_mx().split(ins[0], list(a[0]), axis=a[1]))),
    "AsStrided": ("vQq", lambda ins, a, n: [_mx().as_strided(ins[0], tuple(a[0]), tuple(a[1]), a[2])]),
    "Full": ("", _full),
    "NumberOfElements": ("vbd", _number_of_elements),
    "Arange": ("FFF", _arange),
    "Depends": ("", lambda ins, a, n: list(ins[:len(n.outs)])),
    # reductions, scans, sorting
    "Reduce": ("iv", _reduce),
    "ArgReduce": ("ii", _argreduce),
    "Scan": ("iibb", _scan),
    "LogSumExp": ("", lambda ins, a, n: [_mx().logsumexp(ins[0], axis=-1, keepdims=True)]),
    "Softmax": ("b", lambda ins, a, n: [_mx().softmax(ins[0], axis=-1, precise=a[0])]),
    "Sort": ("i", lambda ins, a, n: [_mx().sort(ins[0], axis=a[0])]),
    "ArgSort": ("i", lambda ins, a, n: [_mx().argsort(ins[0], axis=a[0])]),
    "Partition": ("ii", lambda ins, a, n: [_mx().partition(ins[0], a[0], axis=a[1])]),
    "ArgPartition": ("ii", lambda ins, a, n: [_mx().argpartition(ins[0], a[0], axis=a[1])]),
    "SearchSorted": ("b", _searchsorted),
    # indexing
    "Gather": ("vv", _gather),
    "Scatter": ("iv", _scatter),
    "GatherAxis": ("i", _gather_axis),
    "ScatterAxis": ("ii", _scatter_axis),
    # others
    "Convolution": ("vvvvvib", _conv),
    "FFT": ("Qbbb", _fft),
    "RandomBits": ("vi", lambda ins, a, n: [_mx().random.bits(tuple(a[0]), a[1], key=ins[0])]),
    "Hadamard": ("f", lambda ins, a, n: [_mx().hadamard_transform(ins[0], scale=a[0])]),
    "Inverse": ("bb", _inverse),
    "Cholesky": ("b", lambda ins, a, n: [_mx().linalg.cholesky(ins[0], upper=a[0], stream=_cpu())]),
    "QRF": ("", lambda ins, a, n: list(_mx().linalg.qr(ins[0], stream=_cpu()))),
    "SVD": ("b", _svd),
    "Eigh": ("sb", _eigh),
    "Eig": ("b", _eig),
}

# Primitives MLX writes whose arguments we know but kiln cannot run yet (named at import).
KNOWN_MISSING = {
    "Quantize": "iiib", "QuantizedMatmul": "iiib", "GatherQMM": "iiibb",
}


def lookup(name: str):
    spec = PRIMS.get(name)
    if spec is None:
        if name in KNOWN_MISSING:
            raise MissingPrimitive(f"the function uses the MLX primitive {name}, which kiln does not "
                                   "implement.")
        raise MissingPrimitive(f"the function uses the MLX primitive {name}, which kiln does not "
                               "know (its arguments cannot be read).")
    return spec


def read_args(r, spec, name: str) -> list:
    schema = spec[0]
    out = []
    for c in schema:
        if c == "i":
            out.append(r.i32())
        elif c == "b":
            out.append(r.boolean())
        elif c == "f":
            out.append(r.f32())
        elif c == "F":
            out.append(r.f64())
        elif c == "d":
            out.append(r.dtype())
        elif c == "v":
            out.append(r.ints())
        elif c == "q":
            out.append(r.i64())
        elif c == "Q":
            n = r.count(8)
            out.append([r.i64() for _ in range(n)])
        elif c == "s":
            out.append(r.string())
        else:  # pragma: no cover - a typo in the table
            raise AssertionError(c)
    return out


# Primitives whose recorded arguments hold absolute shapes/indices (MLX cannot
# replay them on other shapes either).
_FIXED_SHAPE = {"Slice", "SliceUpdate", "Gather", "Scatter", "DynamicSlice", "AsStrided", "Split",
                "Pad", "Full", "Arange", "RandomBits"}


class MlxOp:
    """One MLX primitive application: rebuilt with kiln ops when the function is called."""

    __slots__ = ("spec", "name", "args", "in_shapes")

    def __init__(self, spec, name: str, args: list, in_shapes=None):
        self.spec = spec
        self.name = name
        self.args = args
        self.in_shapes = in_shapes  # input shapes when MLX traced it

    def build(self, ins, node, shapeless: bool) -> list:
        mx = _mx()
        if shapeless and self.name in _FIXED_SHAPE and self.in_shapes is not None and \
                [tuple(i.shape) for i in ins] != [tuple(s) for s in self.in_shapes]:
            # MLX's own import refuses these too ("cannot infer output shapes").
            raise ValueError(f"[import_function] {self.name} cannot infer output shapes: the MLX "
                             "function was exported with shapeless=True and can only be called with "
                             "the input shapes it was traced with at this primitive.")
        outs = self.spec[1](ins, self.args, node)
        if len(outs) != len(node.outs):
            raise ValueError(f"[import_function] {self.name} gave {len(outs)} outputs, the file "
                             f"records {len(node.outs)}.")
        fixed = []
        for o, s, d in zip(outs, node.shapes, node.dtypes):
            if o.dtype != d:
                o = mx.astype(o, d)
            if not shapeless and tuple(o.shape) != tuple(s):
                raise ValueError(f"[import_function] {self.name} gave shape {tuple(o.shape)}, the "
                                 f"file records {tuple(s)}.")
            fixed.append(o)
        return fixed

    def __repr__(self) -> str:
        return f"MlxOp({self.name}, {self.args})"


# ---------------------------------------------------------------- kiln -> MLX (callbacks)
_REDUCE_CODE = {"All": 0, "Any": 1, "Sum": 2, "Prod": 3, "Min": 4, "Max": 5}
_SCAN_CODE = {"CumMax": 0, "CumMin": 1, "CumSum": 2, "CumProd": 3, "LogCumSumExp": 4}
_BITWISE = {"BitwiseAnd": 0, "BitwiseOr": 1, "BitwiseXor": 2, "LeftShift": 3, "RightShift": 4}


def describe_kiln(prim) -> tuple:
    """MLX's name and argument list for a kiln primitive (for export callbacks)."""
    n = type(prim).__name__
    if n == "Log":
        return "Log", [2]
    if n == "Log2":
        return "Log", [0]
    if n == "Log10":
        return "Log", [1]
    if n == "Sqrt":
        return "Sqrt", [False]
    if n == "Rsqrt":
        return "Sqrt", [True]
    if n == "Equal":
        return "Equal", [False]
    if n == "EqualNan":
        return "Equal", [True]
    if n in _REDUCE_CODE:
        return "Reduce", [_REDUCE_CODE[n], list(prim.axes)]
    if n in _SCAN_CODE:
        return "Scan", [_SCAN_CODE[n], prim.axis, prim.reverse, prim.inclusive]
    if n in _BITWISE:
        return "BitwiseBinary", [_BITWISE[n]]
    if n == "BroadcastTo":
        return "Broadcast", [tuple(prim.shape)]
    if n == "Where":
        return "Select", []
    if n == "SearchSorted":
        return "SearchSorted", [prim.right]
    if n == "Inv":
        return "Inverse", [False, False]
    if n == "ArgReduce":
        return "ArgReduce", [0 if prim.kind == "min" else 1, prim.axis]
    if dataclasses.is_dataclass(prim):
        return n, [getattr(prim, f.name) for f in dataclasses.fields(prim)]
    return n, []
