"""``custom_function`` (user-given vjp/jvp/vmap rules), ``checkpoint`` and ``depends``.

A custom function's outputs are nodes of a ``CustomTransforms`` primitive
whose inputs are the flattened array arguments followed by the outputs of
the plain function; it evaluates to those outputs, and its rules call the
user's functions, falling back to differentiating/vectorising the plain
function where the user gave none.
"""
from __future__ import annotations

import functools
from typing import Callable

from kiln.graph.array import _make_multi, array
from kiln.primitives.control import CustomTransforms, Depends
from kiln._tree import flatten
from kiln.transforms.grad import vjp
from kiln.transforms.jvp import jvp
from kiln.transforms.vmap import vmap

import kiln.ops as mx


class _CustomRules:
    """The rules of a ``CustomTransforms`` node (``kiln/primitives/control.py``): the user's, or
    transformations of the plain function where the user gave none."""

    @staticmethod
    def vjp(self, primals, cotangents, argnums, outputs):
        n = self.n_args
        args = primals[:n]
        wanted = [i for i in argnums if i < n]
        if not wanted:
            return [None] * len(argnums)
        cf = self.cf
        if cf._vjp is not None:
            outs_tree = self.out_unflatten(list(outputs))
            cots_tree = self.out_unflatten(list(cotangents))
            res = cf._vjp(self._args(args), cots_tree, outs_tree)
            if isinstance(res, array) or not isinstance(res, (list, tuple, dict)):
                res = (res,)
            flat, _ = flatten(list(res) if isinstance(res, tuple) else res, "custom_function", strict=False)
        else:
            def plain(*leaves):
                out = cf.fun(*self._args(leaves))
                return flatten(out, "custom_function")[0]

            _, flat = vjp(plain, list(args), list(cotangents))
        return [flat[i] if i < n else None for i in argnums]

    @staticmethod
    def jvp(self, primals, tangents, argnums, outputs):
        n = self.n_args
        args = primals[:n]
        cf = self.cf
        arg_tangents = [None] * n
        for i, t in zip(argnums, tangents):
            if i < n:
                arg_tangents[i] = t
        full = [t if t is not None else mx.zeros_like(a) for t, a in zip(arg_tangents, args)]
        if cf._jvp is not None:
            res = cf._jvp(self._args(args), self._args(full))
            return flatten(res, "custom_function")[0]

        def plain(*leaves):
            return flatten(cf.fun(*self._args(leaves)), "custom_function")[0]

        return jvp(plain, list(args), full)[1]

    @staticmethod
    def vmap(self, inputs, axes):
        n = self.n_args
        args, arg_axes = inputs[:n], axes[:n]
        cf = self.cf
        if cf._vmap is not None:
            outs, out_axes = cf._vmap(self._args(args), self._args(list(arg_axes)))
            outs_flat = flatten(outs, "custom_function")[0]
            ax_flat = flatten(out_axes, "custom_function", strict=False)[0] if isinstance(out_axes, (list, tuple, dict)) else [out_axes] * len(outs_flat)
            return outs_flat, ax_flat
        # Default: a new custom function over the batched arguments whose plain
        # function and rules are the vectorised originals, so custom rules
        # still apply to the batched call.
        batched = _batched_custom(cf, self, arg_axes)
        moved = [a if ax is None else mx.moveaxis(a, ax, 0) for a, ax in zip(args, arg_axes)]
        in_axes = [None if ax is None else 0 for ax in arg_axes]
        outs = batched(moved, in_axes)
        return outs, [0] * len(outs)




_RULES = _CustomRules()


