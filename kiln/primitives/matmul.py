"""Matrix-product primitives: batched matmul with broadcasting batch dims."""

from __future__ import annotations

from kiln.primitives.base import ops as mx

from kiln.primitives.base import Primitive, broadcast_shapes, primitive, to_front, unbroadcast


def _blasable(xp, x):
    if x.ndim < 2:
        return x
    item = x.itemsize
    s0, s1 = x.strides[-2], x.strides[-1]
    if (s1 == item and s0 >= x.shape[-1] * item) or (s0 == item and s1 >= x.shape[-2] * item):
        return x
    return xp.ascontiguousarray(x)


@primitive
class Matmul(Primitive):
    """``a @ b`` for ``a`` of shape ``(..., M, K)`` and ``b`` of ``(..., K, N)``.

    The op hands over inputs of one inexact dtype, both at least 2-D; their
    batch dims broadcast (the backend's matmul broadcasts them, so no copy is
    made), and the VJP sums the cotangents back to each input's shape.
    """

    def eval(self, xp, a, b):
        dt = a.dtype
        if dt.itemsize == 2 and dt.kind == "f":
            # No BLAS for half types: multiply in float32, round once at the end.
            return xp.matmul(a.astype(xp.float32), b.astype(xp.float32)).astype(dt)
        if a.shape[-1] == 1 and (a.ndim > 2 or b.ndim > 2):
            # Stacks of outer products (per-example weight gradients under
            # vmap): one broadcast multiply beats a BLAS call per tiny matrix.
            return xp.multiply(a, b)
        if b.ndim == 2 and a.ndim > 2:
            # A stack times one matrix is one GEMM with the stack folded into
            # the rows (reshape copies only if the stack is not contiguous).
            out = xp.matmul(xp.reshape(a, (-1, a.shape[-1])), b)
            return xp.reshape(out, a.shape[:-1] + (b.shape[-1],))
        if a.ndim > 2 or b.ndim > 2:
            # Batched products reach BLAS only when each matrix has a unit
            # stride in one of its two axes; otherwise NumPy falls back to a
            # slow loop, so copy such operands once.
            a, b = _blasable(xp, a), _blasable(xp, b)
        return xp.matmul(a, b)

    def vjp(self, primals, cotangents, argnums, outputs):
        a, b = primals
        g = cotangents[0]
        out = []
        for i in argnums:
            if i == 0:
                out.append(unbroadcast(mx.matmul(g, mx.swapaxes(b, -1, -2)), a.shape))
            else:
                out.append(unbroadcast(mx.matmul(mx.swapaxes(a, -1, -2), g), b.shape))
        return out

    def jvp(self, primals, tangents, argnums, outputs):
        a, b = primals
        out = None
        for t, i in zip(tangents, argnums):
            term = mx.matmul(t, b) if i == 0 else mx.matmul(a, t)
            out = term if out is None else out + term
        return [mx.broadcast_to(out, outputs[0].shape)]

    def vmap(self, inputs, axes):
        a, b = inputs
        aa, ab = axes
        if aa is not None and ab is None and b.ndim == 2:
            # One weight matrix for the whole batch: fold the batch into the rows
            # and make a single product (no copy of b, one BLAS call).
            a = to_front(a, aa)
            m, k = a.shape[-2], a.shape[-1]
            rows = 1
            for d in a.shape[:-1]:
                rows *= d
            out = mx.matmul(mx.reshape(a, (rows, k)), b)
            return [mx.reshape(out, a.shape[:-2] + (m, b.shape[-1]))], [0]
        # Batch axis to the front; pad the ranks so batch dims line up. The
        # unbatched operand is left alone and broadcasts inside the product.
        rank = max(x.ndim - (ax is not None) for x, ax in zip(inputs, axes))
        xs = []
        for x, ax in zip(inputs, axes):
            if ax is not None:
                x = to_front(x, ax)
                missing = rank - (x.ndim - 1)
                if missing:
                    x = mx.reshape(x, (x.shape[0],) + (1,) * missing + x.shape[1:])
            xs.append(x)
        shape = self.output_shapes(xs)[0]
        return [self.apply(xs, shape, xs[0].dtype)], [0]

    def output_shapes(self, inputs):
        a, b = inputs
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
        return [batch + (a.shape[-2], b.shape[-1])]
