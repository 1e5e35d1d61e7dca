"""The user-facing ``compile``: the switch, the cache of plans per input signature, state trees."""
from __future__ import annotations

import functools
import os
from typing import Callable, Optional

from kiln.primitives.misc import Placeholder
from kiln.transforms.tracing import placeholder
from kiln.transforms.compile.plan import Plan
from kiln.transforms.compile.trees import _flatten_call, _flatten_out, _leaf_paths, _state_arrays, _tree_get, _tree_set, _unflatten_call

__all__ = ["compile", "disable_compile", "enable_compile"]


class _Flags:
    __slots__ = ("enabled",)

    def __init__(self):
        off = ("", "0", "false", "False")
        self.enabled = (os.environ.get("KILN_DISABLE_COMPILE", "") in off
                        and os.environ.get("MLX_DISABLE_COMPILE", "") in off)


_flags = _Flags()


def disable_compile() -> None:
    """Globally disable compilation: compiled functions call the Python function.

    Setting the environment variable ``KILN_DISABLE_COMPILE`` (or MLX's
    ``MLX_DISABLE_COMPILE``) to a non-empty value other than ``0`` has the
    same effect at import.
    """
    _flags.enabled = False


def enable_compile() -> None:
    """Globally enable compilation (undoes ``disable_compile``)."""
    _flags.enabled = True


class _CompiledFunction:
    """The callable ``mx.compile`` returns. ``num_traces`` counts traces."""

    def __init__(self, fun: Callable, inputs, outputs, shapeless: bool):
        self._fun = fun
        self._inputs = inputs
        self._outputs = outputs
        self._shapeless = bool(shapeless)
        self._cache: dict = {}
        self.num_traces = 0
        functools.update_wrapper(self, fun)

    def __call__(self, *args, **kwargs):
        if not _flags.enabled:
            return self._fun(*args, **kwargs)
        arrays, key = _flatten_call(args, kwargs, self._shapeless)
        state = None
        if self._inputs is not None:
            state = _state_arrays(self._inputs)
            sl = self._shapeless
            key.append(("S",) + tuple((a._dtype, len(a._shape) if sl else a._shape, a._stream)
                                      for a in state))
        key = tuple(key)
        plan = self._cache.get(key)
        if plan is None:
            plan = self._trace(key, arrays, state)
        return plan.call(arrays, state, self._outputs)

    def _trace(self, key, arrays, state):
        self.num_traces += 1
        name = getattr(self._fun, "__name__", "function")
        phs = [placeholder(a._shape, a._dtype, "compile", a._stream) for a in arrays]
        args, kwargs = _unflatten_call(key[:-1] if self._inputs is not None else key, phs)
        root = self._inputs
        in_paths = _leaf_paths(root) if root is not None else []
        state_phs = [placeholder(a._shape, a._dtype, "compile", a._stream) for _, a in in_paths]
        for (path, _), ph in zip(in_paths, state_phs):
            root = _tree_set(root, path, ph)
        ph_prims = [p._prim for p in phs]
        state_prims = [p._prim for p in state_phs]
        try:
            out = self._fun(*args, **kwargs)
            out_arrays: list = []
            out_def = _flatten_out(out, out_arrays)
            out_paths = _leaf_paths(self._outputs) if self._outputs is not None else []
        finally:
            for (path, real), ph in zip(in_paths, state_phs):
                try:
                    if _tree_get(root, path) is ph:
                        root = _tree_set(root, path, real)
                except (KeyError, IndexError, TypeError):
                    pass
        concrete = {id(a) for a in arrays if not _traced(a)}
        if concrete and _reaches(out_arrays + [a for _, a in out_paths], concrete):
            # An argument reached through a closure instead of through its parameter: MLX
            # refuses it (its value would be frozen into the plan while the argument varies).
            # Tracers of an enclosing vmap/grad are exempt: the outer transform owns them.
            raise ValueError("[compile] Attempting to compile a function with uncaptured inputs is "
                             "not allowed.")
        phs = _unrebound(phs, ph_prims)
        state_phs = _unrebound(state_phs, state_prims)
        plan = Plan(phs + state_phs, len(phs), out_arrays + [a for _, a in out_paths], out_def,
                     len(out_arrays), [p for p, _ in out_paths], self._shapeless, name)
        if plan.cacheable:
            self._cache[key] = plan
        return plan

    def plans(self) -> list:
        """The cached plans (for tests and inspection)."""
        return list(self._cache.values())

    def clear_cache(self) -> None:
        """Forget every traced plan (the next call traces again)."""
        self._cache.clear()


def _walk_inputs(roots):
    """Every array in the graphs above ``roots`` (each once), roots first."""
    seen: set = set()
    stack = list(roots)
    while stack:
        a = stack.pop()
        yield a
        for x in a._inputs:
            if id(x) not in seen:
                seen.add(id(x))
                stack.append(x)


def _traced(a) -> bool:
    """Whether ``a`` depends on a placeholder (an enclosing transformation's tracer)."""
    return any(isinstance(x._prim, Placeholder) for x in _walk_inputs([a]))


def _reaches(roots, ids: set) -> bool:
    """Whether ``roots`` or the graph above them holds an array whose id is in ``ids``."""
    return any(id(a) in ids for a in _walk_inputs(roots))


def _unrebound(phs: list, prims: list) -> list:
    """The placeholders as the traced graph reads them.

    An in-place update of an argument (``x[i] = v``, ``x += y``) rebinds the placeholder object to
    the updated node; its original content lives on in a clone deeper in the graph, which is
    then the input the plan must feed.
    """
    out = list(phs)
    for i, (p, prim) in enumerate(zip(phs, prims)):
        if p._prim is prim:
            continue
        found = next((a for a in _walk_inputs([p]) if a._prim is prim), None)
        # Not read at all any more: any data-less stand-in will do.
        out[i] = found if found is not None else placeholder(p._shape, p._dtype, "compile", p._stream)
    return out


def compile(fun: Optional[Callable] = None, inputs=None, outputs=None, shapeless: bool = False):  # noqa: A001
    """Return a compiled function that produces the same output as ``fun``.

    The first call for a given input signature traces ``fun`` on data-less
    placeholders; later calls with the same tree structure, shapes (ranks
    only with ``shapeless=True``), dtypes and non-array arguments replay the
    simplified, fused plan. Arrays ``fun`` closes over are captured as
    constants at trace time; Python side effects run only while tracing.

    Args:
        fun: a function of arrays, trees (lists, tuples, dicts) of arrays and
            constants (ints, floats, strings, None) returning arrays or trees
            of arrays. May be omitted to use ``compile(...)`` as a decorator
            factory.
        inputs: a list or dict tree of arrays read at every call as extra
            inputs (e.g. ``model.state``, ``optimizer.state``,
            ``mx.random.state``). Non-array leaves are ignored.
        outputs: a list or dict tree whose array leaves the function replaces;
            after each call the new values are written back into it.
        shapeless: if True, a change of input shapes (not ranks or dtypes)
            does not retrace. Graphs that depend on traced shapes raise.

    Returns:
        A callable with the same arguments and results as ``fun``; its
        ``num_traces`` attribute counts traces.
    """
    if fun is None:
        return functools.partial(compile, inputs=inputs, outputs=outputs, shapeless=shapeless)
    if not callable(fun):
        raise TypeError(f"[compile] Expected a callable, got {type(fun).__name__}.")
    if outputs is not None and isinstance(outputs, tuple):
        raise ValueError("[compile] outputs must be a list or a dict (a tree that can be updated in place).")
    return _CompiledFunction(fun, inputs, outputs, shapeless)
