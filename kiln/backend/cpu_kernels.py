"""Fused CPU kernels: a program of elementwise templates rendered to one numba loop.

``compile`` hands over a *program*: leaves ``x0, x1, ...`` (input buffers),
statements ``t{j} = template(...)`` in topological order, and which
statements are outputs. ``kernel`` returns a ``Kernel`` whose call takes the
leaf buffers and returns fresh output buffers, computed in one pass with no
intermediates in memory.

* Templates use NumPy function names and Python operators (``"sin({0})"``,
  ``"where({0}, {1}, {2})"``); each name maps to a numba-typed scalar function.
  Numeric literals become constants of the group's float dtype, so a float32
  chain stays float32.
* Where numba's ``tanh`` is a scalar libm call (no SVML), float32 groups
  use a rational version written here (within 1.5e-7) that LLVM vectorises;
  float64 keeps libm.
* Broadcast leaves are recognised from their strides: a leaf is full (flat
  index), a scalar, a vector along the inner axes (a bias) or along the outer
  axes (a keepdims reduction); anything else is materialised first, so every
  layout gives the right answer.
* The loop is a ``prange`` above ``PARALLEL_MIN`` elements (a serial loop
  below, where waking threads costs more than it saves), on numba's
  ``workqueue`` threading layer unless ``NUMBA_THREADING_LAYER`` says
  otherwise. Sources are written
  to an on-disk cache named by the hash of their text, and numba's
  ``cache=True`` keeps the machine code beside them, so a second process
  compiles nothing.

Only NumPy and numba are used here; nothing above the backend layer.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import tempfile

import numpy as np

try:  # optional: the ``fast`` extra
    import numba
except Exception:  # pragma: no cover - depends on the environment
    numba = None

available = numba is not None and os.environ.get("KILN_NO_NUMBA", "") in ("", "0")
# For ``python -m kiln.info`` (a kernel generator: its name, the device whose buffers it runs on).
engine = "numba"
device = "cpu"
if available and not os.environ.get("NUMBA_THREADING_LAYER"):
    # numba's own work queue: its threads sleep when idle. The OpenMP layer's
    # spin-waiting threads fought BLAS's and other processes' for the cores
    # (a GELU on 4M floats, 2 loaded cores: 22-32 ms with omp, 3.1 ms here).
    numba.config.THREADING_LAYER = "workqueue"

# Dtypes a kernel computes in (NumPy names). Integers stay unfused: numba
# widens int32 arithmetic to int64 and its division is not MLX's.
FUSABLE_DTYPES = frozenset({"float32", "float64", "bool"})
PARALLEL_MIN = 1 << 17
stats = {"kernels": 0, "hits": 0, "sources": 0, "variants": 0}

# Fast-math flags that keep IEEE special values: not "no NaNs"/"no infinities"
# (``x != x`` and NaN-propagating maximum keep their meaning), nor the
# approximate reciprocal/functions ("arcp", "afn": 1/sqrt(0) became NaN). Kernels
# use numba's "numpy" error model: 1/0 is inf (IEEE), not ZeroDivisionError.
_FASTMATH = "{'nsz', 'contract', 'reassoc'}"

_NP_FUNCS = ("abs", "sqrt", "exp", "expm1", "log", "log2", "log10", "log1p", "sin", "cos", "tan",
             "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh",
             "floor", "ceil", "trunc", "sign", "isinf", "isfinite", "arctan2", "logaddexp", "power")
_FUNCS = {name: "np." + name for name in _NP_FUNCS}
_FUNCS.update(where="_where", erf="_erf")
_FAST32 = {"tanh": "_tanh32"}

_LITERAL = re.compile(
    r"(?<![\w.])(\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)(?![\w.])"
)
_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\(")

# Scalar helpers, included in a kernel's source when it uses them. The
# float32 tanh is x*P(x^2)/Q(x^2), fitted here (Loeb iteration for relative
# error on [0, 9]; |tanh| rounds to 1 beyond) and evaluated in float64:
# float32 Horner steps alone cost 4e-7 near +-1, which 1 + tanh(x) in a
# GELU exposes; in float64 the error is 1.5e-7, float32 rounding. A Cody-Waite exp
# built from float bits did not vectorise under numba (4.7 GB/s against
# libm's 3.8), so exp stays libm.
_HELPERS = {
    "_where": '''
@njit(inline="always", error_model="numpy", cache=True)
def _where(c, a, b):
    return a if c else b
''',
    "_erf": '''
@njit(inline="always", error_model="numpy", cache=True)
def _erf(x):
    return math.erf(x)
''',
    "_tanh32": '''
_TP = (0.9999999501079664, 0.1292904754905923, 0.0029313165049519815, 9.363563274327617e-06,
       -1.3066852760237745e-08, 1.897973081568864e-11)
_TQ = (0.46262338507944706, 0.023806383345678656, 0.00022955834338662617)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=True)
def _tanh32(x):
    y = min(max(np.float64(x), -9.0), 9.0)
    s = y * y
    p = y * (_TP[0] + s * (_TP[1] + s * (_TP[2] + s * (_TP[3] + s * (_TP[4] + s * _TP[5])))))
    q = 1.0 + s * (_TQ[0] + s * (_TQ[1] + s * _TQ[2]))
    r = np.float32(p / q)
    return r if x == x else x
''',
}


# Functions the kernels compute without a libm call, so LLVM vectorises the loop
# (tanh: float32 only, the rational version). Any other function is one scalar
# libm call per element: 3-10x slower than NumPy's SIMD loops (exp on 4M
# float32: 1.2-2.4 GB/s against NumPy's 13-17; exp versions built here from
# float bits or select chains did not vectorise either).
_VECTOR_FUNCS = frozenset({"abs", "sqrt", "floor", "ceil", "trunc", "where", "isinf", "isfinite", "sign", "not"})


def vectorised(template: str, float_dtype) -> bool:
    """Whether a kernel computes ``template`` in SIMD lanes (no scalar libm call)."""
    for name in _CALL.findall(template):
        if name not in _VECTOR_FUNCS and not (name in _FAST32 and float_dtype == "float32"):
            return False
    return True


def supports(template: str) -> bool:
    """Whether every function a template calls has a kernel version."""
    ok = _supported.get(template)
    if ok is None:
        ok = _supported[template] = all(n == "not" or n in _FUNCS for n in _CALL.findall(template))
    return ok


_supported: dict = {}


class KernelError(ValueError):
    """A program this module cannot render (an unknown function name, a dtype)."""


def kernel(nodes, outputs, leaf_dtypes, out_dtypes, float_dtype, reduce=None):
    """The kernel computing a fused program, shared by every program with its canonical text.

    Args:
        nodes: ``[(template, refs), ...]`` in topological order; each ref is
            ``("leaf", k)`` or ``("node", j)``.
        outputs: indices into ``nodes`` whose values the kernel writes.
        leaf_dtypes: NumPy dtype names of the leaves.
        out_dtypes: NumPy dtype names of the outputs.
        float_dtype: the group's float dtype name (literals take it), or None.
        reduce: None, or ``(node, combine, init, n_axes, keepdims)``: the
            kernel also folds ``nodes[node]`` over its last ``n_axes`` axes
            with the template ``combine(acc, value)`` from ``init``; that
            result is the last output (its dtype last in ``out_dtypes``).
    Returns:
        A ``Kernel``. Raises ``KernelError`` when the program cannot be rendered.
    """
    if not available:
        raise KernelError("numba is not installed")
    for d in list(leaf_dtypes) + list(out_dtypes):
        if d not in FUSABLE_DTYPES:
            raise KernelError(f"dtype {d} is not fusable")
    body, consts = _render(nodes, float_dtype)
    fold = None
    if reduce is not None:
        node, combine, init, n_axes, keepdims = reduce
        if float_dtype is None:
            raise KernelError("a fused reduction needs a float dtype")
        fold = (_render([(combine, [("leaf", 0), ("leaf", 1)])], None)[0][0].split(" = ", 1)[1]
                .replace("x0", "acc").replace("x1", f"t{node}"), float(init), int(n_axes), bool(keepdims))
    key = "\n".join(body) + "|" + ",".join(map(str, outputs)) + "|" + ",".join(leaf_dtypes) + "->" \
        + ",".join(out_dtypes) + "|" + repr(consts) + "|" + repr(fold)
    k = _kernels.get(key)
    if k is None:
        k = _kernels[key] = Kernel(key, body, consts, list(outputs), len(leaf_dtypes), list(out_dtypes), fold)
        stats["kernels"] += 1
    else:
        stats["hits"] += 1
    return k


_kernels: dict = {}


def _render(nodes, float_dtype):
    """Statements ``t{j} = ...`` and the hoisted literal constants ``c{m}``."""
    consts: list = []
    fast = _FAST32 if float_dtype == "float32" else {}

    def literal(m):
        consts.append(float(m.group(1)))
        return f"c{len(consts) - 1}"

    def func(m):
        name = m.group(1)
        if name == "not":
            return m.group(0)
        target = fast.get(name) or _FUNCS.get(name)
        if target is None:
            raise KernelError(f"no kernel function for {name}()")
        return target + "("

    body = []
    for j, (template, refs) in enumerate(nodes):
        args = [f"x{k}" if kind == "leaf" else f"t{k}" for kind, k in refs]
        e = template.format(*args)
        if float_dtype is not None:
            e = _LITERAL.sub(literal, e)
        body.append(f"t{j} = {_CALL.sub(func, e)}")
    return body, tuple((float_dtype, v) for v in consts)


def _cache_dir() -> str:
    base = os.environ.get("KILN_KERNEL_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "kiln", f"kernels-numba{getattr(numba, '__version__', '')}")
    try:
        os.makedirs(base, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    base = os.path.join(tempfile.gettempdir(), f"kiln-kernels-{os.getuid() if hasattr(os, 'getuid') else 0}")
    os.makedirs(base, exist_ok=True)
    return base


class Kernel:
    """One fused program; a compiled loop per leaf layout (``codes``), built on first use."""

    __slots__ = ("key", "body", "consts", "outputs", "n_leaves", "out_dtypes", "fold", "_variants")

    def __init__(self, key, body, consts, outputs, n_leaves, out_dtypes, fold=None):
        self.key = key
        self.body = body
        self.consts = consts
        self.outputs = outputs
        self.n_leaves = n_leaves
        self.out_dtypes = [np.dtype(d) for d in out_dtypes]
        self.fold = fold  # (combine source, init, n_axes, keepdims) or None
        self._variants: dict = {}

    def __call__(self, *leaves, shape=None, into=None):
        """Output buffers for leaf buffers (broadcast to ``shape``, default their broadcast shape).

        ``into`` maps an output index to a buffer to write it into (a donated
        input, read at the same index before it is written); one that does
        not fit (shape, dtype, layout) is ignored.
        """
        if shape is None:
            shape = leaves[0].shape if len(leaves) == 1 else np.broadcast_shapes(*(a.shape for a in leaves))
        n = _prod(shape)
        fold = self.fold
        inner = None
        full = self.out_dtypes if fold is None else self.out_dtypes[:-1]
        outs = [np.empty(shape, d) for d in full]
        if into:
            for j, buf in into.items():
                if (buf.shape == shape and buf.dtype == full[j] and buf.flags.c_contiguous
                        and buf.flags.writeable):
                    outs[j] = buf
        if fold is not None:
            k = fold[2]
            inner = _prod(shape[len(shape) - k:])
            red_shape = tuple(shape[:len(shape) - k]) + ((1,) * k if fold[3] else ())
            outs.append(np.full(red_shape, fold[1], self.out_dtypes[-1]))
            if inner == 0:
                return outs
        if n == 0:
            return outs
        codes, args, inner = _layout(leaves, shape, inner)
        parallel = n >= PARALLEL_MIN
        fn = self._variants.get((codes, parallel))
        if fn is None:
            fn = self._variants[(codes, parallel)] = self._build(codes, parallel)
        flat = [o.reshape(-1) for o in outs]
        if inner is None:
            fn(n, *args, *flat)
        else:
            fn(n // inner, inner, *args, *flat)
        return outs

    def _build(self, codes: str, parallel: bool):
        stats["variants"] += 1
        src = self.source(codes, parallel)
        digest = hashlib.sha1(src.encode()).hexdigest()[:20]
        name = f"kiln_kernel_{digest}"
        mod = sys.modules.get(name)
        if mod is None:
            path = os.path.join(_cache_dir(), name + ".py")
            if not os.path.exists(path):
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "w") as f:
                    f.write(src)
                os.replace(tmp, path)  # atomic: another process may race us
                stats["sources"] += 1
            spec = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod
            try:
                spec.loader.exec_module(mod)
            except Exception:
                del sys.modules[name]
                raise
        return mod.kernel

    def source(self, codes: str, parallel: bool) -> str:
        """The Python/numba source of the loop for leaf layout ``codes`` (F, S, I, O per leaf)."""
        text = "\n".join(self.body) + ("\n" + self.fold[0] if self.fold is not None else "")
        helpers = [h for h in _HELPERS if re.search(rf"\b{h}\(", text)]
        lines = ["# generated by kiln.backend.cpu_kernels; " + self.key.replace("\n", "; "),
                 "import math", "import numpy as np", "from numba import njit, prange", "",
                 f"FASTMATH = {_FASTMATH}"]
        for m, (dt, v) in enumerate(self.consts):
            lines.append(f"c{m} = np.{dt}({v!r})")
        if self.fold is not None:  # the accumulator's start, typed (may be +-inf)
            lines.append(f"ACC0 = np.{self.out_dtypes[-1].name}(float({str(self.fold[1])!r}))")
        for h in helpers:
            lines.append(_HELPERS[h])
        leaves = [f"a{k}" for k in range(self.n_leaves)]
        outs = [f"o{k}" for k in range(len(self.outputs) + (self.fold is not None))]
        two_d = "I" in codes or "O" in codes or self.fold is not None
        head = ["R", "C"] if two_d else ["n"]
        lines.append(f"@njit(parallel={parallel}, fastmath=FASTMATH, error_model='numpy', cache=True)")
        lines.append(f"def kernel({', '.join(head + leaves + outs)}):")
        ind = "    "
        if two_d:
            lines.append(f"{ind}for r in prange(R):")
            lines.append(f"{ind * 2}b = r * C")
            for k, c in enumerate(codes):
                if c == "O":
                    lines.append(f"{ind * 2}x{k} = a{k}[r]")
            if self.fold is not None:
                lines.append(f"{ind * 2}acc = ACC0")
            lines.append(f"{ind * 2}for c in range(C):")
            ind, idx = ind * 3, "b + c"
        else:
            lines.append(f"{ind}for i in prange(n):")
            ind, idx = ind * 2, "i"
        for k, c in enumerate(codes):
            if c == "F":
                lines.append(f"{ind}x{k} = a{k}[{idx}]")
            elif c == "I":
                lines.append(f"{ind}x{k} = a{k}[c]")
            elif c == "S":
                lines.append(f"{ind}x{k} = a{k}")
        lines.extend(ind + s for s in self.body)
        for k, j in enumerate(self.outputs):
            lines.append(f"{ind}o{k}[{idx}] = t{j}")
        if self.fold is not None:
            lines.append(f"{ind}acc = {self.fold[0]}")
            lines.append(f"        o{len(self.outputs)}[r] = acc")
        return "\n".join(lines) + "\n"


def _layout(leaves, shape, inner=None):
    """Per-leaf codes, the arguments to pass, and the inner extent of a 2-D loop (None: flat).

    ``inner`` fixes the inner extent (a fused reduction's); leaves that do not fit it are materialised.
    """
    codes = []
    args = []
    nd = len(shape)
    for a in leaves:
        same = a.shape == shape
        if same and a.flags.c_contiguous:
            codes.append("F")
            args.append(a.reshape(-1))
            continue
        if a.size == 1:
            codes.append("S")
            args.append(a.reshape(-1)[0])
            continue
        b = a if same else np.broadcast_to(a, shape)
        eff = [1 if (st == 0 or s == 1) else s for s, st in zip(shape, b.strides)]
        if all(e == 1 for e in eff):
            codes.append("S")
            args.append(b[(0,) * nd])
            continue
        first = next(i for i, e in enumerate(eff) if e != 1)
        last = max(i for i, e in enumerate(eff) if e != 1) + 1
        code = None
        if all(e == s for e, s in zip(eff[first:], shape[first:])):
            code, c_ext = "I", _prod(shape[first:])
        elif all(e == s for e, s in zip(eff[:last], shape[:last])):
            code, c_ext = "O", _prod(shape[last:])
        if code is not None and (inner is None or inner == c_ext):
            inner = c_ext
            compact = b[tuple(slice(None) if e != 1 else 0 for e in eff)]
            codes.append(code)
            args.append(np.ascontiguousarray(compact).reshape(-1))
        else:  # an irregular layout: materialise it (one copy, always right)
            codes.append("F")
            args.append(np.ascontiguousarray(b).reshape(-1))
    return "".join(codes), args, inner


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def cache_size() -> int:
    """Number of distinct fused programs seen in this process."""
    return len(_kernels)
