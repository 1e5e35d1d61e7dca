"""``mx.linalg``: norms, inverses, solves and matrix factorizations.

The ops here validate like MLX and then either build one node of a primitive
from ``primitives/linalg.py`` (``inv``, ``solve``, ``cholesky``, ``qr``,
``svd``, ``eigh``, ``eig``, ``lu_factor``) or compose those and ordinary ops
(``norm``, ``cross``, ``tri_inv``, ``solve_triangular``, ``cholesky_inv``,
``det``, ``slogdet``, ``pinv``, ``lu``), so every transformation comes from
the primitives' rules. Unlike MLX, which runs most of these only on
``stream=mx.cpu``, kiln runs them on any stream.
"""
from __future__ import annotations

import builtins
import math
from typing import Optional, Sequence, Union

import numpy as np

from kiln import dtypes as _dt
from kiln.ops.normalize import as_array, get_stream, shape_str
from kiln.graph.array import _make, _make_multi, array
from kiln.primitives.base import broadcast_shapes
from kiln.primitives.linalg import QR, SVD, Cholesky, Eig, Eigh, Inv, LUFactor, Solve

__all__ = [
    "norm", "inv", "tri_inv", "solve", "solve_triangular", "cholesky", "cholesky_inv",
    "qr", "svd", "eigh", "eigvalsh", "eig", "eigvals", "lu", "lu_factor", "det", "slogdet",
    "pinv", "cross",
]

_FLOATS = (_dt.float32, _dt.float64)
_FLOATS_COMPLEX = (_dt.float32, _dt.float64, _dt.complex64)


# ---------------------------------------------------------------- validation
def _stream(a: array, stream):
    return get_stream(stream) if stream is not None else a._stream


def _check_matrix(a, name: str, allow_complex: bool = False, rank_msg: str = "Arrays must") -> array:
    """``a`` as an array of a supported dtype with at least two dimensions."""
    a = as_array(a)
    allowed = _FLOATS_COMPLEX if allow_complex else _FLOATS
    if a.dtype not in allowed:
        kinds = "float32, float64 or complex64" if allow_complex else "float32 or float64"
        raise ValueError(f"[linalg::{name}] Arrays must have type {kinds}. "
                         f"Received array with type {a.dtype.name}.")
    if a.ndim < 2:
        raise ValueError(f"[linalg::{name}] {rank_msg} have >= 2 dimensions. "
                         f"Received array with {a.ndim} dimensions.")
    return a


def _check_square(a: array, name: str, msg: str = "Only defined for square matrices.") -> None:
    if a.shape[-1] != a.shape[-2]:
        raise ValueError(f"[linalg::{name}] {msg}")


def _mT(x, stream=None):
    from kiln.ops.shape import swapaxes

    return swapaxes(x, -1, -2, stream=stream)


# ---------------------------------------------------------------- inverses, solves
def inv(a, *, stream=None) -> array:
    """Inverse of a square matrix (of each matrix in the last two axes).

    Args:
        a: float32 or float64 array with at least 2 dimensions.
        stream: stream or device.

    Returns:
        ``ainv`` with ``a @ ainv == ainv @ a == I``.
    """
    a = _check_matrix(a, "inv")
    _check_square(a, "inv", "Inverses are only defined for square matrices.")
    return _make(a.shape, a.dtype, Inv(), (a,), _stream(a, stream))


def _triangle(a: array, upper: bool, stream) -> array:
    from kiln.ops.shape import tril, triu

    return triu(a, stream=stream) if upper else tril(a, stream=stream)


def tri_inv(a, upper: bool = False, *, stream=None) -> array:
    """Inverse of a triangular square matrix (only its triangle is read).

    Args:
        a: float32 or float64 array with at least 2 dimensions.
        upper: whether ``a`` is upper (else lower) triangular.
        stream: stream or device.

    Returns:
        The inverse, triangular like ``a``.
    """
    a = _check_matrix(a, "inv")
    _check_square(a, "inv", "Inverses are only defined for square matrices.")
    st = _stream(a, stream)
    t = _triangle(a, upper, st)
    return _make(a.shape, a.dtype, Inv(), (t,), st)


