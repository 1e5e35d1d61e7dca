"""A traced function's plan: the stages run in order, the traced graph kept for transforms.

``Plan`` runs trace -> passes -> fusion once per input signature, generates
the replay per (array namespace, debug check, fusion mode) on first use, and
rebuilds the traced graph with ordinary ops on request (``graph``), which is
how ``Compiled``'s vjp/jvp/vmap rules and shapeless shape inference work.
"""
from __future__ import annotations

import warnings

import sys

import numpy as np

from kiln.graph.array import _make, _make_multi
from kiln.device import current_stream
from kiln.graph.eval import applications, trace_state
from kiln.transforms.tracing import placeholder
from kiln.transforms.compile import fusion, passes, run, trace
from kiln.transforms.compile.primitive import Compiled
from kiln.transforms.compile.trees import _tree_set, _unflatten_out


class Plan:
    """A traced function: the traced graph (for transforms) and its replay."""

    def __init__(self, placeholders, n_args, outputs, out_def, n_fun_out, state_paths, shapeless, name):
        self.name = name
        self.placeholders = placeholders
        self.n_args = n_args
        self.outputs = outputs
        self.out_def = out_def
        self.n_fun_out = n_fun_out
        self.state_paths = state_paths
        self.shapeless = shapeless
        self.out_shapes = [o._shape for o in outputs]
        self.out_dtypes = [o._dtype for o in outputs]
        self.stats = {"traced_nodes": 0, "steps": 0, "noops": 0, "cse": 0, "merged_consts": 0,
                      "dead": 0, "fused_groups": 0, "fused_nodes": 0,
                      "fused_reductions": 0}
        self._runners: dict = {}
        self._shape_cache: dict = {}
        self.source = ""
        tr = trace.trace(placeholders, outputs)
        self.tape, self.captured, self.cacheable = tr.tape, tr.captured, tr.cacheable
        self.n_inputs = len(placeholders) + len(self.captured)
        self.stats["traced_nodes"] = len(self.tape)
        self.program = passes.simplify(placeholders, self.captured, self.tape, outputs, shapeless, self.stats)
        self.steps = self.program.steps
        groups = fusion.group(self.steps, self.program.out_vals, self.stats)
        try:
            self.items = fusion.order(self.steps, groups)
        except fusion.FusionCycle as e:
            # Never a wrong answer: this plan runs unfused (a grouping bug to report, not to hide).
            warnings.warn(f"[compile] fusion of {name} left a cycle ({e}); running it unfused.",
                          RuntimeWarning, stacklevel=2)
            groups = []
            self.items = fusion.order(self.steps, groups)
        self.groups = [g for g in groups if len(g.all_steps) > 1]
        # state inputs a kernel may overwrite (Plan.call checks who else holds them)
        self.donatable = sorted({v for g in groups for v in g.leaves if n_args <= v < len(placeholders)})
        self.prim = Compiled(self)
        if shapeless and self.outputs:
            self._validate_shapeless()

    # ------------------------------------------------------------ replay
    def run(self, xp, bufs, donated=frozenset()):
        """Evaluate the plan on input buffers (the Compiled primitive's eval).

        ``donated``: value numbers of state inputs whose buffers no one else
        holds; kernels may write results into them.
        """
        key = (xp, trace_state.check, fusion.options.mode)
        fn = self._runners.get(key)
        if fn is None:
            fn, self.source, _ = run.generate(self, xp, key[1])  # source kept for inspection and tests
            self._runners[key] = fn
        return fn(bufs, donated)

    def call(self, arrays, state, outputs_tree):
        """Build the Compiled node for one call; write captured outputs back."""
        inputs = list(arrays)
        if state:
            inputs.extend(state)
        inputs.extend(self.captured)
        if self.outputs:
            if self.shapeless:
                shapes = self.shapes_for(tuple(a._shape for a in inputs[:len(self.placeholders)]))
            else:
                shapes = self.out_shapes
            stream = inputs[0]._stream if inputs else current_stream()
            prim = Compiled(self) if (self.donatable and state) else self.prim
            outs = _make_multi(shapes, self.out_dtypes, prim, tuple(inputs), stream)
        else:
            outs = []
        if self.state_paths:
            for path, o in zip(self.state_paths, outs[self.n_fun_out:]):
                _tree_set(outputs_tree, path, o)
            if self.donatable and state and outs:
                prim.donated = self._donations(inputs, state, outs[0]._inputs)
        return _unflatten_out(self.out_def, outs[:self.n_fun_out])

    def _donations(self, inputs, state, node_inputs) -> frozenset:
        """State inputs whose array and buffer nothing outside this call holds (their old values
        are unreachable once the state tree holds the new ones), so kernels may overwrite them."""
        if trace_state.keep_graph:  # a transformation may still read the old values
            return frozenset()
        local = object()
        base = sys.getrefcount(local)  # a name and the call's argument
        out = []
        for v in self.donatable:
            a = inputs[v]
            buf = a._buf
            if type(buf) is not np.ndarray or buf.base is not None:
                continue  # lazy, a view of another buffer, or not a host array
            in_inputs = sum(x is a for x in inputs)
            if in_inputs != 1:
                continue  # also passed as another input, which a later step may still read
            known = sum(x is a for x in state) + in_inputs + sum(x is a for x in node_inputs)
            if sys.getrefcount(a) - base - known == 0 and sys.getrefcount(buf) - base == 1:
                out.append(v)
        return frozenset(out)

    # ------------------------------------------------------------ the traced graph
    def graph(self, inputs) -> list:
        """The traced graph rebuilt with ordinary nodes on ``inputs``.

        ``inputs`` are the Compiled node's inputs (arguments, state, then
        captured arrays). The result is an ordinary graph (StopGradient and
        all), so vjp/jvp/vmap can walk it.
        """
        env: dict = {}
        n_ph = len(self.placeholders)
        for p, x in zip(self.placeholders, inputs[:n_ph]):
            env[id(p)] = x
        for c, x in zip(self.captured, inputs[n_ph:]):
            env[id(c)] = x
        shapeless = self.shapeless
        for node, group in applications(self.tape):
            prim = node._prim
            ins = tuple(env[id(i)] for i in node._inputs)
            shapes = _infer_shapes(prim, ins, self.name) if shapeless else [s._shape for s in group]
            if node._sibs is None:
                env[id(node)] = _make(tuple(shapes[0]), node._dtype, prim, ins, node._stream)
            else:
                outs = _make_multi(shapes, [s._dtype for s in group], prim, ins, node._stream)
                for s, o in zip(group, outs):
                    env[id(s)] = o
        return [env[id(o)] for o in self.outputs]

    def _validate_shapeless(self) -> None:
        """Check that the graph can replay on new shapes (output_shapes rules exist and agree)."""
        shapes = self.shapes_for(tuple(p._shape for p in self.placeholders))
        for got, want in zip(shapes, self.out_shapes):
            if tuple(got) != tuple(want):
                raise ValueError(
                    f"[compile] Cannot compile {self.name} with shapeless=True: shape inference gives "
                    f"{tuple(got)} for an output traced with shape {tuple(want)}."
                )

    def shapes_for(self, in_shapes: tuple) -> list:
        """Output shapes for inputs of ``in_shapes`` (shapeless replay), cached."""
        got = self._shape_cache.get(in_shapes)
        if got is None:
            phs = [placeholder(s, p._dtype, "compile", p._stream)
                   for s, p in zip(in_shapes, self.placeholders)]
            outs = self.graph(phs + list(self.captured))
            got = [o._shape for o in outs]
            if len(self._shape_cache) < 256:
                self._shape_cache[in_shapes] = got
        return got


def _infer_shapes(prim, ins, name) -> list:
    """Output shapes of ``prim`` on ``ins`` for shapeless replay, with the primitive's validity check."""
    try:
        shapes = prim.output_shapes(list(ins))
    except NotImplementedError:
        raise ValueError(
            f"[compile] Cannot compile {name} with shapeless=True: {type(prim).__name__} has no "
            "output_shapes rule. Compile with shapeless=False."
        ) from None
    except ValueError as e:
        raise ValueError(
            f"[compile] Shapeless replay of {name} failed at {type(prim).__name__} on input shapes "
            f"{', '.join(str(tuple(i.shape)) for i in ins)}: {e}"
        ) from None
    err = prim.replay_error(ins, shapes)
    if err is not None:
        raise ValueError(err.replace("{fun}", name))
    return [tuple(s) for s in shapes]
