"""Matrix and tensor products: matmul, addmm, inner, outer, tensordot,
einsum (and einsum_path), kron, vecdot, block_masked_mm, gather_mm,
hadamard_transform.

``matmul`` builds a ``Matmul`` node (BLAS through ``xp.matmul``); every other
product is reduced here to transposes, reshapes, matmuls and sums, so its
gradients, JVPs and vmap rules come from those primitives.
"""

from __future__ import annotations

import math

import numpy as np

from kiln import dtypes as _dt
from kiln.ops.normalize import as_array, get_stream, shape_str
from kiln.graph.array import _make, array
from kiln.ops.elementwise import astype, conj, multiply
from kiln.ops.reduce import sum as _sum
from kiln.primitives.base import broadcast_shapes
from kiln.primitives.matmul import Matmul
from kiln.ops import indexing as _ix
from kiln.ops.shape import broadcast_to, diagonal, expand_dims, reshape, squeeze, transpose

__all__ = [
    "addmm",
    "block_masked_mm",
    "einsum",
    "einsum_path",
    "gather_mm",
    "hadamard_transform",
    "inner",
    "kron",
    "matmul",
    "outer",
    "tensordot",
    "vecdot",
]

_MATMUL = Matmul()


def _inexact_check(op, dts, out, real=False):
    ok = out.kind == "f" if real else out.kind in "fc"
    if not ok:
        names = ", ".join(d.name for d in dts[:-1]) + " and " + dts[-1].name
        kind = "real floating point" if real else "inexact"
        what = "real floating point" if real else "floating point"
        raise ValueError(
            f"[{op}] Only {kind} types are supported but {names} were provided which "
            f"results in {out.name}, which is not a {what} type."
        )


def matmul(a, b, /, *, stream=None) -> array:
    """Matrix product with NumPy semantics.

    1-D inputs are promoted to a row (``a``) or column (``b``) and that axis
    is removed from the result; batch dimensions broadcast.

    Args:
        a: array of shape ``(..., M, K)`` or ``(K,)``.
        b: array of shape ``(..., K, N)`` or ``(K,)``.
        stream: stream or device.
    Returns:
        The product, of the promoted (inexact) dtype.
    """
    a, b = as_array(a), as_array(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("[matmul] Got 0 dimension input. Inputs must have at least one dimension.")
    dt = _dt.promote_types(a._dtype, b._dtype)
    _inexact_check("matmul", [a._dtype, b._dtype], dt)
    squeeze_axes = []
    if a.ndim == 1:
        a = reshape(a, (1, a._shape[0]))
        squeeze_axes.append(-2)
    if b.ndim == 1:
        b = reshape(b, (b._shape[0], 1))
        squeeze_axes.append(-1)
    if a._shape[-1] != b._shape[-2]:
        raise ValueError(
            f"[matmul] Last dimension of first input with shape {shape_str(a._shape)} must match "
            f"second to last dimension of second input with shape {shape_str(b._shape)}."
        )
    batch = broadcast_shapes(a._shape[:-2], b._shape[:-2])
    if a._dtype is not dt:
        a = astype(a, dt)
    if b._dtype is not dt:
        b = astype(b, dt)
    out = _make(batch + (a._shape[-2], b._shape[-1]), dt, _MATMUL, (a, b), get_stream(stream))
    if squeeze_axes:
        out = squeeze(out, squeeze_axes)
    return out


def addmm(c, a, b, /, alpha: float = 1.0, beta: float = 1.0, *, stream=None) -> array:
    """``alpha * (a @ b) + beta * c`` (``c`` broadcasts to the product's shape)."""
    c, a, b = as_array(c), as_array(a), as_array(b)
    dt = _dt.promote_types(_dt.promote_types(c._dtype, a._dtype), b._dtype)
    _inexact_check("addmm", [c._dtype, a._dtype, b._dtype], dt, real=True)
    out = matmul(astype(a, dt), astype(b, dt), stream=stream)
    broadcast_shapes(c._shape, out._shape)  # validate before building anything more
    if alpha != 1.0:
        out = multiply(out, alpha)
    cc = astype(c, dt)
    if beta != 1.0:
        cc = multiply(cc, beta)
    from kiln.ops.elementwise import add

    return add(out, cc, stream=stream)


def inner(a, b, /, *, stream=None) -> array:
    """Sum product over the last axes (a plain product if either is 0-d)."""
    a, b = as_array(a), as_array(b)
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b, stream=stream)
    if a._shape[-1] != b._shape[-1]:
        raise ValueError("[inner] a and b must have the same last dimension.")
    return tensordot(a, b, [[a.ndim - 1], [b.ndim - 1]], stream=stream)


