"""The exported-function graph: tracing a function into it, and replaying it as ordinary nodes.

A ``Trace`` is one signature of an exported function: its inputs (positional
ones first, then keyword ones by name), its constants (host NumPy buffers)
and a list of ``Node`` s over numbered values. Values ``0 .. n_in-1`` are the
inputs, then come the constants, then every node's outputs in order.

A node's ``op`` is either a kiln ``Primitive`` (kiln's own format) or an
object with ``build(inputs, node) -> list[array]`` (functions written by the
real MLX, whose primitives are rebuilt from public ops). Replaying a trace
builds ordinary lazy kiln nodes, so every transformation works on the result.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional

import numpy as np

from kiln.graph.array import _make, _make_multi, array
from kiln.device import current_stream
from kiln.graph.eval import applications, eval_arrays
from kiln.primitives.base import Primitive
from kiln.primitives.misc import Copy, Placeholder
from kiln.primitives.base import broadcast_shapes
from kiln.primitives.shape import BroadcastTo, Reshape
from kiln.transforms.compile.api import _flags as _compile_flags
from kiln.transforms.tracing import exporting, keep_graph, placeholder

_COPY = Copy()
_BAD_INPUTS = ("Inputs can either be a variable number of positional and keyword arrays or a single "
               "tuple and/or dictionary of arrays.")


class Node:
    """One primitive application: ``op`` over values ``ins`` giving values ``outs``."""

    __slots__ = ("op", "ins", "outs", "shapes", "dtypes")

    def __init__(self, op, ins, outs, shapes, dtypes):
        self.op = op
        self.ins = tuple(ins)
        self.outs = tuple(outs)
        self.shapes = [tuple(s) for s in shapes]
        self.dtypes = list(dtypes)


class Trace:
    """One exported signature of a function (see the module docstring)."""

    def __init__(self, n_pos: int, kw_names: list, in_shapes: list, in_dtypes: list,
                 consts: list, nodes: list, outputs: list, shapeless: bool = False):
        self.n_pos = n_pos
        self.kw_names = list(kw_names)
        self.in_shapes = [tuple(s) for s in in_shapes]
        self.in_dtypes = list(in_dtypes)
        self.consts = consts  # host NumPy arrays (kiln dtype attached via const_dtypes)
        self.const_dtypes: list = []
        self.nodes = nodes
        self.outputs = list(outputs)
        self.shapeless = shapeless
        self._const_arrays: Optional[list] = None

    @property
    def n_in(self) -> int:
        return len(self.in_shapes)

    # ------------------------------------------------------------ matching
    def matches(self, pos: list, kw: dict) -> bool:
        if len(pos) != self.n_pos or set(kw) != set(self.kw_names):
            return False
        got = list(pos) + [kw[k] for k in self.kw_names]
        for a, s, d in zip(got, self.in_shapes, self.in_dtypes):
            if a.dtype != d:
                return False
            if (len(a.shape) != len(s)) if self.shapeless else (tuple(a.shape) != s):
                return False
        return True

    # ------------------------------------------------------------ replay
    def constant_arrays(self) -> list:
        if self._const_arrays is None:
            self._const_arrays = [array(c, dtype=d) for c, d in zip(self.consts, self.const_dtypes)]
        return self._const_arrays

    def replay(self, pos: list, kw: dict, name: str = "import_function") -> list:
        """Build the trace's outputs as ordinary kiln nodes on the given arrays."""
        env: list = list(pos) + [kw[k] for k in self.kw_names] + list(self.constant_arrays())
        stream = env[0]._stream if env else current_stream()
        for node in self.nodes:
            ins = [env[i] for i in node.ins]
            op = node.op
            if isinstance(op, Primitive):
                st = ins[0]._stream if ins else stream
                if self.shapeless:
                    shapes = _infer_shapes(op, ins, name)
                else:
                    shapes = node.shapes
                if len(node.outs) == 1:
                    outs = [_make(tuple(shapes[0]), node.dtypes[0], op, tuple(ins), st)]
                else:
                    outs = _make_multi([tuple(s) for s in shapes], node.dtypes, op, tuple(ins), st)
            else:
                outs = op.build(ins, node, self.shapeless)
            for v, o in zip(node.outs, outs):
                _put(env, v, o)
        # An output that is an input or a constant is handed out as a new array
        # object: an in-place update of it (``out += 1``) must not rebind the
        # caller's input or the cached constant.
        n_leaf = self.n_in + len(self.consts)
        return [array(env[v]) if v < n_leaf else env[v] for v in self.outputs]

    def describe(self) -> str:
        lines = [f"Function with {self.n_pos} positional inputs and {len(self.kw_names)} keyword inputs:"]
        for k, (s, d) in enumerate(zip(self.in_shapes, self.in_dtypes)):
            label = str(k + 1) if k < self.n_pos else f'"{self.kw_names[k - self.n_pos]}"'
            lines.append(f"   {label}: {_fmt_shape(s)} {d.name}")
        return "\n".join(lines)


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _infer_shapes(prim, ins, name: str) -> list:
    """Output shapes of ``prim`` on ``ins`` when a shapeless export is called."""
    pname = type(prim).__name__
    try:
        shapes = [tuple(s) for s in prim.output_shapes(list(ins))]
    except NotImplementedError:
        raise ValueError(f"[{name}] This function was exported with shapeless=True, but {pname} has no "
                         "shape inference: it can only be called with the exported shapes. Export it "
                         "with shapeless=False.") from None
    except ValueError as e:
        raise ValueError(f"[{name}] Shapeless call failed at {pname} on input shapes "
                         f"{', '.join(str(tuple(i.shape)) for i in ins)}: {e}") from None
    t = type(prim)
    if t is Reshape and _size(ins[0].shape) != _size(shapes[0]):
        raise ValueError(f"[{name}] Cannot reshape array of size {_size(ins[0].shape)} into shape "
                         f"{shapes[0]}: the function was exported with shapeless=True but reshapes to a "
                         "shape fixed while tracing. Export it with shapeless=False.")
    if t is BroadcastTo:
        try:
            ok = broadcast_shapes(tuple(ins[0].shape), shapes[0]) == shapes[0]
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"[{name}] Cannot broadcast shape {tuple(ins[0].shape)} to {shapes[0]}: the "
                             "function was exported with shapeless=True but broadcasts to a shape fixed "
                             "while tracing. Export it with shapeless=False.")
    return shapes


