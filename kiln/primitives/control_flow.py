"""Structured control flow primitives: ``Switch``, ``While``, ``WhileVJP`` and ``Scan``.

Each primitive holds one or more *bodies*: functions traced once on
placeholders (built by ``kiln.transforms.control_flow.Body``). A body is used
here only through a small duck-typed surface, so this module imports no
transform:

* ``body.run(xp, bufs)`` evaluates the traced plan on buffers (a tuple out),
* ``body.graph(arrays)`` rebuilds the traced graph with ordinary nodes,
* ``body.trace(fn, avals, name)`` traces a new body (used by the rules),
* ``body.captured``, ``body.in_shapes``, ``body.out_shapes``, ``body.out_dtypes``.

A primitive's inputs are its explicit operands followed by the arrays each
body captured (closed-over arrays and constants made inside the body), in
body order. Every rule first turns the bodies into *closed* functions of the
explicit operands plus the captured arrays (``inv``: loop invariants), so
the new primitives a rule builds take everything explicitly and their own
bodies capture only constants. Rules call the public transforms through
``transforms`` (``transforms.vjp``, ``.jvp``, ``.vmap``, handed in by
``kiln.transforms.control_flow``), so their results are again control-flow
primitives that every transformation can walk; ops are reached at rule time
through ``kiln.primitives.base.ops``.
"""
from __future__ import annotations

import math

from kiln.device import current_stream, memory
from kiln.graph.array import _make, _make_multi
from kiln.graph.eval import applications
from kiln.primitives.base import Primitive, primitive
from kiln.primitives.base import ops as mx  # the ops floor, looked up at rule time
from kiln.primitives.misc import AsType, Copy, StopGradient
from kiln.primitives.shape import BroadcastTo, Reshape, Transpose


class _Transforms:
    """The transforms the rules apply to bodies (``vjp``, ``jvp``, ``vmap``).

    A primitive imports no transform, so ``kiln/transforms/control_flow.py`` (which builds every
    body, and so runs before any rule can) hands them in when it loads, as
    ``transforms/custom.py`` hands ``CustomTransforms`` its rules.
    """

    vjp = jvp = vmap = None


transforms = _Transforms()

_COPY = Copy()


# ---------------------------------------------------------------- helpers
def _avals(arrays) -> list:
    return [(a._shape, a._dtype, a._stream) for a in arrays]


def _build(prim, inputs, shapes, dtypes) -> list:
    """The output nodes of ``prim`` as a list (one node, or siblings)."""
    stream = inputs[0]._stream if inputs else current_stream()
    if not shapes:
        return []
    if len(shapes) == 1:
        return [prim.apply(inputs, shapes[0], dtypes[0], stream)]
    return prim.apply_multi(inputs, list(shapes), list(dtypes), stream)


def _single(outs):
    return outs[0] if len(outs) == 1 else tuple(outs)


def _split(seq, sizes) -> list:
    out, k = [], 0
    for n in sizes:
        out.append(list(seq[k:k + n]))
        k += n
    return out


def _inexact(a) -> bool:
    return a._dtype.is_inexact


def _to_batch0(x, ax, size):
    """``x`` with its batch axis at 0 (broadcast when ``ax`` is None)."""
    if ax is None:
        return mx.broadcast_to(mx.expand_dims(x, 0), (size,) + x.shape)
    return x if ax == 0 else mx.moveaxis(x, ax, 0)


def _batch_size(inputs, axes) -> int:
    for x, a in zip(inputs, axes):
        if a is not None:
            return x.shape[a]
    raise ValueError("[vmap] No batched input.")


def _vmap_call(fn, args, axes, size):
    """``fn`` vectorised over ``args`` (batch axes ``axes``), outputs batched at 0."""
    if all(a is None for a in axes):
        outs = fn(*args)
        return [_to_batch0(o, None, size) for o in outs]
    outs = transforms.vmap(lambda *a: list(fn(*a)), in_axes=tuple(axes), out_axes=0)(*args)
    return list(outs)


def _check_shapes(name: str, got, want) -> None:
    """Shapeless compile replays a graph on new shapes; a traced body cannot follow them."""
    got = [tuple(g) for g in got]
    want = [tuple(w) for w in want]
    if got != want:
        raise ValueError(f"[{name}] The body was traced for input shapes {want}, not {got}: control flow "
                         "cannot be replayed on new shapes (compile it with shapeless=False).")


def _replace_at(base, idx, vals) -> list:
    out = list(base)
    for i, v in zip(idx, vals):
        out[i] = v
    return out