def _batched_custom(cf, prim, arg_axes):
    def call(moved, in_axes):
        unf = prim.unflatten_args

        def plain(*leaves):
            return flatten(cf.fun(*unf(list(leaves))), "custom_function")[0]

        new = custom_function(lambda *leaves: plain(*leaves))
        vf = vmap(plain, in_axes=in_axes)
        new.fun = vf
        if cf._vjp is not None:
            def bvjp(primals, cotangents, outputs):
                def one(p, c, o):
                    r = cf._vjp(unf(list(p)), prim.out_unflatten(list(c)), prim.out_unflatten(list(o)))
                    if isinstance(r, array) or not isinstance(r, (list, tuple, dict)):
                        r = (r,)
                    return flatten(list(r) if isinstance(r, tuple) else r, "custom_function")[0]

                outs = vmap(one, in_axes=(in_axes, 0, 0))(list(primals), list(cotangents), list(outputs))
                return tuple(outs)

            new._vjp = bvjp
        if cf._jvp is not None:
            def bjvp(primals, tangents):
                def one(p, t):
                    return flatten(cf._jvp(unf(list(p)), unf(list(t))), "custom_function")[0]

                return vmap(one, in_axes=(in_axes, in_axes))(list(primals), list(tangents))

            new._jvp = bjvp
        return flatten(new(*moved), "custom_function")[0]

    return call


class custom_function:
    """Wrap a function to give it custom ``vjp``, ``jvp`` and ``vmap`` rules.

    Use as a decorator; then ``@f.vjp``, ``@f.jvp`` and ``@f.vmap`` register
    the rules (each optional):

    * ``vjp(primals, cotangents, outputs)`` returns the cotangents of the primals;
    * ``jvp(primals, tangents)`` returns the tangents of the outputs;
    * ``vmap(inputs, axes)`` returns ``(outputs, out_axes)``.
    """

    def __init__(self, fun: Callable):
        self.fun = fun
        self._vjp = None
        self._jvp = None
        self._vmap = None
        functools.update_wrapper(self, fun)

    def vjp(self, f: Callable):
        self._vjp = f
        return self

    def jvp(self, f: Callable):
        self._jvp = f
        return self

    def vmap(self, f: Callable):
        self._vmap = f
        return self

    def __call__(self, *args):
        leaves, unflatten = flatten(list(args), "custom_function", strict=False)
        arr_leaves = [x for x in leaves if isinstance(x, array)]
        if len(arr_leaves) != len(leaves):
            raise ValueError("[custom_function] Arguments must be arrays or trees of arrays.")
        out = self.fun(*args)
        outs, out_unflatten = flatten(out, "custom_function")
        prim = CustomTransforms(self, len(leaves), lambda lv: unflatten(lv), len(outs), out_unflatten, _RULES)
        nodes = _make_multi([o.shape for o in outs], [o.dtype for o in outs], prim,
                            tuple(leaves) + tuple(outs), outs[0]._stream if outs else None)
        return out_unflatten(nodes)


def checkpoint(fun: Callable) -> Callable:
    """Recompute ``fun``'s forward pass during the backward pass instead of storing it.

    Lowers peak memory of gradients through ``fun``; composes with ``vmap``
    and forward mode.
    """
    cf = custom_function(fun)

    def ckpt_vjp(primals, cotangents, outputs):
        leaves, unf = flatten(list(primals), "checkpoint")
        cots = flatten(cotangents, "checkpoint")[0]
        # Make recomputation wait for the cotangents: otherwise eval could run
        # it early, keeping every recomputed activation alive at once.
        tied = depends(leaves, cots)

        def plain(*lv):
            return flatten(fun(*unf(list(lv))), "checkpoint")[0]

        _, g = vjp(plain, tied, cots)
        return tuple(unf(g))

    cf.vjp(ckpt_vjp)
    functools.update_wrapper(cf, fun)
    return cf


def depends(inputs, dependencies):
    """``inputs`` unchanged, but evaluated only after ``dependencies``."""
    single = isinstance(inputs, array)
    ins = [inputs] if single else list(inputs)
    deps = [dependencies] if isinstance(dependencies, array) else list(dependencies)
    if not ins:
        return inputs
    outs = _make_multi([a.shape for a in ins], [a.dtype for a in ins], Depends(len(ins)),
                       tuple(ins) + tuple(deps), ins[0]._stream)
    return outs[0] if single else outs