def _put(env: list, v: int, o) -> None:
    if v == len(env):
        env.append(o)
    else:
        while len(env) <= v:
            env.append(None)
        env[v] = o


def _fmt_shape(s) -> str:
    return "(" + ",".join(str(d) for d in s) + ")"


def describe_call(pos: list, kw: dict) -> str:
    lines = [f"Called with {len(pos)} positional inputs and {len(kw)} keyword inputs:"]
    for k, a in enumerate(pos):
        lines.append(f"  {k + 1}: {_fmt_shape(a.shape)} {a.dtype.name}")
    for k, a in kw.items():
        lines.append(f'  "{k}": {_fmt_shape(a.shape)} {a.dtype.name}')
    return "\n".join(lines)


# ---------------------------------------------------------------- arguments
def split_arguments(args: tuple, kwargs: dict, where: str):
    """MLX's argument convention: ``*args, **kwargs`` of arrays, or one tuple/list and/or one dict.

    Returns ``(positional list, keyword dict)``; raises ValueError otherwise.
    """
    if not kwargs and len(args) in (1, 2) and isinstance(args[0], (list, tuple)) and \
            (len(args) == 1 or isinstance(args[1], dict)):
        pos, kw = list(args[0]), dict(args[1]) if len(args) == 2 else {}
    elif not kwargs and len(args) == 1 and isinstance(args[0], dict):
        pos, kw = [], dict(args[0])
    else:
        pos, kw = list(args), dict(kwargs)
    for a in pos:
        if not isinstance(a, array):
            raise ValueError(f"[{where}] {_BAD_INPUTS}")
    for k, a in kw.items():
        if not isinstance(k, str) or not isinstance(a, array):
            raise ValueError(f"[{where}] {_BAD_INPUTS}")
    return pos, kw


# ---------------------------------------------------------------- tracing
@contextlib.contextmanager
def _compile_off():
    # A compiled function called inside an exported one is traced through
    # (its Python body runs), so the file holds plain primitives.
    flags = _compile_flags
    old = flags.enabled
    flags.enabled = False
    try:
        yield
    finally:
        flags.enabled = old


def _aliases(node) -> Optional[list]:
    """For pass-through primitives, the input each output equals (else None)."""
    prim = node._prim
    name = type(prim).__name__
    if name == "CustomTransforms":
        n = prim.n_args
        return [node._inputs[n + k] for k in range(prim.n_outputs)]
    if name == "Depends":
        return [node._inputs[k] for k in range(prim.n)]
    return None


