"""Linear-algebra primitives: inverse, solve, Cholesky, QR, SVD, eigh, eig, LU.

Each primitive works on stacks of matrices in the last two axes; the ops in
``core/linalg.py`` validate, cast and broadcast beforehand, so ``eval`` hands
the whole stack to ``xp.linalg`` at once and every ``vmap`` rule only moves
the batch axis to the front. Derivative rules are the usual matrix-calculus
identities written with public ops (so they differentiate and batch again):

* symmetric inputs (Cholesky, eigh) use the symmetric convention: tangents
  are symmetrised first and gradients come back symmetric, as if the
  function were of the symmetric matrix rather than of one triangle;
* factors with a sign/phase freedom (QR, SVD, eigh vectors) are
  differentiated along the gauge that the closed forms fix, so only
  gauge-invariant functions of them have meaningful derivatives.

Everything else (``tri_inv``, ``solve_triangular``, ``det``, ``pinv``,
``norm``, ...) is composed from these in ``core/linalg.py``.
"""
from __future__ import annotations

from kiln.primitives.base import ops as mx

from kiln.primitives.base import Primitive, primitive, to_front


# ---------------------------------------------------------------- helpers
def _mT(x):
    """Transpose of the last two axes."""
    return mx.swapaxes(x, -1, -2)


def _eye_like(x, n: int):
    return mx.eye(n, dtype=x.dtype)


def _sym(x):
    return (x + _mT(x)) * 0.5


def _diag_embed(v):
    """``(..., n)`` -> ``(..., n, n)`` with ``v`` on the diagonal."""
    n = v.shape[-1]
    return mx.expand_dims(v, -1) * _eye_like(v, n)


def _diag(x):
    return mx.diagonal(x, 0, -2, -1)


def _gap_inverse(w):
    """``F[..., i, j] = 1 / (w_j - w_i)`` off the diagonal, 0 on it."""
    n = w.shape[-1]
    diff = mx.expand_dims(w, -2) - mx.expand_dims(w, -1)
    eye = mx.eye(n, dtype=mx.bool_)
    return mx.where(eye, mx.zeros_like(diff), 1.0 / mx.where(eye, mx.ones_like(diff), diff))


def _solve_upper(r, y):
    return mx.linalg.solve_triangular(r, y, upper=True)


def _right_solve_upper_t(y, r):
    """``y @ inv(r).T`` for upper-triangular ``r``: ``(inv(r) @ y.T).T``."""
    return _mT(_solve_upper(r, _mT(y)))


def _front(inputs, axes):
    """Batch axes to the front; unbatched inputs are broadcast to the batch."""
    size = next(x.shape[a] for x, a in zip(inputs, axes) if a is not None)
    out = []
    for x, a in zip(inputs, axes):
        if a is None:
            x = mx.broadcast_to(x, (size,) + x.shape)
        else:
            x = to_front(x, a)
        out.append(x)
    return out


def _real_dtype(dtype):
    return mx.float32 if dtype == mx.complex64 else dtype


class _Unary(Primitive):
    """One matrix stack in; outputs shaped by ``output_shapes``."""

    def _dtypes(self, x):
        return [x.dtype] * len(self.output_shapes([x]))

    def _build(self, x):
        shapes = self.output_shapes([x])
        if len(shapes) == 1:
            return [self.apply([x], shapes[0], self._dtypes(x)[0])]
        return self.apply_multi([x], shapes, self._dtypes(x))

    def vmap(self, inputs, axes):
        outs = self._build(to_front(inputs[0], axes[0]))
        return outs, [0] * len(outs)


# ---------------------------------------------------------------- inverse, solve
@primitive
class Inv(_Unary):
    """Inverse of each square matrix."""

    def eval(self, xp, a):
        return xp.linalg.inv(a).astype(a.dtype, copy=False)

    def output_shapes(self, inputs):
        return [inputs[0].shape]

    def vjp(self, primals, cotangents, argnums, outputs):
        inv_t = _mT(outputs[0])
        return [-(inv_t @ cotangents[0] @ inv_t)]

    def jvp(self, primals, tangents, argnums, outputs):
        inv = outputs[0]
        return [-(inv @ tangents[0] @ inv)]