def _solve(a, b, name: str, upper: Optional[bool], stream) -> array:
    """Shared ``solve``/``solve_triangular``: ``upper`` None means a full ``a``."""
    from kiln.ops.elementwise import astype
    from kiln.ops.shape import broadcast_to, expand_dims, squeeze

    a, b = as_array(a), as_array(b)
    dt = _dt._PROMOTE[(a.dtype, b.dtype)] if a.dtype is not b.dtype else a.dtype
    if dt not in _FLOATS:
        raise ValueError(f"[linalg::{name}] Input arrays must promote to float32 or float64.  "
                         f"Received arrays with type {a.dtype.name} and {b.dtype.name}.")
    if a.ndim < 2:
        raise ValueError(f"[linalg::{name}] First input must have >= 2 dimensions. "
                         f"Received array with {a.ndim} dimensions.")
    if a.shape[-1] != a.shape[-2]:
        raise ValueError(f"[linalg::{name}] First input must be a square matrix. "
                         f"Received array with shape {shape_str(a.shape)}.")
    if b.ndim < 1:
        raise ValueError(f"[linalg::{name}] Second input must have >= 1 dimensions. "
                         f"Received array with 0 dimensions.")
    n = a.shape[-1]
    row = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if row != n:
        raise ValueError(f"[linalg::{name}] Last dimension of first input with shape {shape_str(a.shape)} "
                         f"must match second to last dimension of second input with shape "
                         f"{shape_str(b.shape)}.")
    st = get_stream(stream) if stream is not None else a._stream
    a, b = astype(a, dt, stream=st), astype(b, dt, stream=st)
    if upper is not None:
        a = _triangle(a, upper, st)
    vector = b.ndim == 1
    if vector:
        # A single right-hand side vector, shared by every matrix of the stack.
        b = expand_dims(b, -1, stream=st)
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if a.shape[:-2] != batch:
        a = broadcast_to(a, batch + a.shape[-2:], stream=st)
    if b.shape[:-2] != batch:
        b = broadcast_to(b, batch + b.shape[-2:], stream=st)
    x = _make(b.shape, dt, Solve(), (a, b), st)
    return squeeze(x, -1, stream=st) if vector else x


def solve(a, b, *, stream=None) -> array:
    """Solve ``a @ x = b`` for ``x``.

    Args:
        a: square matrices ``(..., n, n)``.
        b: right-hand sides ``(..., n, k)`` (batch dims broadcast with
            ``a``'s) or one vector ``(n,)``.
        stream: stream or device.

    Returns:
        ``x`` (float32 or float64, as the promoted inputs).
    """
    return _solve(a, b, "solve", None, stream)


def solve_triangular(a, b, *, upper: bool = False, stream=None) -> array:
    """Solve ``a @ x = b`` for triangular ``a`` (only its triangle is read).

    Args:
        a: triangular square matrices ``(..., n, n)``.
        b: right-hand sides ``(..., n, k)`` or one vector ``(n,)``.
        upper: whether ``a`` is upper (else lower) triangular.
        stream: stream or device.

    Returns:
        ``x`` (float32 or float64, as the promoted inputs).
    """
    return _solve(a, b, "solve_triangular", bool(upper), stream)


# ---------------------------------------------------------------- Cholesky
def cholesky(a, upper: bool = False, *, stream=None) -> array:
    """Cholesky factor of a symmetric positive-definite matrix.

    Args:
        a: float32 or float64 array with at least 2 dimensions; only its
            lower (``upper=False``) or upper triangle is read.
        upper: return ``U`` with ``U.T @ U == a`` instead of ``L`` with
            ``L @ L.T == a``.
        stream: stream or device.

    Returns:
        The triangular factor.
    """
    a = _check_matrix(a, "cholesky")
    _check_square(a, "cholesky", "Cholesky decomposition is only defined for square matrices.")
    return _make(a.shape, a.dtype, Cholesky(bool(upper)), (a,), _stream(a, stream))


def cholesky_inv(a, upper: bool = False, *, stream=None) -> array:
    """Inverse of a symmetric positive-definite matrix from its Cholesky factor.

    Args:
        a: the factor ``L`` (lower) or ``U`` (``upper=True``), not the matrix.
        upper: whether ``a`` is the upper factor.
        stream: stream or device.

    Returns:
        ``inv(L @ L.T)`` or ``inv(U.T @ U)``.
    """
    from kiln.ops.products import matmul

    a = _check_matrix(a, "cholesky_inv")
    _check_square(a, "cholesky_inv", "Cholesky inverse is only defined for square matrices.")
    st = _stream(a, stream)
    t = _make(a.shape, a.dtype, Inv(), (_triangle(a, upper, st),), st)
    if upper:
        return matmul(t, _mT(t, st), stream=st)
    return matmul(_mT(t, st), t, stream=st)