# ---------------------------------------------------------------- Switch
@primitive
class Switch(Primitive):
    """``branches[clip(index)](*operands)``: inputs ``[index, *operands, *captured...]``."""

    branches: tuple
    n_ops: int

    @property
    def n_outputs(self) -> int:
        return len(self.branches[0].out_shapes)

    def _caps(self, rest) -> list:
        return _split(rest[self.n_ops:], [len(b.captured) for b in self.branches])

    def eval(self, xp, index, *rest):
        n = len(self.branches)
        k = min(max(int(index), 0), n - 1)
        ops = list(rest[:self.n_ops])
        out = self.branches[k].run(xp, ops + self._caps(rest)[k])
        return _single(out)

    def output_shapes(self, inputs):
        want = list(self.branches[0].in_shapes) + [c._shape for b in self.branches for c in b.captured]
        _check_shapes("switch", [i.shape for i in inputs[1:]], want)
        return [tuple(s) for s in self.branches[0].out_shapes]

    def closed(self, k):
        """Branch ``k`` as a function of all operands after the index."""
        n_ops, branch, sizes = self.n_ops, self.branches[k], [len(b.captured) for b in self.branches]

        def fn(*rest):
            caps = _split(rest[n_ops:], sizes)[k]
            return branch.graph(list(rest[:n_ops]) + caps)

        return fn

    def vjp(self, primals, cotangents, argnums, outputs):
        index, rest = primals[0], list(primals[1:])
        want = [i - 1 for i in argnums if i > 0]
        n = len(rest)

        def make(k):
            f = self.closed(k)

            def g(*a):
                r, cts = list(a[:n]), list(a[n:])
                _, grads = transforms.vjp(lambda *d: f(*_replace_at(r, want, d)), [r[i] for i in want], cts)
                return grads

            return g

        grads = build_switch(self.branches[0], index, [make(k) for k in range(len(self.branches))],
                             rest + list(cotangents), "switch")
        it = iter(grads)
        return [None if i == 0 else next(it) for i in argnums]

    def jvp(self, primals, tangents, argnums, outputs):
        index, rest = primals[0], list(primals[1:])
        pairs = [(i - 1, t) for i, t in zip(argnums, tangents) if i > 0]
        want = [i for i, _ in pairs]
        n = len(rest)

        def make(k):
            f = self.closed(k)

            def g(*a):
                r, ts = list(a[:n]), list(a[n:])
                _, tans = transforms.jvp(lambda *d: f(*_replace_at(r, want, d)), [r[i] for i in want], ts)
                return tans

            return g

        if not want:
            return [mx.zeros(o.shape, o.dtype) for o in outputs]
        return build_switch(self.branches[0], index, [make(k) for k in range(len(self.branches))],
                            rest + [t for _, t in pairs], "switch")

    def vmap(self, inputs, axes):
        index, rest = inputs[0], list(inputs[1:])
        size = _batch_size(inputs, axes)
        rest_axes = list(axes[1:])
        if axes[0] is None:
            fns = []
            for k in range(len(self.branches)):
                f = self.closed(k)
                fns.append(lambda *a, f=f: _vmap_call(f, a, rest_axes, size))
            outs = build_switch(self.branches[0], index, fns, rest, "switch")
            return outs, [0] * len(outs)
        # A batched index: every branch runs on the whole batch, then a select.
        idx = mx.clip(_to_batch0(index, axes[0], size), 0, len(self.branches) - 1)
        result = None
        for k in range(len(self.branches)):
            outs = _vmap_call(self.closed(k), rest, rest_axes, size)
            if result is None:
                result = outs
                continue
            sel = idx == k
            result = [mx.where(mx.reshape(sel, (size,) + (1,) * (o.ndim - 1)), o, r)
                      for o, r in zip(outs, result)]
        return result, [0] * len(result)


def build_switch(tracer, index, fns, operands, what: str) -> list:
    """Trace ``fns`` (functions of ``operands`` returning lists) into one Switch node."""
    bodies = [tracer.trace(f, _avals(operands), f"{what} branch {k}") for k, f in enumerate(fns)]
    b0 = bodies[0]
    prim = Switch(tuple(bodies), len(operands))
    inputs = [index] + list(operands)
    for b in bodies:
        inputs.extend(b.captured)
    return _build(prim, inputs, b0.out_shapes, b0.out_dtypes)