def outer(a, b, /, *, stream=None) -> array:
    """The outer product of the flattened inputs."""
    a = reshape(as_array(a), (-1, 1), stream=stream)
    b = reshape(as_array(b), (1, -1), stream=stream)
    return multiply(a, b, stream=stream)


def tensordot(a, b, /, axes=2, *, stream=None) -> array:
    """Sum products over the given axes of ``a`` and ``b``.

    Args:
        a: first array.
        b: second array.
        axes: an int ``n`` (the last ``n`` axes of ``a`` with the first ``n``
            of ``b``) or two sequences of axes ``[axes_a, axes_b]``.
        stream: stream or device.
    Returns:
        The free axes of ``a`` followed by those of ``b``.
    """
    a, b = as_array(a), as_array(b)
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 0 or n > a.ndim or n > b.ndim:
            raise ValueError("[tensordot] axis must be less than the number of dimensions of a and b.")
        ax_a = list(range(a.ndim - n, a.ndim))
        ax_b = list(range(n))
    else:
        if len(axes) != 2:
            raise ValueError("[tensordot] axes must be an int or a pair of sequences of axes.")
        ax_a = [int(x) % a.ndim for x in axes[0]]
        ax_b = [int(x) % b.ndim for x in axes[1]]
        if len(ax_a) != len(ax_b):
            raise ValueError("[tensordot] a and b must have the same number of contracted axes.")
    if any(a._shape[i] != b._shape[j] for i, j in zip(ax_a, ax_b)):
        raise ValueError("[tensordot] a and b must have the same shape on the contracted axes.")
    free_a = [i for i in range(a.ndim) if i not in ax_a]
    free_b = [j for j in range(b.ndim) if j not in ax_b]
    csize = math.prod(a._shape[i] for i in ax_a)
    fa = tuple(a._shape[i] for i in free_a)
    fb = tuple(b._shape[j] for j in free_b)
    x = reshape(transpose(a, free_a + ax_a, stream=stream), (math.prod(fa), csize), stream=stream)
    y = reshape(transpose(b, ax_b + free_b, stream=stream), (csize, math.prod(fb)), stream=stream)
    return reshape(matmul(x, y, stream=stream), fa + fb, stream=stream)


# ---------------------------------------------------------------- einsum
def _parse_einsum(subscripts: str, shapes):
    """Terms (strings of labels, one per operand), output labels and label sizes.

    Ellipsis dimensions get private labels (characters past Latin-1) aligned
    from the right across operands, as in broadcasting.
    """
    subs = subscripts.replace(" ", "")
    lhs, arrow, out = subs.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(
            f"[einsum] Number of operands, {len(shapes)}, does not match number of "
            f"input subscripts, {len(terms)}"
        )
    n_ell = 0
    for t, s in zip(terms, shapes):
        if "..." in t:
            n_ell = max(n_ell, len(s) - (len(t) - 3))
    ell = "".join(chr(0x100 + i) for i in range(n_ell))
    full = []
    for i, (t, s) in enumerate(zip(terms, shapes)):
        if "..." in t:
            k = len(s) - (len(t) - 3)
            t = t.replace("...", ell[n_ell - k :] if k > 0 else "")
        if len(t) != len(s):
            raise ValueError(
                f"[einsum] Invalid number of subscripts {len(t)} for input {i} with {len(s)} dimensions."
            )
        full.append(t)
    if arrow:
        out = out.replace("...", ell)
    else:
        counts = {}
        for t in full:
            for c in t:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    sizes = {}
    for t, s in zip(full, shapes):
        for c, d in zip(t, s):
            if sizes.get(c, 1) == 1:
                sizes[c] = d
    for i, (t, s) in enumerate(zip(full, shapes)):
        for j, (c, d) in enumerate(zip(t, s)):
            if d != sizes[c] and d != 1:
                raise ValueError(
                    f"[einsum] Cannot broadcast dimension {j} of input {i} with shape "
                    f"{shape_str(s)} to size {sizes[c]}."
                )
    for c in out:
        if c not in sizes:
            raise ValueError(f"[einsum] Output subscript '{c}' does not appear in any input.")
    return full, out, sizes