# ---------------------------------------------------------------- factorizations
def qr(a, *, stream=None) -> tuple:
    """Reduced QR factorization.

    Args:
        a: float32 or float64 array with at least 2 dimensions.
        stream: stream or device.

    Returns:
        ``(Q, R)`` with ``Q`` ``(..., m, k)`` orthonormal, ``R`` ``(..., k, n)``
        upper triangular, ``k = min(m, n)`` and ``Q @ R == a``.
    """
    a = _check_matrix(a, "qr")
    prim = QR()
    return tuple(_make_multi(prim.output_shapes([a]), [a.dtype] * 2, prim, (a,), _stream(a, stream)))


def svd(a, compute_uv: bool = True, *, stream=None):
    """Singular value decomposition (full ``U`` and ``Vt``).

    Args:
        a: float32, float64 or complex64 array with at least 2 dimensions.
        compute_uv: return ``(U, S, Vt)`` if True, else only ``S``.
        stream: stream or device.

    Returns:
        ``(U, S, Vt)`` with ``a == U[..., :, :k] * S @ Vt[..., :k, :]``, or
        ``S`` (descending, real).
    """
    a = _check_matrix(a, "svd", allow_complex=True, rank_msg="Input array must")
    prim = SVD(bool(compute_uv))
    st = _stream(a, stream)
    shapes = prim.output_shapes([a])
    dtypes = prim._dtypes(a)
    if not compute_uv:
        return _make(shapes[0], dtypes[0], prim, (a,), st)
    return tuple(_make_multi(shapes, dtypes, prim, (a,), st))


def _check_uplo(UPLO: str, name: str) -> str:
    if not isinstance(UPLO, str) or UPLO.upper() not in ("L", "U"):
        # MLX silently reads the upper triangle for any other value.
        raise ValueError(f"[linalg::{name}] UPLO must be 'L' or 'U', got {UPLO!r}.")
    return UPLO.upper()


def eigh(a, UPLO: str = "L", *, stream=None) -> tuple:
    """Eigenvalues and eigenvectors of a real symmetric or complex Hermitian matrix.

    Args:
        a: float32, float64 or complex64 array with at least 2 dimensions.
        UPLO: read the lower ("L") or upper ("U") triangle.
        stream: stream or device.

    Returns:
        ``(w, v)``: eigenvalues in ascending order (real) and the
        normalized eigenvectors in the columns of ``v``.
    """
    a = _check_matrix(a, "eigh", allow_complex=True)
    _check_square(a, "eigh")
    prim = Eigh(_check_uplo(UPLO, "eigh"))
    return tuple(_make_multi(prim.output_shapes([a]), prim._dtypes(a), prim, (a,), _stream(a, stream)))


def eigvalsh(a, UPLO: str = "L", *, stream=None) -> array:
    """Eigenvalues (ascending, real) of a symmetric or Hermitian matrix (see ``eigh``)."""
    a = _check_matrix(a, "eigvalsh", allow_complex=True)
    _check_square(a, "eigvalsh")
    prim = Eigh(_check_uplo(UPLO, "eigvalsh"))
    return _make_multi(prim.output_shapes([a]), prim._dtypes(a), prim, (a,), _stream(a, stream))[0]


def eig(a, *, stream=None) -> tuple:
    """Eigenvalues and right eigenvectors of a general square matrix.

    Args:
        a: float32, float64 or complex64 array with at least 2 dimensions.
        stream: stream or device.

    Returns:
        ``(w, v)``, both complex64 (even when the eigenvalues are real); the
        column ``v[..., :, i]`` belongs to ``w[..., i]``.
    """
    a = _check_matrix(a, "eig", allow_complex=True)
    _check_square(a, "eig")
    prim = Eig()
    return tuple(_make_multi(prim.output_shapes([a]), prim._dtypes(a), prim, (a,), _stream(a, stream)))


def eigvals(a, *, stream=None) -> array:
    """Eigenvalues (complex64, in no particular order) of a square matrix (see ``eig``)."""
    a = _check_matrix(a, "eigvals", allow_complex=True)
    _check_square(a, "eigvals")
    prim = Eig()
    return _make_multi(prim.output_shapes([a]), prim._dtypes(a), prim, (a,), _stream(a, stream))[0]


def _lu_nodes(a: array, stream) -> list:
    prim = LUFactor()
    return _make_multi(prim.output_shapes([a]), prim._dtypes(a), prim, (a,), stream)