# ---------------------------------------------------------------- While
@primitive
class While(Primitive):
    """``while cond(c): c = body(c)`` at most ``max_iters`` times.

    Inputs ``[*carry, *consts, *cond.captured, *body.captured]``; ``cond``
    and ``body`` take ``carry + consts + their captured``.
    """

    cond: object
    body: object
    n_carry: int
    n_consts: int
    max_iters: object = None

    @property
    def n_outputs(self) -> int:
        return self.n_carry

    def _parts(self, seq):
        nc, nk = self.n_carry, self.n_consts
        return _split(seq, [nc, nk, len(self.cond.captured), len(self.body.captured)])

    def loop(self, xp, carry, inv):
        """Run the loop on buffers; ``inv`` is everything after the carry."""
        nk, ncc = self.n_consts, len(self.cond.captured)
        consts, ccaps, bcaps = inv[:nk], inv[nk:nk + ncc], inv[nk + ncc:]
        cond_in, body_in = consts + ccaps, consts + bcaps
        n = 0
        limit = self.max_iters
        while (limit is None or n < limit) and bool(self.cond.run(xp, carry + cond_in)[0]):
            carry = list(self.body.run(xp, carry + body_in))
            n += 1
        return carry, n

    def step(self, xp, carry, inv):
        nk, ncc = self.n_consts, len(self.cond.captured)
        return list(self.body.run(xp, carry + inv[:nk] + inv[nk + ncc:]))

    def test(self, xp, carry, inv):
        return bool(self.cond.run(xp, carry + inv[:self.n_consts + len(self.cond.captured)])[0])

    def eval(self, xp, *bufs):
        carry, _ = self.loop(xp, list(bufs[:self.n_carry]), list(bufs[self.n_carry:]))
        return _single(carry)

    def output_shapes(self, inputs):
        want = list(self.body.in_shapes) + [c._shape for c in self.cond.captured + self.body.captured]
        _check_shapes("while_loop", [i.shape for i in inputs], want)
        return [i.shape for i in inputs[:self.n_carry]]

    def closed(self):
        """``(cond_fn, body_fn)`` as functions of ``(*carry, *inv)``."""
        nc, nk, ncc = self.n_carry, self.n_consts, len(self.cond.captured)
        cond, body = self.cond, self.body

        def cond_fn(*a):
            return cond.graph(list(a[:nc + nk + ncc]))

        def body_fn(*a):
            return body.graph(list(a[:nc + nk]) + list(a[nc + nk + ncc:]))

        return cond_fn, body_fn

    def jvp(self, primals, tangents, argnums, outputs):
        nc = self.n_carry
        carry, inv = list(primals[:nc]), list(primals[nc:])
        tan = dict(zip(argnums, tangents))
        dc = [i for i in range(nc) if _inexact(carry[i])]
        dinv = [j for j in range(len(inv)) if nc + j in tan and _inexact(inv[j])]
        if not dc:
            return [mx.zeros(o.shape, o.dtype) for o in outputs]
        tc0 = [tan[i] if i in tan else mx.zeros(carry[i].shape, carry[i].dtype) for i in dc]
        tinv = [tan[nc + j] for j in dinv]
        cond_fn, body_fn = self.closed()
        ndc, ninv = len(dc), len(inv)

        def new_cond(*a):
            return cond_fn(*(list(a[:nc]) + list(a[nc + ndc:nc + ndc + ninv])))

        def new_body(*a):
            c, tc = list(a[:nc]), list(a[nc:nc + ndc])
            v, tv = list(a[nc + ndc:nc + ndc + ninv]), list(a[nc + ndc + ninv:])

            def f(*d):
                return body_fn(*(_replace_at(c, dc, d[:ndc]) + _replace_at(v, dinv, d[ndc:])))

            outs, tans = transforms.jvp(f, [c[i] for i in dc] + [v[j] for j in dinv], tc + tv)
            return list(outs) + [tans[i] for i in dc]

        res = build_while(self.cond, new_cond, new_body, carry + tc0, inv + tinv, self.max_iters)
        tout = iter(res[nc:])
        return [next(tout) if i in dc else mx.zeros(outputs[i].shape, outputs[i].dtype) for i in range(nc)]

    def batched(self, inputs, axes, size=None):
        """The vectorised loop: carries batched at 0, finished elements masked."""
        nc = self.n_carry
        size = _batch_size(inputs, axes) if size is None else size
        carry = [_to_batch0(x, a, size) for x, a in zip(inputs[:nc], axes[:nc])]
        inv, inv_axes = list(inputs[nc:]), list(axes[nc:])
        cond_fn, body_fn = self.closed()
        c_axes = [0] * nc

        def vcond(*a):
            return _vmap_call(cond_fn, a, c_axes + inv_axes, size)[0]

        def new_cond(*a):
            return [mx.any(vcond(*a))]

        def new_body(*a):
            active = vcond(*a)
            new = _vmap_call(body_fn, a, c_axes + inv_axes, size)
            return [mx.where(mx.reshape(active, (size,) + (1,) * (n.ndim - 1)), n, o)
                    for n, o in zip(new, a[:nc])]

        return carry, inv, new_cond, new_body

    def vmap(self, inputs, axes):
        carry, inv, new_cond, new_body = self.batched(inputs, axes)
        outs = build_while(self.cond, new_cond, new_body, carry, inv, self.max_iters)
        return outs, [0] * len(outs)

    def vjp(self, primals, cotangents, argnums, outputs):
        nc = self.n_carry
        carry, inv = list(primals[:nc]), list(primals[nc:])
        dinv = [i - nc for i in argnums if i >= nc and _inexact(primals[i])]
        grads = build_while_vjp(self, carry, inv, list(cotangents), dinv)
        return _pick_grads(grads, carry, inv, argnums, dinv)


def _pick_grads(grads, carry, inv, argnums, dinv) -> list:
    nc = len(carry)
    dc = [i for i in range(nc) if _inexact(carry[i])]
    g_c = dict(zip(dc, grads[:len(dc)]))
    g_v = dict(zip(dinv, grads[len(dc):]))
    out = []
    for i in argnums:
        x = carry[i] if i < nc else inv[i - nc]
        g = g_c.get(i) if i < nc else g_v.get(i - nc)
        out.append(g if g is not None else mx.zeros(x.shape, x.dtype))
    return out


def build_while(tracer, cond_fn, body_fn, carry, consts, max_iters) -> list:
    """Trace ``cond_fn``/``body_fn`` of ``(*carry, *consts)`` into one While node."""
    avals = _avals(list(carry) + list(consts))
    cond = tracer.trace(cond_fn, avals, "while_loop cond")
    body = tracer.trace(body_fn, avals, "while_loop body")
    prim = While(cond, body, len(carry), len(consts), max_iters)
    inputs = list(carry) + list(consts) + list(cond.captured) + list(body.captured)
    return _build(prim, inputs, [c._shape for c in carry], [c._dtype for c in carry])