def _greedy_path(terms, out, sizes):
    """Pairwise contraction order: at each step the pair whose result shrinks
    the data the most (pairs sharing a label first). Returns the path and the
    list of (labels involved, has summed labels) for each step."""
    terms = [set(t) for t in terms]
    path, steps = [], []
    if len(terms) == 1:
        return [(0,)], [(terms[0], bool(terms[0] - set(out)))]

    def size(labels):
        return math.prod(sizes[c] for c in labels)

    while len(terms) > 1:
        best = None
        for shared_only in (True, False):
            for i in range(len(terms)):
                for j in range(i + 1, len(terms)):
                    if shared_only and not terms[i] & terms[j]:
                        continue
                    keep = set(out).union(*(t for k, t in enumerate(terms) if k not in (i, j)))
                    res = (terms[i] | terms[j]) & keep
                    cost = size(res) - size(terms[i]) - size(terms[j])
                    if best is None or cost < best[0]:
                        best = (cost, i, j, res)
            if best is not None:
                break
        _, i, j, res = best
        steps.append((terms[i] | terms[j], bool((terms[i] | terms[j]) - res)))
        path.append((i, j))
        terms = [t for k, t in enumerate(terms) if k not in (i, j)] + [res]
    return path, steps


def einsum_path(subscripts: str, *operands):
    """The contraction order :func:`einsum` uses, and a summary of its cost.

    Returns:
        ``(path, summary)``: a list of operand-index tuples and a string.
    """
    shapes = [as_array(o)._shape for o in operands]
    terms, out, sizes = _parse_einsum(subscripts, shapes)
    path, steps = _greedy_path(terms, out, sizes)
    labels = set("".join(terms))
    inner_naive = bool(labels - set(out))
    naive = math.prod(sizes[c] for c in labels) * (max(1, len(terms) - 1) + inner_naive)
    opt = 0
    for lab, inner_step in steps:
        n_terms = 1 if len(terms) == 1 else 2
        opt += math.prod(sizes[c] for c in lab) * (max(1, n_terms - 1) + inner_step)
    scaling = max(len(lab) for lab, _ in steps)
    summary = (
        f"  Complete contraction:  {subscripts}\n"
        f"         Naive scaling:  {len(labels)}\n"
        f"     Optimized scaling:  {scaling}\n"
        f"      Naive FLOP count:  {naive}\n"
        f"  Optimized FLOP count:  {opt}\n"
    )
    return path, summary


def _prepare(x, t, sizes, keep, stream):
    """Take repeated-label diagonals, broadcast size-1 labels, and sum labels
    that no other operand or the output needs. Returns ``(x, labels)``."""
    t = list(t)
    while True:
        dup = next((c for c in t if t.count(c) > 1), None)
        if dup is None:
            break
        i = t.index(dup)
        j = t.index(dup, i + 1)
        x = diagonal(x, 0, i, j, stream=stream)
        t = [c for k, c in enumerate(t) if k not in (i, j)] + [dup]
    want = tuple(sizes[c] for c in t)
    if x._shape != want:
        x = broadcast_to(x, want, stream=stream)
    drop = [k for k, c in enumerate(t) if c not in keep]
    if drop:
        x = _sum(x, axis=drop, stream=stream)
        t = [c for c in t if c in keep]
    return x, t