@primitive
class Solve(Primitive):
    """``X = inv(A) @ B`` for ``A`` ``(..., n, n)`` and ``B`` ``(..., n, k)``
    with identical batch dims (the op broadcasts them)."""

    def eval(self, xp, a, b):
        return xp.linalg.solve(a, b).astype(b.dtype, copy=False)

    def output_shapes(self, inputs):
        return [inputs[1].shape]

    def vjp(self, primals, cotangents, argnums, outputs):
        a, _ = primals
        gb = mx.linalg.solve(_mT(a), cotangents[0])
        return [-(gb @ _mT(outputs[0])) if i == 0 else gb for i in argnums]

    def jvp(self, primals, tangents, argnums, outputs):
        a, _ = primals
        rhs = None
        for t, i in zip(tangents, argnums):
            term = -(t @ outputs[0]) if i == 0 else t
            rhs = term if rhs is None else rhs + term
        return [mx.linalg.solve(a, rhs)]

    def vmap(self, inputs, axes):
        a, b = _front(inputs, axes)
        return [self.apply([a, b], b.shape, b.dtype)], [0]


# ---------------------------------------------------------------- Cholesky
@primitive
class Cholesky(_Unary):
    """Cholesky factor of each symmetric positive-definite matrix, read from
    its lower (or, with ``upper``, upper) triangle."""

    upper: bool = False

    def eval(self, xp, a):
        if self.upper:
            # The upper triangle of a is the lower triangle of a.T.
            return xp.swapaxes(xp.linalg.cholesky(xp.swapaxes(a, -1, -2)), -1, -2).astype(a.dtype, copy=False)
        return xp.linalg.cholesky(a).astype(a.dtype, copy=False)

    def output_shapes(self, inputs):
        return [inputs[0].shape]

    @staticmethod
    def _phi(x):
        """Lower triangle with the diagonal halved."""
        return mx.tril(x, -1) + 0.5 * _diag_embed(_diag(x))

    def vjp(self, primals, cotangents, argnums, outputs):
        low = _mT(outputs[0]) if self.upper else outputs[0]
        g = _mT(cotangents[0]) if self.upper else cotangents[0]
        p = self._phi(_mT(low) @ g)
        # inv(L).T @ P @ inv(L) through two triangular solves.
        left = mx.linalg.solve_triangular(_mT(low), p, upper=True)
        s = _mT(mx.linalg.solve_triangular(_mT(low), _mT(left), upper=True))
        return [_sym(s)]

    def jvp(self, primals, tangents, argnums, outputs):
        low = _mT(outputs[0]) if self.upper else outputs[0]
        t = _sym(tangents[0])
        x = mx.linalg.solve_triangular(low, t)
        x = _mT(mx.linalg.solve_triangular(low, _mT(x)))
        dlow = low @ self._phi(x)
        return [_mT(dlow) if self.upper else dlow]


