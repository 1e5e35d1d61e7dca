"""Stage 5, run: the plan's replay as one generated straight-line Python function.

Each item (a fused group or an unfused step) is one call on value-numbered
locals; a value is deleted right after its last use, so intermediates are
freed as early as in eager evaluation. A kernel that reads a state input
(``inputs=``) for the last time may write one of its results into that
input's buffer when the call found no other holder of it (``Plan.call``:
donation). With the debug check on
(``trace_state.check``) every result is checked against its traced shape
and dtype.
"""
from __future__ import annotations

from kiln.backend import codegen, loaded_backends
from kiln.transforms.compile import emit
from kiln.transforms.compile import fusion
from kiln.transforms.compile.fusion import Group, options


def generate(plan, xp, check: bool):
    """The replay function ``bufs -> outputs`` of ``plan`` for array namespace ``xp``."""
    backend = None
    for b in loaded_backends():
        if b.xp is xp:
            backend = b
    overrides = getattr(backend, "overrides", None) or {}
    backend_name = "cpu" if backend is None else backend.name
    prog = plan.program
    ns: dict = {"_chk": _chk}
    lines = ["def _replay(bufs, donated):"]
    n_in = prog.n_inputs
    if n_in:
        names = [f"v{k}" if (k not in prog.alias and k in prog.live_inputs) else "_" for k in range(n_in)]
        lines.append("    " + ", ".join(names) + ", = bufs")
    calls = []  # (item, fused call or None)
    for it in plan.items:
        fc = None
        if isinstance(it, Group):
            fc = emit.fused_call(it, prog.info, backend_name, xp, overrides, options.mode, fusion.FUSE_MIN_SIZE,
                                 fusion.FUSE_MIN_STEPS, plan.shapeless)
        calls.append((it, fc))
    # the steps actually emitted, each with the values it reads and writes
    emitted = []
    for it, fc in calls:
        if fc is not None:
            emitted.append((it, fc, it.leaves, it.outs))
        elif isinstance(it, Group):
            emitted.extend((st, None, st.ins, st.outs) for st in it.all_steps)
        else:
            emitted.append((it, None, it.ins, it.outs))
    last: dict = {}
    viewers: set = set()  # values read by an unfused step (which may return a view of them)
    for t, (_, fc, ins, _) in enumerate(emitted):
        for v in ins:
            last[v] = t
            if fc is None:
                viewers.add(v)
    keep = set(prog.out_vals)
    donors: set = set()
    for t, (it, fc, ins, outs) in enumerate(emitted):
        name = f"s{t}"
        extra = ""
        if fc is not None:
            ns[name] = fc
            lhs = ", ".join(f"v{v}" for v in outs) + ","
            fc.donors = _donors(plan, it, t, last, keep, viewers)
            if fc.donors:
                extra = ", donated=donated"
                donors.update(v for _, _, v in fc.donors)
        else:
            ns[name] = emit.step_fn(it, xp, overrides)
            lhs = ", ".join(f"v{v}" for v in outs) + "," if it.multi else f"v{outs[0]}"
        lines.append(f"    {lhs} = {name}({', '.join(f'v{v}' for v in ins)}{extra})")
        if check:
            for k, v in enumerate(outs):
                shape, dtype = prog.info[v]
                ns[f"{name}_chk{k}"] = (None if plan.shapeless else shape, dtype.np,
                                        "fused kernel" if fc is not None else type(it.prim).__name__)
                lines.append(f"    _chk(v{v}, *{name}_chk{k})")
        dead = {v for v in ins if last.get(v) == t and v >= n_in and v not in keep}
        dead |= {v for v in outs if v not in last and v not in keep}
        if dead:
            lines.append("    del " + ", ".join(f"v{v}" for v in sorted(dead)))
    outs = ", ".join(f"v{v}" for v in prog.out_vals)
    lines.append(f"    return ({outs},)" if prog.out_vals else "    return ()")
    source = "\n".join(lines) + "\n"
    return codegen.make_function(source, "_replay", ns), source, frozenset(donors)


def _donors(plan, g, t, last, keep, viewers) -> list:
    """State inputs that group ``g`` (item ``t``) reads for the last time, paired with an output it may
    write into their buffer: same shape and dtype, elementwise (read before written, same index).

    An input that an unfused step also reads is never donated: that step may
    have made a view of it (a transpose for a matmul) that is read later.
    """
    prog = plan.program
    first_state, end_state = plan.n_args, len(plan.placeholders)
    out: list = []
    taken: set = set()
    results = g.outs[:-1] if g.reduce is not None else g.outs
    for li, v in enumerate(g.leaves):
        if (not (first_state <= v < end_state) or last.get(v) != t or v in keep or v in prog.alias
                or v in viewers):
            continue
        shape, dtype = prog.info[v]
        if tuple(shape) != tuple(g.shape):
            continue
        for j, o in enumerate(results):
            if j not in taken and prog.info[o][1] is dtype and tuple(prog.info[o][0]) == tuple(shape):
                taken.add(j)
                out.append((j, li, v))
                break
    return out


def _chk(buf, shape, npdtype, name) -> None:
    if buf.dtype != npdtype or (shape is not None and tuple(buf.shape) != tuple(shape)):
        raise AssertionError(
            f"[compile] {name} produced shape {tuple(buf.shape)} dtype {buf.dtype}, but the traced "
            f"node says shape {shape} dtype {npdtype}."
        )