def lu_factor(a, *, stream=None) -> tuple:
    """Compact LU factorization with partial pivoting.

    Args:
        a: float32 or float64 array with at least 2 dimensions.
        stream: stream or device.

    Returns:
        ``(LU, pivots)``: ``L`` (unit diagonal, not stored) below and ``U``
        on and above the diagonal; ``pivots[i]`` (uint32) is the row swapped
        with row ``i`` at step ``i``.
    """
    a = _check_matrix(a, "lu_factor")
    packed, swaps, _ = _lu_nodes(a, _stream(a, stream))
    return packed, swaps


def lu(a, *, stream=None) -> tuple:
    """LU factorization with partial pivoting.

    Args:
        a: float32 or float64 array with at least 2 dimensions.
        stream: stream or device.

    Returns:
        ``(P, L, U)`` with row indices ``P`` (uint32) such that
        ``a == L[P, :] @ U`` (``take_along_axis(L, P[..., None], -2) @ U``
        for stacks); ``L`` is ``(..., m, k)`` and ``U`` ``(..., k, n)``.
    """
    from kiln.ops.elementwise import add
    from kiln.ops.shape import eye, tril, triu

    a = _check_matrix(a, "lu")
    st = _stream(a, stream)
    packed, _, perm = _lu_nodes(a, st)
    m, n = a.shape[-2], a.shape[-1]
    k = min(m, n)
    low = add(tril(packed[..., :, :k], -1, stream=st), eye(m, k, dtype=a.dtype, stream=st), stream=st)
    up = triu(packed[..., :k, :], stream=st)
    return perm, low, up


def _det_parts(a, name: str, stream):
    """LU pieces shared by ``det`` and ``slogdet``: (diag of U, permutation sign, dtype)."""
    from kiln.ops.elementwise import astype, equal, remainder, subtract
    from kiln.ops.reduce import sum
    from kiln.ops.shape import arange, diagonal

    a = as_array(a)
    if a.dtype.kind == "c":
        raise ValueError(f"[linalg::{name}] Complex inputs are not supported.")
    if a.ndim < 2:
        raise ValueError(f"[linalg::{name}] Arrays must have >= 2 dimensions. "
                         f"Received array with {a.ndim} dimensions.")
    _check_square(a, name)
    st = _stream(a, stream)
    out_dt = a.dtype if a.dtype.kind == "f" else _dt.float32
    work = a if a.dtype in _FLOATS else astype(a, _dt.float32, stream=st)
    packed, swaps, _ = _lu_nodes(work, st)
    diag = diagonal(packed, 0, -2, -1, stream=st)
    k = swaps.shape[-1]
    moved = subtract(k, sum(equal(swaps, arange(k, dtype=_dt.uint32, stream=st), stream=st),
                            axis=-1, stream=st), stream=st)
    odd = astype(remainder(moved, 2, stream=st), work.dtype, stream=st)
    parity = subtract(1.0, odd * 2.0, stream=st)
    return diag, parity, out_dt


def det(a, *, stream=None) -> array:
    """Determinant of a square matrix (of each matrix in the last two axes).

    Args:
        a: real array with at least 2 dimensions (integers give float32).
        stream: stream or device.

    Returns:
        The determinant(s), computed through an LU factorization.
    """
    from kiln.ops.elementwise import astype, multiply
    from kiln.ops.reduce import prod

    diag, parity, out_dt = _det_parts(a, "det", stream)
    st = diag._stream
    d = multiply(parity, prod(diag, axis=-1, stream=st), stream=st)
    return astype(d, out_dt, stream=st)


def slogdet(a, *, stream=None) -> tuple:
    """Sign and natural log of the absolute value of the determinant.

    Args:
        a: real array with at least 2 dimensions (integers give float32).
        stream: stream or device.

    Returns:
        ``(sign, logabsdet)`` with ``det == sign * exp(logabsdet)``; a
        singular matrix gives ``(0, -inf)``.
    """
    from kiln.ops.elementwise import abs, astype, log, multiply, sign
    from kiln.ops.reduce import prod, sum

    diag, parity, out_dt = _det_parts(a, "slogdet", stream)
    st = diag._stream
    s = multiply(parity, prod(sign(diag, stream=st), axis=-1, stream=st), stream=st)
    logabs = sum(log(abs(diag, stream=st), stream=st), axis=-1, stream=st)
    return astype(s, out_dt, stream=st), astype(logabs, out_dt, stream=st)