def trace_function(fun: Callable, pos: list, kw: dict, shapeless: bool) -> Trace:
    """Trace ``fun`` on placeholders shaped like ``pos``/``kw`` into a ``Trace``."""
    kw_names = sorted(kw)
    examples = list(pos) + [kw[k] for k in kw_names]
    phs = [placeholder(a.shape, a.dtype, "export", a._stream) for a in examples]
    # The function gets a Copy of each placeholder: an in-place update inside
    # it (``x += y``) rebinds that object, never the placeholder itself.
    tracers = [_COPY.apply([p], p.shape, p.dtype) for p in phs]
    ph_pos = tracers[:len(pos)]
    ph_kw = {k: p for k, p in zip(kw_names, tracers[len(pos):])}
    with keep_graph(), exporting(), _compile_off():
        out = fun(*ph_pos, **ph_kw)
    if isinstance(out, array):
        outs = [out]
    elif isinstance(out, (list, tuple)) and all(isinstance(o, array) for o in out):
        outs = list(out)
    else:
        raise ValueError("[export_function] Outputs can be either a single array, a tuple, or a list "
                         "of arrays.")
    return _record(phs, len(pos), kw_names, outs, shapeless)


def _record(phs, n_pos, kw_names, outs, shapeless) -> Trace:
    ph_ids = {id(p): k for k, p in enumerate(phs)}
    # Resolve pass-through nodes (custom functions, depends) to what they pass.
    def resolve(a):
        while a._buf is None and a._prim is not None:
            al = _aliases(a)
            if al is None:
                break
            a = al[a._pos if a._sibs is not None else 0]
        return a

    # Iterative post-order walk: nodes that depend on a placeholder form the tape.
    dep: dict = {}
    tape: list = []
    consts: list = []
    const_ids: dict = {}
    stack = [(resolve(o), False) for o in reversed(outs)]
    while stack:
        node, done = stack.pop()
        nid = id(node)
        if done:
            if any(dep[id(resolve(i))] for i in node._inputs):
                dep[nid] = True
                tape.append(node)
            else:
                dep[nid] = False
            continue
        if nid in dep:
            continue
        if nid in ph_ids:
            dep[nid] = True
            continue
        if node._buf is not None or not node._inputs:
            if isinstance(node._prim, Placeholder):
                raise ValueError("[export_function] Cannot export a function while another "
                                 f"transformation ({node._prim.transform}) is tracing it.")
            dep[nid] = False
            continue
        dep[nid] = None  # visiting
        stack.append((node, True))
        for i in reversed(node._inputs):
            i = resolve(i)
            if id(i) not in dep:
                stack.append((i, False))
    # Values: inputs, constants (arrays the tape reads that depend on no input), node outputs.
    val: dict = dict(ph_ids)
    const_arrays: list = []

    def const(a):
        if id(a) not in val and id(a) not in const_ids:
            const_ids[id(a)] = len(const_arrays)
            const_arrays.append(a)

    tape_ids = {id(n) for n in tape}
    for node in tape:
        for i in node._inputs:
            i = resolve(i)
            if id(i) not in tape_ids:
                const(i)
    for o in outs:
        o = resolve(o)
        if id(o) not in tape_ids:
            const(o)
    lazy = [c for c in const_arrays if c._buf is None]
    if lazy:
        eval_arrays(lazy)
    n_in = len(phs)
    for k, c in enumerate(const_arrays):
        val[id(c)] = n_in + k
        consts.append(np.array(np.asarray(c), order="C"))  # (ascontiguousarray makes 0-d 1-d)
    nxt = n_in + len(const_arrays)
    nodes: list = []
    for node, group in applications(tape):
        ins = [val[id(resolve(i))] for i in node._inputs]
        outs_v = list(range(nxt, nxt + len(group)))
        nxt += len(group)
        for g, v in zip(group, outs_v):
            val[id(g)] = v
        nodes.append(Node(node._prim, ins, outs_v, [g._shape for g in group], [g._dtype for g in group]))
    t = Trace(n_pos, kw_names, [p._shape for p in phs], [p._dtype for p in phs], consts, nodes,
              [val[id(resolve(o))] for o in outs], shapeless)
    t.const_dtypes = [c._dtype for c in const_arrays]
    # As in MLX, a shapeless export is not replayed here: a primitive without a
    # shape rule (a custom kernel) fails when the imported function is called.
    return t


def strip_copies(t: Trace) -> Trace:
    """Drop ``Copy`` nodes (identities) and renumber node outputs densely."""
    alias: dict = {}
    nxt = t.n_in + len(t.consts)
    kept = []
    for n in t.nodes:
        ins = tuple(alias.get(i, i) for i in n.ins)
        if type(n.op) is Copy and len(ins) == 1:
            alias[n.outs[0]] = ins[0]
            continue
        outs = tuple(range(nxt, nxt + len(n.outs)))
        nxt += len(n.outs)
        for old, new in zip(n.outs, outs):
            alias[old] = new
        n.ins, n.outs = ins, outs
        kept.append(n)
    t.nodes = kept
    t.outputs = [alias.get(v, v) for v in t.outputs]
    return t
