"""Stage 4, emit: a fused group becomes a kernel for the backend that runs it.

On the CPU the group's templates go to ``backend/cpu_kernels`` (numba). The
result is wrapped in a ``FusedCall`` that also holds the group's steps as an
unfused function: a kernel that fails to build or run (a numba error, an
unsupported dtype) warns once, naming the group, and the unfused path runs
from then on, so a failure never gives a wrong answer. Other backends (and
a CPU without numba) get the unfused steps.
"""
from __future__ import annotations

import functools
import warnings

from kiln.backend import codegen, cpu_kernels


def step_fn(st, xp, overrides):
    """The callable computing one step on buffers."""
    fn = overrides.get(type(st.prim).__name__) if overrides else None  # keyed by primitive name
    if fn is not None:
        return functools.partial(fn, st.prim, xp)
    return functools.partial(st.prim.eval, xp)


class FusedCall:
    """One fused group at run time: the kernel, or the unfused steps after a failure."""

    __slots__ = ("kernel", "fallback", "name", "shape", "min_size", "failed", "donors")

    def __init__(self, kernel, fallback, name, shape, min_size):
        self.kernel = kernel
        self.fallback = fallback
        self.name = name
        self.shape = shape  # None when shapeless (taken from the leaves)
        self.min_size = min_size
        self.failed = False
        self.donors: list = []  # (output index, leaf index, input value number): may write in place

    def __call__(self, *leaves, donated=None):
        if not self.failed and (not self.min_size or max(a.size for a in leaves) >= self.min_size):
            into = None
            if donated:
                into = {j: leaves[li] for j, li, v in self.donors if v in donated}
            try:
                return self.kernel(*leaves, shape=self.shape, into=into)
            except Exception as e:  # noqa: BLE001 - any build/run failure falls back
                self.failed = True
                warnings.warn(f"[compile] The fused kernel for {self.name} failed ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); it runs unfused.",
                              RuntimeWarning, stacklevel=2)
        return self.fallback(*leaves)


def unfused(g, xp, overrides):
    """A function computing group ``g``'s outputs from its leaves, step by step."""
    ns: dict = {}
    args = ", ".join(f"v{v}" for v in g.leaves)
    lines = [f"def _group({args}):"]
    for k, st in enumerate(g.all_steps):
        ns[f"s{k}"] = step_fn(st, xp, overrides)
        lines.append(f"    v{st.outs[0]} = s{k}({', '.join(f'v{v}' for v in st.ins)})")
    lines.append(f"    return ({', '.join(f'v{v}' for v in g.outs)},)")
    return codegen.make_function("\n".join(lines) + "\n", "_group", ns)


def cpu_kernel(g, info):
    """The numba kernel for group ``g`` (raises ``cpu_kernels.KernelError`` if it cannot be rendered)."""
    index = {v: k for k, v in enumerate(g.leaves)}
    local: dict = {}
    nodes = []
    for j, st in enumerate(g.steps):
        refs = [("node", local[v]) if v in local else ("leaf", index[v]) for v in st.ins]
        nodes.append((st.prim.expr, refs))
        local[st.outs[0]] = j
    outs = g.outs
    reduce = None
    if g.reduce is not None:
        r = g.reduce
        outs = g.outs[:-1]
        reduce = (local[r.ins[0]], r.prim.reduce_expr, r.prim.reduce_init, len(r.prim.axes), r.prim.keepdims)
    return cpu_kernels.kernel(nodes, [local[v] for v in outs], [info[v][1].np.name for v in g.leaves],
                              [info[v][1].np.name for v in g.outs], g.dtype, reduce)


def fused_call(g, info, backend_name, xp, overrides, mode, min_size, min_steps, shapeless):
    """A ``FusedCall`` for ``g``, or None where the group should run unfused."""
    if mode == "off" or backend_name != "cpu" or not cpu_kernels.available:
        return None
    if len(g.all_steps) < 2 and mode != "on":
        return None  # one NumPy call is already one pass
    size = 1
    for s in g.shape:
        size *= s
    threshold = 0 if (mode == "on" or len(g.all_steps) >= min_steps) else min_size
    if not shapeless and size < threshold:
        return None
    if mode == "auto" and (shapeless or size >= min_size) and not all(
            cpu_kernels.vectorised(st.prim.expr, g.dtype) for st in g.steps):
        return None  # scalar libm calls in a loop lose to NumPy's SIMD passes on large arrays
    try:
        kernel = cpu_kernel(g, info)
    except cpu_kernels.KernelError as e:
        warnings.warn(f"[compile] No fused kernel for {g.name} ({e}); it runs unfused.", RuntimeWarning,
                      stacklevel=2)
        return None
    return FusedCall(kernel, unfused(g, xp, overrides), g.name, None if shapeless else tuple(g.shape),
                     threshold if shapeless else 0)
