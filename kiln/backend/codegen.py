"""Generated code: fused elementwise kernels and straight-line replay functions.

``compile`` hands this module two kinds of work:

* A fused group of elementwise primitives, as a list of numexpr templates
  (``"sin({0})"``) wired together. ``fused_kernel`` renders it into one
  numexpr expression over positional leaves ``a0, a1, ...``, compiles it once
  per canonical string (expression plus leaf dtypes) and returns a callable
  that makes one pass over the data with no intermediates. numexpr is an
  optional extra: without it (or for expressions whose result dtype would not
  be exactly right) ``fused_kernel`` returns None and the caller runs the
  primitives one by one.
* Python source for a replay function (``make_function``): a plan becomes
  straight-line code with its callables bound as globals, the tightest loop
  Python offers.

Only NumPy and numexpr are used here; nothing above the backend layer.
"""
from __future__ import annotations

import re

import numpy as np

try:  # optional: fused CPU kernels
    import numexpr as _ne
except Exception:  # pragma: no cover - depends on the environment
    _ne = None

# Set to False (e.g. by tests) to run every fused group unfused.
enabled = _ne is not None

# numexpr signature types per NumPy dtype name. numexpr has no float16,
# bfloat16 or unsigned types, and its integer division and power differ from
# MLX, so only these take part in fusion.
_NE_TYPES = {"float32": float, "float64": np.float64, "bool": bool}
FUSABLE_DTYPES = frozenset(_NE_TYPES)

# Numeric literals inside templates ("(1 / sqrt({0}))", "({0} * 57.29...)").
# numexpr reads float literals as float64 and would widen a float32
# expression, so literals are hoisted into constant inputs of the group dtype.
_LITERAL = re.compile(
    r"(?<![\w.])(\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)(?![\w.])"
)

_kernels: dict = {}
stats = {"built": 0, "hits": 0, "rejected": 0}