def _contract(x, tx, y, ty, keep, sizes, stream):
    """Contract two operands with one batched matmul. Returns ``(z, labels)``."""
    shared = [c for c in tx if c in ty]
    batch = [c for c in shared if c in keep]
    summed = [c for c in shared if c not in keep]
    fx = [c for c in tx if c not in shared]
    fy = [c for c in ty if c not in shared]

    def size(labels):
        return math.prod(sizes[c] for c in labels)

    x = transpose(x, [tx.index(c) for c in batch + fx + summed], stream=stream)
    x = reshape(x, (size(batch), size(fx), size(summed)), stream=stream)
    y = transpose(y, [ty.index(c) for c in batch + summed + fy], stream=stream)
    y = reshape(y, (size(batch), size(summed), size(fy)), stream=stream)
    z = matmul(x, y, stream=stream)
    labels = batch + fx + fy
    return reshape(z, tuple(sizes[c] for c in labels), stream=stream), labels


def einsum(subscripts: str, *operands, stream=None) -> array:
    """Einstein summation, e.g. ``einsum("ij,jk->ik", a, b)``.

    Repeated labels in one operand take a diagonal, labels missing from the
    output are summed, ``...`` stands for broadcast dimensions. Operands are
    contracted pairwise (in :func:`einsum_path` order) with matmuls.

    Args:
        subscripts: the labels of each operand and, after ``->``, the output's.
        operands: the arrays.
        stream: stream or device.
    Returns:
        The result array.
    """
    xs = [as_array(o) for o in operands]
    terms, out, sizes = _parse_einsum(subscripts, [x._shape for x in xs])
    path, _ = _greedy_path(terms, out, sizes)
    ops = []
    for k, (x, t) in enumerate(zip(xs, terms)):
        others = set(out).union(*(set(u) for m, u in enumerate(terms) if m != k))
        ops.append(_prepare(x, t, sizes, others, stream))
    for step in path:
        if len(step) == 1:
            break
        i, j = step
        keep = set(out).union(*(set(t) for m, (_, t) in enumerate(ops) if m not in (i, j)))
        z = _contract(*ops[i], *ops[j], keep, sizes, stream)
        ops = [o for m, o in enumerate(ops) if m not in (i, j)] + [z]
    x, t = ops[0]
    drop = [k for k, c in enumerate(t) if c not in out]
    if drop:
        x = _sum(x, axis=drop, stream=stream)
        t = [c for c in t if c in out]
    return transpose(x, [t.index(c) for c in out], stream=stream)


# ---------------------------------------------------------------- others
def kron(a, b, *, stream=None) -> array:
    """The Kronecker product: blocks ``a[i] * b`` laid out on a grid of ``a``'s shape."""
    a, b = as_array(a), as_array(b)
    nd = max(a.ndim, b.ndim)
    sa = (1,) * (nd - a.ndim) + a._shape
    sb = (1,) * (nd - b.ndim) + b._shape
    x = reshape(a, tuple(v for d in sa for v in (d, 1)), stream=stream)
    y = reshape(b, tuple(v for d in sb for v in (1, d)), stream=stream)
    return reshape(multiply(x, y, stream=stream), tuple(p * q for p, q in zip(sa, sb)), stream=stream)


def vecdot(a, b, /, *, axis: int = -1, stream=None) -> array:
    """``sum(conj(a) * b, axis)`` with broadcasting (the vector dot product)."""
    a, b = as_array(a), as_array(b)
    nd = max(a.ndim, b.ndim)
    if axis < -nd or axis >= nd:
        raise ValueError("[vecdot] axis is out of bounds.")
    if a._dtype.kind == "c":
        a = conj(a)
    return _sum(multiply(a, b, stream=stream), axis=axis, stream=stream)


def _expand_mask(mask, block, rows, cols, stream):
    """A block mask blown up to elements: each entry covers a block x block tile."""
    m = expand_dims(expand_dims(mask, -1), -3)
    shape = mask._shape[:-2] + (mask._shape[-2], block, mask._shape[-1], block)
    m = reshape(broadcast_to(m, shape), mask._shape[:-2] + (mask._shape[-2] * block, mask._shape[-1] * block))
    from kiln.ops.shape import _slice_axis

    m = _slice_axis(m, m.ndim - 2, 0, rows, stream=stream)
    return _slice_axis(m, m.ndim - 1, 0, cols, stream=stream)