# ---------------------------------------------------------------- While, reverse mode
@primitive
class WhileVJP(Primitive):
    """Reverse mode through a While: runs the loop, then its adjoint, in one eval.

    Inputs ``[*carry, *inv, *cotangents of the float carries, *bwd.captured, *fres.captured]``;
    ``fres`` is the body that also returns the step's residuals (``_Residuals``), ``bwd`` the
    cotangent part of the step's VJP;
    outputs the cotangents of the float carries at entry, then of ``inv[dinv]``.
    Its own jvp/vjp/vmap rules make while_loop differentiable to any order.
    The forward pass records the trip count and what the backward pass needs:
    the residuals of every step when ``max_iters`` is None; else the carry
    entering every ``ceil(sqrt(max_iters))``-th step, each segment being run
    again for its residuals when the backward pass reaches it (memory about
    ``sqrt(max_iters)`` carries and one segment of residuals).
    """

    fwd: While
    bwd: object
    fres: object
    dinv: tuple

    @property
    def dc(self) -> list:
        return [i for i, d in enumerate(self.fwd.body.out_dtypes) if d.is_inexact]

    @property
    def n_outputs(self) -> int:
        return len(self.bwd.out_shapes)

    def _n_caps(self) -> int:
        return len(self.bwd.captured) + len(self.fres.captured)

    def eval(self, xp, *bufs):
        fwd = self.fwd
        nc, n_dc = fwd.n_carry, len(self.dc)
        n_inv = len(bufs) - nc - n_dc - self._n_caps()
        carry, inv = list(bufs[:nc]), list(bufs[nc:nc + n_inv])
        k = nc + n_inv
        cts = list(bufs[k:k + n_dc])
        k += n_dc
        bcaps = list(bufs[k:k + len(self.bwd.captured)])
        fcaps = list(bufs[k + len(self.bwd.captured):])
        fres, bwd = self.fres, self.bwd

        def step_saving(c):
            out = fres.run(xp, c + inv + fcaps)
            return list(out[:nc]), list(out[nc:])

        every = 0 if fwd.max_iters is None else max(1, math.isqrt(max(fwd.max_iters - 1, 0)) + 1)
        # What the loop holds lives only inside this eval; it is counted in the
        # memory statistics while held, so get_peak_memory shows it.
        res_bytes = sum(math.prod(sh) * d.np.itemsize for sh, d in zip(fres.out_shapes[nc:], fres.out_dtypes[nc:]))
        held_res = _Held(res_bytes)
        held_ck = _Held(sum(c.nbytes for c in carry))
        acc = [xp.zeros(inv[j].shape, dtype=inv[j].dtype) for j in self.dinv]

        def backward(saved, g, acc):
            while saved:
                out = bwd.run(xp, g + acc + saved.pop() + inv + bcaps)
                held_res.drop()
                g, acc = list(out[:n_dc]), list(out[n_dc:])
            return g, acc

        n, limit = 0, fwd.max_iters
        if not every:  # no bound: keep the residuals of every step
            saved = []
            while fwd.test(xp, carry, inv):
                carry, r = step_saving(carry)
                saved.append(r)
                held_res.add()
            cts, acc = backward(saved, cts, acc)
            return _single(cts + acc)
        checkpoints = [carry]  # the carry entering every `every`-th step
        while n < limit and fwd.test(xp, carry, inv):
            carry = fwd.step(xp, carry, inv)
            n += 1
            if n % every == 0 and n < limit:
                checkpoints.append(carry)
                held_ck.add()
        for seg in range((n + every - 1) // every - 1, -1, -1):
            c = checkpoints[seg]
            saved = []
            for _ in range(seg * every, min(n, (seg + 1) * every)):
                c, r = step_saving(c)
                saved.append(r)
                held_res.add()
            cts, acc = backward(saved, cts, acc)
            del checkpoints[seg:]
            if seg:
                held_ck.drop()
        held_ck.release()
        return _single(cts + acc)

    def output_shapes(self, inputs):
        return [tuple(s) for s in self.bwd.out_shapes]

    def jvp(self, primals, tangents, argnums, outputs):
        # Forward over reverse: with p the differentiated inputs, the tangent of
        # J(p)^T ct is grad_p <ct, J(p) t> (a reverse pass through the loop's JVP,
        # itself a While) plus J(p)^T t_ct (this VJP again, on the cotangents' tangent).
        fwd = self.fwd
        nc, n_dc = fwd.n_carry, len(self.dc)
        n_inv = len(primals) - nc - n_dc - self._n_caps()
        carry, inv = list(primals[:nc]), list(primals[nc:nc + n_inv])
        cts = list(primals[nc + n_inv:nc + n_inv + n_dc])
        tan = dict(zip(argnums, tangents))
        dc, dinv = self.dc, list(self.dinv)
        jv = [j for j in range(n_inv) if nc + j in tan and _inexact(inv[j])]
        tc = [tan[i] if i in tan else mx.zeros(carry[i].shape, carry[i].dtype) for i in dc]
        tv = [tan[nc + j] for j in jv]
        cond_fn, body_fn = fwd.closed()

        def loop(c, v):
            return build_while(fwd.cond, cond_fn, body_fn, c, v, fwd.max_iters)

        def float_outs(c, v):
            outs = loop(c, v)
            return [outs[i] for i in dc]

        p = [carry[i] for i in dc] + [inv[j] for j in dinv]
        ndc = len(dc)
        terms = []
        if any(i in tan for i in dc) or jv:
            def inner(*d):
                c, v = _replace_at(carry, dc, d[:ndc]), _replace_at(inv, dinv, d[ndc:])
                _, t = transforms.jvp(lambda *e: float_outs(_replace_at(c, dc, e[:ndc]), _replace_at(v, jv, e[ndc:])),
                              [c[i] for i in dc] + [v[j] for j in jv], tc + tv)
                return t

            terms.append(transforms.vjp(inner, p, cts)[1])
        ct_tans = [nc + n_inv + k for k in range(n_dc)]
        if any(k in tan for k in ct_tans):
            tct = [tan[k] if k in tan else mx.zeros(c.shape, c.dtype) for k, c in zip(ct_tans, cts)]
            terms.append(transforms.vjp(lambda *d: float_outs(_replace_at(carry, dc, d[:ndc]), _replace_at(inv, dinv, d[ndc:])),
                                p, tct)[1])
        if not terms:
            return [mx.zeros(o.shape, o.dtype) for o in outputs]
        out = list(terms[0])
        for t in terms[1:]:
            out = [a + b for a, b in zip(out, t)]
        return out

    def vjp(self, primals, cotangents, argnums, outputs):
        # Reverse over reverse. G(p, v, ct) = J(p, v)^T ct is linear in ct, so with
        # u the cotangent of G: dG/dct^T u = J u (the loop's JVP along u), and the
        # cotangent of p and of the other invariants is grad <ct, J(p, v) u>, a
        # reverse pass through the loop's JVP.
        fwd = self.fwd
        nc, n_dc = fwd.n_carry, len(self.dc)
        n_inv = len(primals) - nc - n_dc - self._n_caps()
        carry, inv = list(primals[:nc]), list(primals[nc:nc + n_inv])
        cts = list(primals[nc + n_inv:nc + n_inv + n_dc])
        dc, dinv = self.dc, list(self.dinv)
        ndc = len(dc)
        u = [mx.zeros(o.shape, o.dtype) if c is None else c for c, o in zip(cotangents, outputs)]
        cond_fn, body_fn = fwd.closed()

        def float_outs(c, v):
            outs = build_while(fwd.cond, cond_fn, body_fn, c, v, fwd.max_iters)
            return [outs[i] for i in dc]

        want_c = [i for i in argnums if i < nc and i in dc]
        want_v = [i - nc for i in argnums if nc <= i < nc + n_inv and _inexact(inv[i - nc])]
        p = [carry[i] for i in want_c] + [inv[j] for j in want_v]
        nwc = len(want_c)
        grads = {}
        if p:
            def inner(*d):
                c, v = _replace_at(carry, want_c, d[:nwc]), _replace_at(inv, want_v, d[nwc:])
                _, t = transforms.jvp(lambda *e: float_outs(_replace_at(c, dc, e[:ndc]), _replace_at(v, dinv, e[ndc:])),
                              [c[i] for i in dc] + [v[j] for j in dinv], u)
                return t

            g = transforms.vjp(inner, p, cts)[1]
            grads.update(zip(want_c + [nc + j for j in want_v], g))
        ct_idx = [nc + n_inv + k for k in range(n_dc)]
        if any(k in argnums for k in ct_idx):
            _, t = transforms.jvp(lambda *e: float_outs(_replace_at(carry, dc, e[:ndc]), _replace_at(inv, dinv, e[ndc:])),
                          [carry[i] for i in dc] + [inv[j] for j in dinv], u)
            grads.update(zip(ct_idx, t))
        return [grads.get(i, mx.zeros(primals[i].shape, primals[i].dtype)) for i in argnums]

    def vmap(self, inputs, axes):
        # vmap of a VJP is the VJP of the vectorised loop (with batched cotangents).
        fwd = self.fwd
        nc, n_dc = fwd.n_carry, len(self.dc)
        n_inv = len(inputs) - nc - n_dc - self._n_caps()
        size = _batch_size(inputs, axes)
        fin = list(inputs[:nc + n_inv])
        fax = list(axes[:nc + n_inv])
        for j in self.dinv:  # per-example cotangents need per-example invariants
            if fax[nc + j] is None:
                fin[nc + j] = _to_batch0(fin[nc + j], None, size)
                fax[nc + j] = 0
        carry, inv, new_cond, new_body = fwd.batched(fin, fax, size)
        cts = [_to_batch0(x, a, size) for x, a in
               zip(inputs[nc + n_inv:nc + n_inv + n_dc], axes[nc + n_inv:nc + n_inv + n_dc])]
        bfwd = build_while_prim(fwd.cond, new_cond, new_body, carry, inv, fwd.max_iters)
        outs = _while_vjp_node(bfwd[0], carry, bfwd[1], cts, list(self.dinv))
        out_axes = [0] * n_dc + [fax[nc + j] for j in self.dinv]
        return outs, out_axes


class _Held:
    """Bytes of carries an eval holds, added to (and removed from) the memory counters."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.count = 0

    def add(self) -> None:
        self.count += 1
        memory.active += self.nbytes
        if memory.active > memory.peak:
            memory.peak = memory.active

    def drop(self) -> None:
        if self.count:
            self.count -= 1
            memory.active -= self.nbytes

    def release(self) -> None:
        memory.active -= self.nbytes * self.count
        self.count = 0


def build_while_prim(tracer, cond_fn, body_fn, carry, consts, max_iters):
    avals = _avals(list(carry) + list(consts))
    cond = tracer.trace(cond_fn, avals, "while_loop cond")
    body = tracer.trace(body_fn, avals, "while_loop body")
    return While(cond, body, len(carry), len(consts), max_iters), list(consts) + list(cond.captured) + list(body.captured)


def _while_vjp_node(fwd: While, carry, inv, cts, dinv) -> list:
    """The WhileVJP node of loop ``fwd`` at ``(carry, inv)`` for cotangents ``cts`` of its float carries."""
    inv = list(inv)
    nc = fwd.n_carry
    dc = [i for i in range(nc) if _inexact(carry[i])]
    _, body_fn = fwd.closed()
    split = _Residuals(fwd.body, body_fn, list(carry), [], inv, [], dc, [], dinv)
    fres = fwd.body.trace(split.forward, _avals(list(carry) + inv), "while_loop forward")
    res_avals = [(r._shape, r._dtype, r._stream) for r in split.residuals]
    acc_avals = _avals([inv[j] for j in dinv])
    bwd = fwd.body.trace(split.backward, _avals(list(cts)) + acc_avals + res_avals + _avals(inv),
                         "while_loop backward")
    prim = WhileVJP(fwd, bwd, fres, tuple(dinv))
    inputs = list(carry) + inv + list(cts) + list(bwd.captured) + list(fres.captured)
    return _build(prim, inputs, bwd.out_shapes, bwd.out_dtypes)


def build_while_vjp(w: While, carry, inv, cotangents, dinv) -> list:
    nc = w.n_carry
    cts = [c for i, c in enumerate(cotangents[:nc]) if _inexact(carry[i])]
    return _while_vjp_node(w, carry, inv, cts, dinv)


# ---------------------------------------------------------------- Scan
@primitive
class Scan(Primitive):
    """``for t: c, y[t] = body(c, x[t])`` over ``length`` steps (backwards if ``reverse``).

    Inputs ``[*carry, *xs, *consts, *body.captured]``; ``body`` takes
    ``carry + x[t] + consts + captured`` and returns ``carry + y``. Outputs the
    final carry, then the ys stacked along a new leading axis.
    """

    body: object
    n_carry: int
    n_xs: int
    n_consts: int
    length: int
    reverse: bool = False

    @property
    def n_ys(self) -> int:
        return len(self.body.out_shapes) - self.n_carry

    @property
    def n_outputs(self) -> int:
        return len(self.body.out_shapes)

    def eval(self, xp, *bufs):
        nc, nx = self.n_carry, self.n_xs
        carry, xs, inv = list(bufs[:nc]), bufs[nc:nc + nx], list(bufs[nc + nx:])
        T = self.length
        ys = [xp.empty((T,) + tuple(s), dtype=d.np)
              for s, d in zip(self.body.out_shapes[nc:], self.body.out_dtypes[nc:])]
        # Counted while the loop runs, so the peak shows them even inside a compiled plan
        # (whose intermediates the counters do not see); eval's caller counts the outputs after.
        held = _Held(sum(b.nbytes for b in ys))
        held.add()
        run = self.body.run
        for t in (range(T - 1, -1, -1) if self.reverse else range(T)):
            out = run(xp, carry + [x[t] for x in xs] + inv)
            carry = list(out[:nc])
            for y, v in zip(ys, out[nc:]):
                y[t] = v
        held.release()
        return _single(carry + ys)

    def output_shapes(self, inputs):
        nc, nx = self.n_carry, self.n_xs
        ins = self.body.in_shapes
        want = (list(ins[:nc]) + [(self.length,) + tuple(s) for s in ins[nc:nc + nx]] + list(ins[nc + nx:])
                + [c._shape for c in self.body.captured])
        _check_shapes("scan", [i.shape for i in inputs], want)
        return [tuple(s) for s in self._out_shapes()]

    def _out_shapes(self):
        nc, T = self.n_carry, self.length
        return list(self.body.out_shapes[:nc]) + [(T,) + tuple(s) for s in self.body.out_shapes[nc:]]

    def _out_dtypes(self):
        return list(self.body.out_dtypes)

    def closed(self):
        """The body as a function of ``(*carry, *x_t, *inv)``."""
        body = self.body
        return lambda *a: body.graph(list(a))

    def jvp(self, primals, tangents, argnums, outputs):
        nc, nx = self.n_carry, self.n_xs
        carry, xs, inv = list(primals[:nc]), list(primals[nc:nc + nx]), list(primals[nc + nx:])
        tan = dict(zip(argnums, tangents))
        dc = [i for i in range(nc) if _inexact(carry[i])]
        dx = [j for j in range(nx) if nc + j in tan and _inexact(xs[j])]
        dv = [j for j in range(len(inv)) if nc + nx + j in tan and _inexact(inv[j])]
        ndc, ndx, nv = len(dc), len(dx), len(inv)
        f_body = self.closed()

        def new_body(*a):
            c, tc = list(a[:nc]), list(a[nc:nc + ndc])
            k = nc + ndc
            x, tx = list(a[k:k + nx]), list(a[k + nx:k + nx + ndx])
            k += nx + ndx
            v, tv = list(a[k:k + nv]), list(a[k + nv:])

            def f(*d):
                cc = _replace_at(c, dc, d[:ndc])
                xx = _replace_at(x, dx, d[ndc:ndc + ndx])
                vv = _replace_at(v, dv, d[ndc + ndx:])
                return f_body(*(cc + xx + vv))

            outs, tans = transforms.jvp(f, [c[i] for i in dc] + [x[j] for j in dx] + [v[j] for j in dv], tc + tx + tv)
            return list(outs[:nc]) + [tans[i] for i in dc] + list(outs[nc:]) + list(tans[nc:])

        tc0 = [tan[i] if i in tan else mx.zeros(carry[i].shape, carry[i].dtype) for i in dc]
        res = build_scan(self.body, new_body, carry + tc0, xs + [tan[nc + j] for j in dx],
                         inv + [tan[nc + nx + j] for j in dv], self.length, self.reverse)
        tcs = dict(zip(dc, res[nc:nc + ndc]))
        ny = self.n_ys
        out = [tcs[i] if i in tcs else mx.zeros(outputs[i].shape, outputs[i].dtype) for i in range(nc)]
        return out + list(res[nc + ndc + ny:nc + ndc + 2 * ny])

    def vmap(self, inputs, axes):
        nc, nx = self.n_carry, self.n_xs
        size = _batch_size(inputs, axes)
        carry = [_to_batch0(x, a, size) for x, a in zip(inputs[:nc], axes[:nc])]
        xs, x_axes = [], []
        for x, a in zip(inputs[nc:nc + nx], axes[nc:nc + nx]):
            # the scanned axis stays first; the batch axis goes second
            xs.append(x if a is None or a == 1 else mx.moveaxis(x, a, 1))
            x_axes.append(None if a is None else 0)
        inv, inv_axes = list(inputs[nc + nx:]), list(axes[nc + nx:])
        f_body = self.closed()
        in_axes = [0] * nc + x_axes + inv_axes

        def new_body(*a):
            return _vmap_call(f_body, a, in_axes, size)

        outs = build_scan(self.body, new_body, carry, xs, inv, self.length, self.reverse)
        return outs, [0] * nc + [1] * self.n_ys

    def vjp(self, primals, cotangents, argnums, outputs):
        nc, nx, ny = self.n_carry, self.n_xs, self.n_ys
        carry, xs, inv = list(primals[:nc]), list(primals[nc:nc + nx]), list(primals[nc + nx:])
        dc = [i for i in range(nc) if _inexact(carry[i])]
        dx = [j for j in range(nx) if nc + j in argnums and _inexact(xs[j])]
        dv = [j for j in range(len(inv)) if nc + nx + j in argnums and _inexact(inv[j])]
        stream = carry[0]._stream if carry else xs[0]._stream if xs else None
        x_avals = [(x._shape[1:], x._dtype, x._stream) for x in xs]
        y_avals = [(tuple(s), d, stream) for s, d in zip(self.body.out_shapes[nc:], self.body.out_dtypes[nc:])]
        split = _Residuals(self.body, self.closed(), carry, x_avals, inv, y_avals, dc, dx, dv)
        # The forward scan again, also stacking the residuals the backward pass reads
        # (values of the body's VJP that do not depend on cotangents).
        twin = build_scan(self.body, split.forward, carry, xs, inv, self.length, self.reverse)
        n = len(outputs)
        if all(o._buf is None for o in outputs):
            # This node's outputs are still to compute: make them copies of the twin's,
            # so one forward loop gives both the value and the residuals.
            for old, new in zip(outputs, twin[:n]):
                old._prim = _COPY
                old._inputs = (new,)
                old._sibs = None
        stacks = twin[n:]
        ndc, ndv = len(dc), len(dv)
        c0 = [cotangents[i] for i in dc] + [mx.zeros(inv[j].shape, inv[j].dtype) for j in dv]
        res = build_scan(self.body, split.backward, c0, stacks + xs + list(cotangents[nc:nc + ny]), inv,
                         self.length, not self.reverse)
        g_c = dict(zip(dc, res[:ndc]))
        g_v = dict(zip(dv, res[ndc:ndc + ndv]))
        g_x = dict(zip(dx, res[ndc + ndv:]))
        out = []
        for i in argnums:
            if i < nc:
                g, like = g_c.get(i), carry[i]
            elif i < nc + nx:
                g, like = g_x.get(i - nc), xs[i - nc]
            else:
                g, like = g_v.get(i - nc - nx), inv[i - nc - nx]
            out.append(g if g is not None else mx.zeros(like.shape, like.dtype))
        return out


# Primitives cheap enough to recompute in the backward pass rather than stack (views, casts).
_CHEAP = (Copy, StopGradient, Transpose, Reshape, BroadcastTo, AsType)


class _Residuals:
    """The VJP of one scan step, split into what the forward pass can compute and save
    (no cotangent needed: the residuals) and the rest, for the backward pass.

    The step's VJP ``J(c, x, inv, dc, dy)`` is traced once; nodes that do not
    depend on the cotangent placeholders form the forward part, and those of
    them that the other part reads are stacked by the forward scan (the carry
    itself only where the VJP reads it), so the backward pass recomputes nothing.
    """

    def __init__(self, tracer, f_body, carry, x_avals, inv, y_avals, dc, dx, dv):
        nc, nx, nv, ny = len(carry), len(x_avals), len(inv), len(y_avals)
        self.f_body, self.nc, self.nx, self.nv, self.ny = f_body, nc, nx, nv, ny
        self.dc, self.dx, self.dv = dc, dx, dv
        ndc, ndx = len(dc), len(dx)

        def joint(*a):
            c, x, v = list(a[:nc]), list(a[nc:nc + nx]), list(a[nc + nx:nc + nx + nv])
            g_c, dy = list(a[nc + nx + nv:nc + nx + nv + ndc]), list(a[nc + nx + nv + ndc:])

            def f(*d):
                return f_body(*(_replace_at(c, dc, d[:ndc]) + _replace_at(x, dx, d[ndc:ndc + ndx])
                                + _replace_at(v, dv, d[ndc + ndx:])))

            cts = [mx.zeros(cv.shape, cv.dtype) for cv in c]
            for i, g in zip(dc, g_c):
                cts[i] = g
            _, grads = transforms.vjp(f, [c[i] for i in dc] + [x[j] for j in dx] + [v[j] for j in dv], cts + dy)
            return list(grads)

        avals = _avals(carry) + list(x_avals) + _avals(inv) + [_avals([carry[i]])[0] for i in dc] + list(y_avals)
        jb = tracer.trace(joint, avals, "scan step VJP" if nx or ny else "while_loop step VJP")
        plan = jb.plan
        phs = plan.placeholders
        self.phs_c = phs[:nc]
        self.phs_xv = phs[nc:nc + nx + nv]
        self.phs_ct = phs[nc + nx + nv:]
        ct = {id(p) for p in self.phs_ct}
        xv = {id(p) for p in self.phs_xv}
        # Values the backward pass has anyway: captured constants, x[t] and the invariants.
        outside = {id(c) for c in plan.captured} | xv
        v_only = {id(c) for c in plan.captured} | {id(p) for p in self.phs_xv[nx:]}
        saved = {id(p) for p in self.phs_c}  # values to stack if the backward pass reads them
        primal, back = [], []
        for node, group in applications(plan.tape):
            ids = [id(i) for i in node._inputs]
            if any(i in ct for i in ids):
                ct.update(id(s) for s in group)
                back.append((node, group))
                continue
            primal.append((node, group))
            if not any(i in saved for i in ids) and (all(i in v_only for i in ids) or type(node._prim) in _CHEAP):
                # Loop-invariant or a view of x[t]: recomputed in the backward pass, not stacked.
                if all(i in v_only for i in ids):
                    v_only.update(id(s) for s in group)
                back.append((node, group))
                outside.update(id(s) for s in group)
            else:
                saved.update(id(s) for s in group)
        residuals, seen = [], set()
        for node, _ in back:
            for i in node._inputs:
                if id(i) in saved and id(i) not in seen:
                    seen.add(id(i))
                    residuals.append(i)
        for o in plan.outputs:
            if id(o) in saved and id(o) not in seen:
                seen.add(id(o))
                residuals.append(o)
        self.primal, self.tangent, self.residuals, self.outputs = primal, back, residuals, plan.outputs
        self.ndc, self.ndx, self.ndv = ndc, ndx, len(dv)

    def forward(self, *a):
        """``(c, x, inv) -> body outputs + residuals``."""
        nc, nx, nv = self.nc, self.nx, self.nv
        env = {id(p): v for p, v in zip(self.phs_c + self.phs_xv, a)}
        _replay(self.primal, env)
        return list(self.f_body(*a[:nc + nx + nv])) + [env.get(id(r), r) for r in self.residuals]

    def backward(self, *a):
        """``(dc, acc; residuals_t, x_t, dy_t; inv) -> (dc, acc + dinv; dx_t)``."""
        ndc, ndx, ndv, nr = self.ndc, self.ndx, self.ndv, len(self.residuals)
        nx, ny = self.nx, self.ny
        g_c, acc = list(a[:ndc]), list(a[ndc:ndc + ndv])
        k = ndc + ndv
        res, x, dy, v = a[k:k + nr], a[k + nr:k + nr + nx], a[k + nr + nx:k + nr + nx + ny], a[k + nr + nx + ny:]
        env = {id(r): val for r, val in zip(self.residuals, res)}
        env.update((id(p), val) for p, val in zip(self.phs_xv, list(x) + list(v)))
        env.update((id(p), val) for p, val in zip(self.phs_ct, g_c + list(dy)))
        _replay(self.tangent, env)
        grads = [env.get(id(o), o) for o in self.outputs]
        new_acc = [s + g for s, g in zip(acc, grads[ndc + ndx:])]
        return list(grads[:ndc]) + new_acc + list(grads[ndc:ndc + ndx])


def _replay(apps, env) -> None:
    """Rebuild ``(node, group)`` applications with ordinary nodes on the values in ``env``."""
    for node, group in apps:
        ins = tuple(env.get(id(i), i) for i in node._inputs)
        if node._sibs is None:
            env[id(node)] = _make(node._shape, node._dtype, node._prim, ins, node._stream)
        else:
            outs = _make_multi([s._shape for s in group], [s._dtype for s in group], node._prim, ins,
                               node._stream)
            for s, o in zip(group, outs):
                env[id(s)] = o


def build_scan(tracer, fn, carry, xs, consts, length, reverse) -> list:
    """Trace ``fn(*carry, *x_t, *consts)`` (returning carry + ys) into one Scan node."""
    x_avals = [(x._shape[1:], x._dtype, x._stream) for x in xs]
    avals = _avals(carry) + x_avals + _avals(consts)
    body = tracer.trace(fn, avals, "scan body")
    prim = Scan(body, len(carry), len(xs), len(consts), int(length), bool(reverse))
    inputs = list(carry) + list(xs) + list(consts) + list(body.captured)
    return _build(prim, inputs, prim._out_shapes(), prim._out_dtypes())


__all__ = ["Switch", "While", "WhileVJP", "Scan", "build_switch", "build_while", "build_scan"]