# ---------------------------------------------------------------- QR
@primitive
class QR(_Unary):
    """Reduced QR of each matrix: ``Q`` ``(..., m, k)``, ``R`` ``(..., k, n)``,
    ``k = min(m, n)``. Derivatives need ``m >= n`` (full column rank)."""

    def eval(self, xp, a):
        q, r = xp.linalg.qr(a, mode="reduced")
        return q.astype(a.dtype, copy=False), r.astype(a.dtype, copy=False)

    def output_shapes(self, inputs):
        *batch, m, n = inputs[0].shape
        k = min(m, n)
        return [tuple(batch) + (m, k), tuple(batch) + (k, n)]

    def _check(self, a, what):
        if a.shape[-2] < a.shape[-1]:
            raise NotImplementedError(
                f"[{what}] QR derivatives are only implemented for matrices with at least as "
                f"many rows as columns; received shape {a.shape}.")

    def jvp(self, primals, tangents, argnums, outputs):
        a = primals[0]
        self._check(a, "jvp")
        q, r = outputs
        da = tangents[0]
        # da @ inv(R) = (inv(R).T @ da.T).T, and R.T is lower triangular.
        da_rinv = _mT(mx.linalg.solve_triangular(_mT(r), _mT(da)))
        x = _mT(q) @ da_rinv
        low = mx.tril(x, -1)
        omega = low - _mT(low)
        dq = q @ omega + da_rinv - q @ (_mT(q) @ da_rinv)
        dr = (x - omega) @ r
        return [dq, dr]

    def vjp(self, primals, cotangents, argnums, outputs):
        a = primals[0]
        self._check(a, "vjp")
        q, r = outputs
        gq, gr = cotangents
        g = _mT(q) @ gq - gr @ _mT(r)
        xbar = gr @ _mT(r) + mx.tril(g - _mT(g), -1)
        y = gq - q @ (_mT(q) @ gq) + q @ xbar
        return [_right_solve_upper_t(y, r)]


# ---------------------------------------------------------------- SVD
@primitive
class SVD(_Unary):
    """Singular values (``compute_uv=False``) or the full ``U, S, Vt``.

    ``S`` is real (float32 for complex64 input). Vector derivatives treat the
    reduced factors; the extra columns of a non-square ``U``/``Vt`` are an
    arbitrary orthonormal completion, so their cotangents are ignored and
    their tangents are zero.
    """

    compute_uv: bool = True

    def eval(self, xp, a):
        rd = xp.float32 if a.dtype == xp.complex64 else a.dtype
        if not self.compute_uv:
            return xp.linalg.svd(a, compute_uv=False).astype(rd, copy=False)
        u, s, vt = xp.linalg.svd(a, full_matrices=True)
        return u.astype(a.dtype, copy=False), s.astype(rd, copy=False), vt.astype(a.dtype, copy=False)

    def output_shapes(self, inputs):
        *batch, m, n = inputs[0].shape
        batch = tuple(batch)
        s = batch + (min(m, n),)
        if not self.compute_uv:
            return [s]
        return [batch + (m, m), s, batch + (n, n)]

    def _dtypes(self, x):
        rd = _real_dtype(x.dtype)
        return [rd] if not self.compute_uv else [x.dtype, rd, x.dtype]

    def _reduced(self, a, outputs):
        if self.compute_uv:
            u, s, vt = outputs
        else:
            u, s, vt = mx.linalg.svd(a)
        k = s.shape[-1]
        return u[..., :, :k], s, _mT(vt[..., :k, :])

    def jvp(self, primals, tangents, argnums, outputs):
        a = primals[0]
        da = tangents[0]
        u, s, v = self._reduced(a, outputs)
        dp = _mT(u) @ da @ v
        ds = _diag(dp)
        if not self.compute_uv:
            return [ds]
        m, n = a.shape[-2], a.shape[-1]
        k = s.shape[-1]
        f = _gap_inverse(s * s)
        sd = _diag_embed(s)
        du = u @ (f * (dp @ sd + sd @ _mT(dp)))
        dv = v @ (f * (sd @ dp + _mT(dp) @ sd))
        if m > k:
            du = du + (da @ v - u @ (_mT(u) @ da @ v)) / mx.expand_dims(s, -2)
        if n > k:
            dat_u = _mT(da) @ u
            dv = dv + (dat_u - v @ (_mT(v) @ dat_u)) / mx.expand_dims(s, -2)
        # The completion columns of the full factors get zero tangents.
        if m > k:
            du = mx.concatenate([du, mx.zeros(du.shape[:-1] + (m - k,), du.dtype)], axis=-1)
        dvt = _mT(dv)
        if n > k:
            dvt = mx.concatenate([dvt, mx.zeros(dvt.shape[:-2] + (n - k, n), dvt.dtype)], axis=-2)
        return [du, ds, dvt]

    def vjp(self, primals, cotangents, argnums, outputs):
        a = primals[0]
        u, s, v = self._reduced(a, outputs)
        if not self.compute_uv:
            return [u @ (mx.expand_dims(cotangents[0], -1) * _mT(v))]
        gu_full, gs, gvt_full = cotangents
        m, n = a.shape[-2], a.shape[-1]
        k = s.shape[-1]
        gu = gu_full[..., :, :k]
        gv = _mT(gvt_full[..., :k, :])
        f = _gap_inverse(s * s)
        sd = _diag_embed(s)
        mu = _mT(u) @ gu
        nv = _mT(v) @ gv
        inner = _diag_embed(gs) + (f * (mu - _mT(mu))) @ sd + sd @ (f * (nv - _mT(nv)))
        out = u @ inner @ _mT(v)
        inv_s = 1.0 / mx.expand_dims(s, -2)
        if m > k:
            out = out + ((gu - u @ (_mT(u) @ gu)) * inv_s) @ _mT(v)
        if n > k:
            proj = _mT(gv) - (_mT(gv) @ v) @ _mT(v)
            out = out + (u * inv_s) @ proj
        return [out]