# numexpr is not always faster than NumPy: builds without VML compute float32
# transcendentals one scalar libm call at a time (tanh: ~50x slower than
# NumPy's SIMD loops), and a contended machine starves its threads. With
# ``calibrate`` on, each function (and plain arithmetic) is timed once per
# process against NumPy, and templates using a slower one are not fused.
calibrate = True
_speed: dict = {}
_FUNC = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\(")
_PROBE = 1 << 16


def template_ok(template: str, dtype_name: str | None) -> bool:
    """Whether fusing ``template`` in a ``dtype_name`` group is worth it here."""
    if not enabled:
        return False
    if not calibrate or dtype_name is None:
        return True
    if not _fast("*", dtype_name):
        return False
    for name in _FUNC.findall(template):
        if name != "where" and not _fast(name, dtype_name):
            return False
    return True


def _fast(name: str, dtype_name: str) -> bool:
    key = (name, dtype_name)
    ok = _speed.get(key)
    if ok is None:
        ok = _speed[key] = _measure(name, dtype_name)
    return ok


def _best(fn, reps: int = 3) -> float:
    import time

    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _measure(name: str, dtype_name: str) -> bool:
    """Time numexpr against NumPy for one function (``*``: a fused ``a*b+a``)."""
    a = np.linspace(0.1, 0.9, _PROBE, dtype=dtype_name)
    b = a[::-1].copy()
    t = _NE_TYPES[dtype_name]
    try:
        if name == "*":
            k = _ne.NumExpr("a*b+a", [("a", t), ("b", t)])
            ref = lambda: np.add(np.multiply(a, b), a)  # noqa: E731
            args = (a, b)
        else:
            npf = getattr(np, name, None)
            if npf is None:
                return True  # nothing to compare with: trust numexpr
            k = _ne.NumExpr(f"{name}(a)", [("a", t)])
            ref = lambda: npf(a)  # noqa: E731
            args = (a,)
        k(*args)
        ref()
        return _best(lambda: k(*args)) <= 1.25 * _best(ref)
    except Exception:
        return False


def render(nodes) -> str:
    """One expression for a tree of templates.

    Args:
        nodes: ``[(template, refs), ...]`` in topological order; each ref is
            ``("leaf", k)`` (the k-th leaf, named ``a{k}``) or ``("node", j)``
            (the expression of ``nodes[j]``). The last node is the root.
    Returns:
        The expression string of the root.
    """
    exprs: list = []
    for template, refs in nodes:
        args = [f"a{k}" if kind == "leaf" else exprs[k] for kind, k in refs]
        exprs.append(template.format(*args))
    return exprs[-1]


def _hoist_literals(expr: str, dtype_name: str | None):
    """Replace numeric literals by constant inputs ``c0, c1...`` of ``dtype_name``."""
    if dtype_name not in ("float32", "float64"):
        return expr, ()
    consts: list = []

    def sub(m):
        consts.append(float(m.group(1)))
        return f"c{len(consts) - 1}"

    expr = _LITERAL.sub(sub, expr)
    npdt = np.dtype(dtype_name)
    return expr, tuple(np.array(v, dtype=npdt) for v in consts)


class FusedKernel:
    """A compiled numexpr kernel plus its hoisted constants."""

    __slots__ = ("ne", "consts", "key", "__weakref__")

    def __init__(self, ne_kernel, consts, key):
        self.ne = ne_kernel
        self.consts = consts
        self.key = key

    def __call__(self, *leaves):
        return self.ne(*leaves, *self.consts)


def fused_kernel(nodes, leaf_dtypes, out_dtype: str, float_dtype: str | None):
    """A kernel computing the fused group ``nodes`` in one pass, or None.

    Args:
        nodes: templates and wiring as for ``render``.
        leaf_dtypes: NumPy dtype names of the leaves ``a0, a1, ...``.
        out_dtype: NumPy dtype name the root must have.
        float_dtype: the group's floating dtype (literals are cast to it).
    Returns:
        A callable ``kernel(*leaf_buffers) -> buffer``, or None when numexpr
        is missing or cannot compute this expression with exactly
        ``out_dtype``. Kernels are cached by their canonical string.
    """
    if not enabled:
        return None
    if out_dtype not in _NE_TYPES or any(d not in _NE_TYPES for d in leaf_dtypes):
        return None
    expr, consts = _hoist_literals(render(nodes), float_dtype)
    key = expr + "|" + ",".join(leaf_dtypes) + "|" + str(float_dtype) + "->" + out_dtype
    hit = _kernels.get(key, False)
    if hit is not False:
        stats["hits"] += 1
        if hit is None:
            return None
        return FusedKernel(hit, consts, key)
    ne = _build(expr, leaf_dtypes, len(consts), float_dtype, out_dtype)
    _kernels[key] = ne
    if ne is None:
        stats["rejected"] += 1
        return None
    stats["built"] += 1
    return FusedKernel(ne, consts, key)


def _build(expr, leaf_dtypes, n_consts, float_dtype, out_dtype):
    sig = [(f"a{k}", _NE_TYPES[d]) for k, d in enumerate(leaf_dtypes)]
    sig += [(f"c{k}", _NE_TYPES[float_dtype]) for k in range(n_consts)]
    try:
        kernel = _ne.NumExpr(expr, sig)
        # Check the dtype numexpr actually produces (its promotion rules are
        # not NumPy's): a kernel is only used where it is exactly right.
        probe = [np.ones((1,), dtype=d) for d in leaf_dtypes]
        probe += [np.ones((), dtype=float_dtype) for _ in range(n_consts)]
        out = kernel(*probe)
    except Exception:
        return None
    if out.dtype != np.dtype(out_dtype):
        return None
    return kernel


def kernel_cache_size() -> int:
    """Number of distinct fused kernels compiled (or rejected) so far."""
    return len(_kernels)


def make_function(source: str, name: str, namespace: dict):
    """Compile Python ``source`` defining ``name`` with globals ``namespace``."""
    code = compile(source, f"<kiln.compile {name}>", "exec")
    exec(code, namespace)  # noqa: S102 - source is generated by compile.py
    return namespace[name]
