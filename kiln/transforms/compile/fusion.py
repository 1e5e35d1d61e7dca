"""Stage 3, fusion: elementwise steps grouped into kernels (DAGs with several outputs).

A step can join a group when its primitive has an ``expr`` template and is
``fusable``, its dtypes are one float dtype (plus bools) that kernels
compute in, and its output shape is the group's. Steps are taken in
topological order; a step joins the groups of its producers unless that
would make a cycle (one of its other inputs depends on such a group through
an unfused step), so a group is a DAG whose values used outside it become
the kernel's outputs: an optimizer's ``p, m, v`` update is one group with
three outputs. A reduction over the trailing axes of a group's value joins
as its epilogue. ``order`` then sorts groups and unfused steps topologically.

The switch: ``set_fusion("auto" | "on" | "off")`` (or ``KILN_FUSION``):
``auto`` runs kernels for groups of two or more steps on outputs of at
least ``FUSE_MIN_SIZE`` elements (any size from ``FUSE_MIN_STEPS`` steps),
except large groups calling a function the kernel cannot vectorise
(``cpu_kernels.vectorised``: exp, log, sin... are scalar libm calls there), ``on`` for every group of any size (so
tests put each primitive through a kernel), ``off`` never.
"""
from __future__ import annotations

import heapq
import os

from kiln.backend import cpu_kernels

MAX_NODES = 64     # numba's compile time grows with the loop body
MAX_LEAVES = 32
FUSE_MIN_SIZE = 4096  # below it a kernel call costs more than the intermediates...
FUSE_MIN_STEPS = 8    # ...unless the group replaces this many NumPy calls (~1 us each)


class _Options:
    __slots__ = ("mode",)

    def __init__(self):
        self.mode = os.environ.get("KILN_FUSION", "auto") or "auto"


options = _Options()


def set_fusion(mode: str) -> None:
    """Choose when fused kernels run: ``"auto"`` (large arrays), ``"on"`` (always), ``"off"``.

    Args:
        mode: one of ``"auto"``, ``"on"``, ``"off"``. Plans already run keep
            their generated code for the mode they were run with.
    """
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"[compile] Fusion mode must be 'auto', 'on' or 'off', got {mode!r}.")
    options.mode = mode


class Group:
    """Fused steps in topological order, their leaves (inputs) and outputs (value numbers)."""

    __slots__ = ("steps", "dtype", "shape", "leaves", "outs", "reduce")

    def __init__(self, steps, dtype, shape):
        self.steps = steps
        self.dtype = dtype
        self.shape = shape
        self.leaves: list = []
        self.outs: list = []  # the reduction's output (if any) is last
        self.reduce = None    # a reduction step folding one of the group's values

    @property
    def all_steps(self) -> list:
        """The elementwise steps, then the reduction (a topological order)."""
        return self.steps + [self.reduce] if self.reduce is not None else self.steps

    @property
    def name(self) -> str:
        names = [type(s.prim).__name__ for s in self.all_steps]
        return "+".join(names) if len(names) <= 6 else "+".join(names[:6]) + f"+...({len(names)} steps)"


def fusable(st):
    """The float dtype name (None if all bool) a step would compute in, or False."""
    prim = st.prim
    if st.multi or not prim.fusable or not isinstance(prim.expr, str) or not cpu_kernels.supports(prim.expr):
        return False
    floats = set()
    for d in st.in_dtypes + st.dtypes:
        n = d.np.name
        if n not in cpu_kernels.FUSABLE_DTYPES:
            return False
        if n != "bool":
            floats.add(n)
    if len(floats) > 1:
        return False
    return floats.pop() if floats else None


def leaves_of(gsteps) -> list:
    """Inputs of ``gsteps`` produced outside them, in first-use order."""
    inside = {v for st in gsteps for v in st.outs}
    out: list = []
    for st in gsteps:
        for v in st.ins:
            if v not in inside and v not in out:
                out.append(v)
    return out