# ---------------------------------------------------------------- eigen
@primitive
class Eigh(_Unary):
    """Eigenvalues (ascending, real) and eigenvectors of each symmetric or
    Hermitian matrix, read from triangle ``uplo``."""

    uplo: str = "L"

    def eval(self, xp, a):
        w, v = xp.linalg.eigh(a, UPLO=self.uplo)
        rd = xp.float32 if a.dtype == xp.complex64 else a.dtype
        return w.astype(rd, copy=False), v.astype(a.dtype, copy=False)

    def output_shapes(self, inputs):
        shape = inputs[0].shape
        return [shape[:-1], shape]

    def _dtypes(self, x):
        return [_real_dtype(x.dtype), x.dtype]

    def jvp(self, primals, tangents, argnums, outputs):
        w, v = outputs
        m = _mT(v) @ _sym(tangents[0]) @ v
        return [_diag(m), v @ (_gap_inverse(w) * m)]

    def vjp(self, primals, cotangents, argnums, outputs):
        w, v = outputs
        gw, gv = cotangents
        inner = _diag_embed(gw) + _gap_inverse(w) * (_mT(v) @ gv)
        return [_sym(v @ inner @ _mT(v))]


@primitive
class Eig(_Unary):
    """Eigenvalues and right eigenvectors of general square matrices, always
    complex64 (as MLX). Not differentiable: the eigenvectors have a free
    complex phase each."""

    def eval(self, xp, a):
        w, v = xp.linalg.eig(a)
        return w.astype(xp.complex64, copy=False), v.astype(xp.complex64, copy=False)

    def output_shapes(self, inputs):
        shape = inputs[0].shape
        return [shape[:-1], shape]

    def _dtypes(self, x):
        return [mx.complex64, mx.complex64]

    def vjp(self, primals, cotangents, argnums, outputs):
        raise NotImplementedError("[vjp] Not implemented for Eig (linalg.eig, linalg.eigvals).")

    def jvp(self, primals, tangents, argnums, outputs):
        raise NotImplementedError("[jvp] Not implemented for Eig (linalg.eig, linalg.eigvals).")