def pinv(a, *, stream=None) -> array:
    """Moore-Penrose pseudo-inverse through the SVD.

    Singular values below ``eps * max(m, n) * max(S)`` count as zero.

    Args:
        a: float32 or float64 array with at least 2 dimensions.
        stream: stream or device.

    Returns:
        ``aplus`` of shape ``(..., n, m)`` with ``a @ aplus @ a == a``.
    """
    from kiln.ops.elementwise import multiply, stop_gradient, where
    from kiln.ops.reduce import max
    from kiln.ops.products import matmul
    from kiln.ops.shape import expand_dims, ones_like, zeros, zeros_like

    a = _check_matrix(a, "pinv")
    st = _stream(a, stream)
    m, n = a.shape[-2], a.shape[-1]
    if m == 0 or n == 0:
        return zeros(a.shape[:-2] + (n, m), a.dtype, stream=st)
    u, s, vt = svd(a, stream=st)
    k = s.shape[-1]
    u, vt = u[..., :, :k], vt[..., :k, :]
    eps = float(np.finfo(a.dtype.np).eps)
    cut = multiply(max(stop_gradient(s, stream=st), axis=-1, keepdims=True, stream=st),
                   eps * builtins.max(m, n), stream=st)
    keep = s > cut
    safe = where(keep, s, ones_like(s, stream=st), stream=st)
    inv_s = where(keep, 1.0 / safe, zeros_like(s, stream=st), stream=st)
    return matmul(_mT(vt, st) * expand_dims(inv_s, -2, stream=st), _mT(u, st), stream=st)



# ---------------------------------------------------------------- norm
def _norm_axes(axis, ndim: int) -> tuple:
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    out = []
    for ax in axis:
        if not -ndim <= ax < ndim:
            raise IndexError(f"[linalg::norm] Invalid axis {ax} for array with {ndim} dimensions.")
        ax = int(ax) % ndim
        if ax in out:
            raise ValueError("[linalg::norm] Duplicate axes detected in reduction.")
        out.append(ax)
    return tuple(out)


def _vector_norm(x: array, ord, ax: tuple, keepdims: bool, st) -> array:
    from kiln.ops.elementwise import abs, astype, not_equal, power, sqrt
    from kiln.ops.reduce import max, min, sum

    if ord is None or ord == 2:
        return sqrt(sum(x * x, axis=ax, keepdims=keepdims, stream=st), stream=st)
    if ord == math.inf:
        return max(abs(x, stream=st), axis=ax, keepdims=keepdims, stream=st)
    if ord == -math.inf:
        return min(abs(x, stream=st), axis=ax, keepdims=keepdims, stream=st)
    if ord == 0:
        nz = not_equal(x, 0, stream=st)
        return astype(sum(nz, axis=ax, keepdims=keepdims, stream=st), x.dtype, stream=st)
    if ord == 1:
        return sum(abs(x, stream=st), axis=ax, keepdims=keepdims, stream=st)
    p = float(ord)
    total = sum(power(abs(x, stream=st), p, stream=st), axis=ax, keepdims=keepdims, stream=st)
    return power(total, 1.0 / p, stream=st)


def _matrix_norm(x: array, ord, ax: tuple, keepdims: bool, st) -> array:
    from kiln.ops.elementwise import abs, astype, sqrt
    from kiln.ops.reduce import max, min, sum
    from kiln.ops.shape import expand_dims, moveaxis, squeeze

    row, col = ax
    if ord is None or ord == "fro":
        return sqrt(sum(x * x, axis=ax, keepdims=keepdims, stream=st), stream=st)
    if isinstance(ord, str) and ord != "nuc":
        raise ValueError(f"[linalg::norm] Invalid ord value '{ord}' for matrix norm.")
    if ord == "nuc" or ord in (2, -2):
        # Singular values over the two axes, moved to the end.
        mat = moveaxis(moveaxis(x, row, -1, stream=st), col if col < row else col - 1, -1, stream=st)
        work = mat if mat.dtype in _FLOATS else astype(mat, _dt.float32, stream=st)
        s = svd(work, compute_uv=False, stream=st)
        if ord == "nuc":
            r = sum(s, axis=-1, stream=st)
        elif ord == 2:
            r = max(s, axis=-1, stream=st)
        else:
            r = min(s, axis=-1, stream=st)
        r = astype(r, x.dtype, stream=st)
        if keepdims:
            r = expand_dims(r, sorted(ax), stream=st)
        return r
    if ord in (1, -1, math.inf, -math.inf):
        # 1: max over columns of the column sums; inf: over rows of the row sums.
        inner, outer = (row, col) if ord in (1, -1) else (col, row)
        reduce = max if ord > 0 else min
        sums = sum(abs(x, stream=st), axis=inner, keepdims=True, stream=st)
        r = reduce(sums, axis=outer, keepdims=True, stream=st)
        return r if keepdims else squeeze(r, ax, stream=st)
    raise ValueError(f"[linalg::norm] Invalid ord {ord} for matrix norm.")