def block_masked_mm(
    a, b, /, block_size: int = 64, mask_out=None, mask_lhs=None, mask_rhs=None, *, stream=None
) -> array:
    """``matmul`` with ``block_size`` x ``block_size`` blocks of the inputs and
    output scaled by (or, for bool masks, kept or zeroed by) block masks.

    Args:
        a: ``(..., M, K)``.
        b: ``(..., K, N)``.
        block_size: 32 or 64 when a mask is given.
        mask_out: ``(..., ceil(M/bs), ceil(N/bs))``.
        mask_lhs: ``(..., ceil(M/bs), ceil(K/bs))``.
        mask_rhs: ``(..., ceil(K/bs), ceil(N/bs))``.
        stream: stream or device.
    Returns:
        The masked product.
    """
    a, b = as_array(a), as_array(b)
    masks = (mask_out, mask_lhs, mask_rhs)
    if any(m is not None for m in masks) and block_size not in (32, 64):
        raise ValueError(
            f"[block_masked_mm] Only block_sizes 32, 64 are supported.Got block size {block_size}."
        )
    m_, k_ = a._shape[-2], a._shape[-1]
    n_ = b._shape[-1]
    if mask_lhs is not None:
        ml = as_array(mask_lhs)
        a = multiply(a, astype(_expand_mask(ml, block_size, m_, k_, stream), a._dtype), stream=stream)
    if mask_rhs is not None:
        mr = as_array(mask_rhs)
        b = multiply(b, astype(_expand_mask(mr, block_size, k_, n_, stream), b._dtype), stream=stream)
    out = matmul(a, b, stream=stream)
    if mask_out is not None:
        mo = as_array(mask_out)
        out = multiply(out, astype(_expand_mask(mo, block_size, m_, n_, stream), out._dtype), stream=stream)
    return out


def gather_mm(
    a, b, /, lhs_indices=None, rhs_indices=None, *, sorted_indices: bool = False, stream=None
) -> array:
    """Matmul of matrices picked from the batches of ``a`` and ``b`` by flat indices.

    Args:
        a: ``(A1, ..., M, K)``.
        b: ``(B1, ..., K, N)``.
        lhs_indices: integer indices into the flattened batch of ``a``
            (default: every batch entry in order).
        rhs_indices: the same for ``b``.
        sorted_indices: a hint; the result does not depend on it.
        stream: stream or device.
    Returns:
        ``broadcast(lhs_indices, rhs_indices).shape + (M, N)``.
    """
    a, b = as_array(a), as_array(b)
    dt = _dt.promote_types(a._dtype, b._dtype)
    _inexact_check("gather_mm", [a._dtype, b._dtype], dt, real=True)
    idx = []
    for x, ind in ((a, lhs_indices), (b, rhs_indices)):
        batch = x._shape[:-2]
        if ind is None:
            from kiln.ops.shape import arange

            ind = reshape(arange(math.prod(batch)), batch)
        ind = as_array(ind)
        if ind._dtype.kind not in "iu":
            raise ValueError("[gather_mm] Got indices with invalid dtype. Indices must be integral.")
        idx.append(ind)
    shape = broadcast_shapes(idx[0]._shape, idx[1]._shape)
    out = []
    for x, ind in zip((a, b), idx):
        flat = reshape(x, (-1,) + x._shape[-2:], stream=stream)
        ind = reshape(broadcast_to(ind, shape), (-1,))
        out.append(_ix.take(flat, ind, axis=0, stream=stream))
    z = matmul(out[0], out[1], stream=stream)
    return reshape(z, shape + z._shape[-2:], stream=stream)


def hadamard_transform(a, scale: float | None = None, stream=None) -> array:
    """The Walsh-Hadamard transform along the last axis (size a power of two).

    Args:
        a: the input (integer inputs become float32).
        scale: output scale (default ``1/sqrt(n)``).
        stream: stream or device.
    Returns:
        The transformed array.
    """
    a = as_array(a)
    if a._dtype.kind not in "fc":
        a = astype(a, _dt.float32)
    n = a._shape[-1] if a.ndim else 1
    if n & (n - 1):
        raise ValueError(f"[hadamard_transform] Last dimension {n} must be a power of two.")
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    scale = 1.0 / math.sqrt(n) if scale is None else scale
    hm = array(h * scale, a._dtype)
    return matmul(a, hm, stream=stream)