def group(steps, out_vals, stats: dict) -> list:
    """Fused groups over ``steps`` (single steps too: ``mode="on"`` runs those as kernels)."""
    producer: dict = {}
    for t, st in enumerate(steps):
        for v in st.outs:
            producer[v] = t
    parent: dict = {}   # group id -> merged into
    members: dict = {}  # root id -> step indices
    bits: dict = {}     # root id -> bitmask of the ids merged into it
    meta: dict = {}     # root id -> (dtype, shape)
    of_step: dict = {}  # step index -> group id (any, resolve with find)
    dep: dict = {}      # value -> bitmask of group ids it depends on

    def find(g):
        while g in parent:
            g = parent[g]
        return g

    for t, st in enumerate(steps):
        in_dep = 0
        for v in st.ins:
            in_dep |= dep.get(v, 0)
        dt = fusable(st)
        g_new = None
        if dt is not False:
            shape = st.shapes[0]
            cands = []
            for v in st.ins:
                p = producer.get(v)
                if p is None or p not in of_step:
                    continue
                g = find(of_step[p])
                if g not in cands and meta[g] == (dt, shape):
                    cands.append(g)
            chosen: list = []
            for g in cands:
                trial = chosen + [g]
                mask = 0
                for h in trial:
                    mask |= bits[h]
                idx = sorted(i for h in trial for i in members[h]) + [t]
                if len(idx) > MAX_NODES:
                    continue
                gsteps = [steps[i] for i in idx]
                inside = {v for s in gsteps for v in s.outs}
                leaves = leaves_of(gsteps)
                # a leaf that depends on the merged groups through unfused steps: a cycle
                if len(leaves) > MAX_LEAVES or any(dep.get(v, 0) & mask for v in leaves if v not in inside):
                    continue
                chosen = trial
            if chosen:
                g_new = chosen[0]
                for h in chosen[1:]:
                    parent[h] = g_new
                    members[g_new].extend(members.pop(h))
                    bits[g_new] |= bits.pop(h)
                    meta.pop(h)
                members[g_new].append(t)
            else:
                g_new = t
                members[t] = [t]
                bits[t] = 1 << t
                meta[t] = (dt, shape)
            of_step[t] = g_new
        mask = in_dep | (bits[find(g_new)] if g_new is not None else 0)
        for v in st.outs:
            dep[v] = mask
    used_outside: dict = {}
    for t, st in enumerate(steps):
        g = find(of_step[t]) if t in of_step else None
        for v in st.ins:
            p = producer.get(v)
            if p is not None and p in of_step and find(of_step[p]) != g:
                used_outside[v] = True
    final = set(out_vals)
    groups = []
    for root, idx in members.items():
        idx.sort()
        g = Group([steps[i] for i in idx], *meta[root])
        g.leaves = leaves_of(g.steps)
        g.outs = [v for s in g.steps for v in s.outs if v in used_outside or v in final]
        groups.append(g)
    _attach_reductions(steps, groups, out_vals)
    multi = [g for g in groups if len(g.all_steps) > 1]
    stats["fused_groups"] = len(multi)
    stats["fused_nodes"] = sum(len(g.all_steps) for g in multi)
    stats["fused_reductions"] = sum(g.reduce is not None for g in multi)
    return groups


def _attach_reductions(steps, groups, out_vals) -> None:
    """A reduction over the trailing axes of a group's value becomes the group's epilogue.

    The group's kernel then folds that value as it computes it (a softmax's
    ``sum(exp(x - max))`` in the pass that writes ``exp(x - max)``). A
    reduction's primitive says how to fold (``reduce_expr``, ``reduce_init``).
    """
    made_by = {v: g for g in groups for v in g.outs}
    uses: dict = {}
    for st in steps:
        for v in st.ins:
            uses[v] = uses.get(v, 0) + 1
    final = set(out_vals)
    for st in steps:
        prim = st.prim
        if st.multi or getattr(prim, "reduce_expr", None) is None or len(st.ins) != 1:
            continue
        g = made_by.get(st.ins[0])
        if g is None or g.reduce is not None or g.dtype is None:
            continue
        if st.dtypes[0].np.name != g.dtype or st.in_dtypes[0].np.name != g.dtype:
            continue
        nd = len(g.shape)
        axes = tuple(sorted(a % nd for a in prim.axes)) if nd else ()
        if not axes or axes != tuple(range(nd - len(axes), nd)):
            continue
        if not cpu_kernels.supports(prim.reduce_expr):
            continue
        v = st.ins[0]
        g.reduce = st
        if uses.get(v) == 1 and v not in final:
            g.outs.remove(v)
        g.outs.append(st.outs[0])


class FusionCycle(Exception):
    """The grouping left a group depending on itself through an unfused step."""


def order(steps, groups) -> list:
    """Groups and unfused steps in a topological order (each item: a Group or a Step)."""
    item_of: dict = {}
    for g in groups:
        for st in g.all_steps:
            item_of[id(st)] = g
    producer_item: dict = {}
    items: list = []
    seen: set = set()
    for st in steps:
        it = item_of.get(id(st), st)
        if id(it) not in seen:
            seen.add(id(it))
            items.append(it)
        for v in st.outs:
            producer_item[v] = it
    # Kahn's algorithm, keeping the original order among ready items.
    ins_of = {}
    for it in items:
        vals = it.leaves if isinstance(it, Group) else it.ins
        ins_of[id(it)] = {id(producer_item[v]) for v in vals if v in producer_item} - {id(it)}
    users: dict = {}
    for it in items:
        for p in ins_of[id(it)]:
            users.setdefault(p, []).append(it)
    pending = {id(it): len(ins_of[id(it)]) for it in items}
    pos = {id(it): k for k, it in enumerate(items)}
    ready = [(pos[id(it)], id(it), it) for it in items if pending[id(it)] == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, _, it = heapq.heappop(ready)
        out.append(it)
        for u in users.get(id(it), ()):
            pending[id(u)] -= 1
            if pending[id(u)] == 0:
                heapq.heappush(ready, (pos[id(u)], id(u), u))
    if len(out) != len(items):
        # A group reads (through unfused steps) a value it makes itself: no order exists.
        raise FusionCycle(f"{len(items) - len(out)} items in a cycle")
    return out