def norm(a, /, ord: Union[None, int, float, str] = None, axis: Union[None, int, Sequence[int]] = None,
         keepdims: bool = False, *, stream=None) -> array:
    """Matrix or vector norm.

    Args:
        a: input array. With ``axis=None`` it must be 1-D or 2-D unless
            ``ord`` is None too (then the 2-norm of the flattened array).
        ord: None (2-norm / Frobenius), 'fro', 'nuc', inf, -inf, 0 (vectors:
            count of non-zeros), 1, -1, 2, -2 or any other number (vectors:
            ``sum(|x|**ord)**(1/ord)``).
        axis: one axis (vector norms) or two (matrix norms).
        keepdims: keep the reduced axes with size 1.
        stream: stream or device.

    Returns:
        The norm(s): float32 for integer and boolean input, real for complex
        input, otherwise the input's dtype.
    """
    from kiln.ops.elementwise import abs, astype

    a = as_array(a)
    st = _stream(a, stream)
    x = a
    if x.dtype.kind in "biu":
        x = astype(x, _dt.float32, stream=st)
    elif x.dtype.kind == "c":
        # All norms depend on |x| only; MLX returns complex dtypes here for some orders.
        x = abs(x, stream=st)
    if isinstance(ord, bool):
        ord = int(ord)
    if axis is None:
        if ord is None:
            return _vector_norm(x, None, tuple(range(x.ndim)), keepdims, st)
        axes = tuple(range(x.ndim))
    else:
        axes = _norm_axes(axis, x.ndim)
    if isinstance(ord, str) and len(axes) != 2:
        raise ValueError(f"[linalg::norm] Norm '{ord}' only supported for matrices, "
                         f"but received {len(axes)} axis/axes.")
    if len(axes) == 1:
        return _vector_norm(x, ord, axes, keepdims, st)
    if len(axes) == 2:
        return _matrix_norm(x, ord, axes, keepdims, st)
    raise ValueError("[linalg::norm] Received too many axes for norm.")


# ---------------------------------------------------------------- cross
def cross(a, b, axis: int = -1, *, stream=None) -> array:
    """Cross product of 3-vectors (2-vectors get a zero third entry) along ``axis``.

    Args:
        a, b: inputs whose ``axis`` has size 2 or 3; other axes broadcast.
        axis: the vector axis.
        stream: stream or device.

    Returns:
        The cross product, with size 3 along ``axis``.
    """
    from kiln.ops.normalize import binary_args
    from kiln.ops.shape import broadcast_to, concatenate, pad, split

    a, b, dt = binary_args(a, b, "linalg::cross")
    st = get_stream(stream) if stream is not None else a._stream
    for x in (a, b):
        if not -x.ndim <= axis < x.ndim:
            raise IndexError(f"[linalg::cross] Axis {axis} is out of bounds for array with "
                             f"{x.ndim} dimensions.")
        if x.shape[axis] not in (2, 3):
            raise ValueError("[linalg::cross] The specified axis must have size 2 or 3.")

    def widen(x):
        ax = axis % x.ndim
        if x.shape[ax] == 3:
            return x
        widths = [(0, 0)] * x.ndim
        widths[ax] = (0, 1)
        return pad(x, widths, stream=st)

    a, b = widen(a), widen(b)
    shape = broadcast_shapes(a.shape, b.shape)
    a, b = broadcast_to(a, shape, stream=st), broadcast_to(b, shape, stream=st)
    ax = axis % len(shape)
    a0, a1, a2 = split(a, 3, axis=ax, stream=st)
    b0, b1, b2 = split(b, 3, axis=ax, stream=st)
    parts = [a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0]
    return concatenate(parts, axis=ax, stream=st)


# MLX also exposes ``norm`` at the top level as ``mx.matrix_norm``.
matrix_norm = norm
