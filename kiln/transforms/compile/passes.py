"""Stage 2, passes: value numbering with equal constants merged, no-ops, CSE and dead code.

Values are numbered: placeholders ``0..P-1``, captured arrays next (equal
small constants share one number), then each step's outputs. A primitive
says itself whether an application is a no-op (``Primitive.is_noop``);
common subexpressions are steps with equal primitives (dataclass equality of
parameters) on equal value numbers.
"""
from __future__ import annotations

from kiln.graph.eval import applications

# Constants up to this many elements are compared by value for merging.
MERGE_CONST_SIZE = 64


class Step:
    """One primitive application over value numbers (``ins`` -> ``outs``)."""

    __slots__ = ("prim", "ins", "outs", "shapes", "dtypes", "in_dtypes", "multi")

    def __init__(self, prim, ins, outs, shapes, dtypes, in_dtypes, multi):
        self.prim = prim
        self.ins = ins
        self.outs = outs
        self.shapes = shapes
        self.dtypes = dtypes
        self.in_dtypes = in_dtypes
        self.multi = multi

    def __repr__(self) -> str:
        return f"Step({type(self.prim).__name__}, {self.ins} -> {self.outs})"


class Program:
    """The simplified steps and how values enter and leave them."""

    __slots__ = ("steps", "out_vals", "alias", "live_inputs", "n_inputs", "info")

    def __init__(self, steps, out_vals, alias, live_inputs, n_inputs, info):
        self.steps = steps
        self.out_vals = out_vals
        self.alias = alias
        self.live_inputs = live_inputs
        self.n_inputs = n_inputs
        self.info = info  # value number -> (shape, dtype) as traced


def simplify(placeholders, captured, tape, outputs, shapeless: bool, stats: dict) -> Program:
    """Number the values of ``tape`` and run the passes; counts go into ``stats``."""
    val: dict = {}
    info: dict = {}
    for k, p in enumerate(placeholders):
        val[id(p)] = k
        info[k] = (p._shape, p._dtype)
    n_ph = len(placeholders)
    alias: dict = {}  # merged input value -> representative
    by_value: dict = {}
    for j, c in enumerate(captured):
        v = n_ph + j
        val[id(c)] = v
        info[v] = (c._shape, c._dtype)
        buf = c._buf
        if buf is not None and c.size <= MERGE_CONST_SIZE and type(buf).__module__ == "numpy":
            key = (c._dtype, c._shape, buf.tobytes())
            rep = by_value.get(key)
            if rep is None:
                by_value[key] = v
            else:
                alias[v] = rep
                val[id(c)] = rep
                stats["merged_consts"] += 1
    n_inputs = n_ph + len(captured)
    nxt = n_inputs
    steps: list = []
    cse: dict = {}
    for node, group in applications(tape):
        multi = node._sibs is not None
        prim = node._prim
        ins = tuple(val[id(i)] for i in node._inputs)
        if not multi and len(ins) == 1 and prim.is_noop(node._inputs, node, shapeless):
            val[id(node)] = ins[0]
            stats["noops"] += 1
            continue
        try:
            ck = (prim, ins)
            hit = cse.get(ck)
        except TypeError:  # a primitive with unhashable parameters
            ck, hit = None, None
        if hit is not None:
            for s, v in zip(group, hit):
                val[id(s)] = v
            stats["cse"] += 1
            continue
        outs = tuple(range(nxt, nxt + len(group)))
        nxt += len(group)
        for s, v in zip(group, outs):
            val[id(s)] = v
            info[v] = (s._shape, s._dtype)
        if ck is not None:
            cse[ck] = outs
        steps.append(Step(prim, ins, outs, tuple(s._shape for s in group), tuple(s._dtype for s in group),
                          tuple(i._dtype for i in node._inputs), multi))
    out_vals = [val[id(o)] for o in outputs]
    # Dead code: steps none of whose outputs are needed.
    live = set(out_vals)
    kept: list = []
    for st in reversed(steps):
        if any(o in live for o in st.outs):
            kept.append(st)
            live.update(st.ins)
        else:
            stats["dead"] += 1
    kept.reverse()
    stats["steps"] = len(kept)
    return Program(kept, out_vals, alias, {v for v in live if v < n_inputs}, n_inputs, info)