# ---------------------------------------------------------------- LU
def _lu_eval(xp, a):
    """Partial-pivoting Gaussian elimination over a stack, one column at a time.

    Returns the packed factors, LAPACK-style 0-based swap pivots ``(..., k)``
    and the row permutation ``p`` ``(..., m)`` with ``a == L[p] @ U``.
    """
    *batch, m, n = a.shape
    k = min(m, n)
    nb = 1
    for d in batch:
        nb *= d
    lu = xp.reshape(a, (nb, m, n)).copy()  # our own buffer: the input is shared
    rows = xp.arange(nb)
    swaps = xp.zeros((nb, k), dtype=xp.int64)
    order = xp.broadcast_to(xp.arange(m), (nb, m)).copy()
    for j in range(k):
        p = j + xp.argmax(xp.abs(lu[:, j:, j]), axis=1)
        swaps[:, j] = p
        top = lu[:, j, :].copy()
        lu[:, j, :] = lu[rows, p, :]
        lu[rows, p, :] = top
        top_i = order[:, j].copy()
        order[:, j] = order[rows, p]
        order[rows, p] = top_i
        pivot = lu[:, j, j]
        # A zero pivot means the column below is zero too: keep zero multipliers.
        safe = xp.where(pivot == 0, xp.ones_like(pivot), pivot)
        lu[:, j + 1:, j] = lu[:, j + 1:, j] / safe[:, None]
        lu[:, j + 1:, j + 1:] -= lu[:, j + 1:, j:j + 1] * lu[:, j:j + 1, j + 1:]
    # order[i] is the input row now at row i; its inverse maps rows of a to rows of L.
    perm = xp.argsort(order, axis=1)
    return (xp.reshape(lu, a.shape),
            xp.reshape(swaps.astype(xp.uint32), tuple(batch) + (k,)),
            xp.reshape(perm.astype(xp.uint32), tuple(batch) + (m,)))


@primitive
class LUFactor(_Unary):
    """Packed LU factors (unit lower ``L`` below the diagonal, ``U`` on and
    above), swap pivots (uint32) and the row permutation ``p`` (uint32) with
    ``a == L[p] @ U``. Derivatives (of the packed factors) need square input."""

    def eval(self, xp, a):
        return _lu_eval(xp, a)

    def output_shapes(self, inputs):
        *batch, m, n = inputs[0].shape
        batch = tuple(batch)
        return [inputs[0].shape, batch + (min(m, n),), batch + (m,)]

    def _dtypes(self, x):
        return [x.dtype, mx.uint32, mx.uint32]

    def _factors(self, a, outputs, what):
        n = a.shape[-1]
        if a.shape[-2] != n:
            raise NotImplementedError(
                f"[{what}] LU derivatives are only implemented for square matrices; "
                f"received shape {a.shape}.")
        lu, _, perm = outputs
        low = mx.tril(lu, -1) + _eye_like(lu, n)
        up = mx.triu(lu)
        return low, up, perm

    def jvp(self, primals, tangents, argnums, outputs):
        a = primals[0]
        low, up, perm = self._factors(a, outputs, "jvp")
        # Rows of a in the order of L @ U: row i of L @ U is row argsort(perm)[i] of a.
        order = mx.argsort(perm, axis=-1)
        da = mx.take_along_axis(tangents[0], mx.expand_dims(order, -1), axis=-2)
        x = mx.linalg.solve_triangular(low, da)
        x = _mT(mx.linalg.solve_triangular(_mT(up), _mT(x)))
        dlu = low @ mx.tril(x, -1) + mx.triu(x) @ up
        zeros = [mx.zeros(o.shape, o.dtype) for o in outputs[1:]]
        return [dlu] + zeros

    def vjp(self, primals, cotangents, argnums, outputs):
        a = primals[0]
        low, up, perm = self._factors(a, outputs, "vjp")
        g = cotangents[0]
        xbar = mx.tril(_mT(low) @ mx.tril(g, -1), -1) + mx.triu(mx.triu(g) @ _mT(up))
        # inv(L).T @ xbar @ inv(U).T
        y = mx.linalg.solve_triangular(_mT(low), xbar, upper=True)
        y = _right_solve_upper_t(y, up)
        # Row i of a is row perm[i] of L @ U.
        return [mx.take_along_axis(y, mx.expand_dims(perm, -1), axis=-2)]

