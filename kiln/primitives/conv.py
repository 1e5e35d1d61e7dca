"""The N-d convolution primitive (channels-last) with all of its rules.

``Convolution`` computes, for input ``x`` of shape ``(N, *S, C_in)`` and weight
``w`` of shape ``(C_out, *K, C_in // groups)``, the cross-correlation (or the
convolution when ``flip``) of the input dilated by ``input_dilation`` and
padded by ``(pad_lo, pad_hi)`` (negative padding crops) with the kernel
dilated by ``kernel_dilation``, sampled every ``stride``. Transposed
convolutions are the same primitive with input dilation and a flipped kernel,
and both VJPs are convolutions again, so every rule composes.
"""
from __future__ import annotations

import dataclasses

from kiln.primitives.base import ops as mx

from kiln.primitives.base import Primitive, primitive, to_front


def _prod(vals) -> int:
    n = 1
    for v in vals:
        n *= v
    return n


def conv_out_size(s: int, k: int, stride: int, lo: int, hi: int, kdil: int, idil: int) -> int:
    """Output length of one spatial axis (may be < 1 when the window does not fit)."""
    padded = (s - 1) * idil + 1 + lo + hi if s > 0 else lo + hi
    return (padded - ((k - 1) * kdil + 1)) // stride + 1


@primitive
class Convolution(Primitive):
    """General N-d convolution; parameters are per-spatial-axis tuples."""

    stride: tuple = ()
    pad_lo: tuple = ()
    pad_hi: tuple = ()
    kernel_dilation: tuple = ()
    input_dilation: tuple = ()
    groups: int = 1
    flip: bool = False

    # ------------------------------------------------------------ shapes
    def out_shape(self, xshape: tuple, wshape: tuple) -> tuple:
        spatial = tuple(
            conv_out_size(s, k, st, lo, hi, kd, idl)
            for s, k, st, lo, hi, kd, idl in zip(xshape[1:-1], wshape[1:-1], self.stride, self.pad_lo,
                                                 self.pad_hi, self.kernel_dilation, self.input_dilation)
        )
        return (xshape[0],) + spatial + (wshape[0],)

    def output_shapes(self, inputs):
        return [self.out_shape(inputs[0].shape, inputs[1].shape)]

    def _node(self, x, w):
        return self.apply([x, w], self.out_shape(x.shape, w.shape), x.dtype)

    # ------------------------------------------------------------ eval
    def eval(self, xp, x, w):
        out_dtype = x.dtype
        if x.dtype != xp.float32 and x.dtype != xp.float64:
            # float16/bfloat16: BLAS has no half-precision kernels; accumulate in float32.
            x = x.astype(xp.float32)
            w = w.astype(xp.float32)
        d = x.ndim - 2
        n, c_in = x.shape[0], x.shape[-1]
        c_out, ksize = w.shape[0], w.shape[1:-1]
        out_shape = self.out_shape(x.shape, w.shape)
        osize = out_shape[1:-1]
        if _prod(out_shape) == 0 or _prod(ksize) * w.shape[-1] == 0:
            return xp.zeros(out_shape, out_dtype)
        if self.flip:
            w = xp.flip(w, axis=tuple(range(1, d + 1)))
        if self.groups == 1 and x.strides[0] < x.strides[-1]:
            return self._eval_swapped(xp, x, w, out_shape).astype(out_dtype, copy=False)
        xpad = self._pad_dilate(xp, x)
        # A strided view of every window: (N, *O, *K, C_in), no copy.
        st = xpad.strides
        view_shape = (n,) + osize + ksize + (c_in,)
        view_strides = ((st[0],) + tuple(st[1 + i] * self.stride[i] for i in range(d))
                        + tuple(st[1 + i] * self.kernel_dilation[i] for i in range(d)) + (st[-1],))
        win = xp.lib.stride_tricks.as_strided(xpad, view_shape, view_strides)
        rows, kvol = n * _prod(osize), _prod(ksize)
        g = self.groups
        if g == 1:
            # im2col (one copy) into a single BLAS matmul.
            cols = win.reshape(rows, kvol * c_in)
            out = cols @ w.reshape(c_out, kvol * c_in).T
        else:
            cg, og = c_in // g, c_out // g
            cols = win.reshape(rows, kvol, g, cg).transpose(2, 0, 1, 3).reshape(g, rows, kvol * cg)
            wg = w.reshape(g, og, kvol * cg).transpose(0, 2, 1)
            out = xp.matmul(cols, wg).transpose(1, 0, 2)  # (rows, g, og)
        return out.reshape(out_shape).astype(out_dtype, copy=False)

    def _eval_swapped(self, xp, x, w, out_shape):
        """The same sum for an input whose batch axis is its fastest-varying one.

        The weight-gradient rule feeds the input with batch and channels
        swapped (a transposed view). Swapping them back gives the usual
        channels-last buffer, whose windows copy in long contiguous runs;
        the contraction then runs over (batch', kernel taps) instead.
        """
        d = x.ndim - 2
        perm = (d + 1,) + tuple(range(1, d + 1)) + (0,)
        xs = self._pad_dilate(xp, x.transpose(perm))  # (C', *S, B'): channels-last again
        osize, ksize = out_shape[1:-1], w.shape[1:-1]
        b, c = x.shape[0], x.shape[-1]
        st = xs.strides
        # Rows (C', *K) and columns (*O, B'): a window of every output position.
        view_shape = (c,) + ksize + osize + (b,)
        view_strides = ((st[0],) + tuple(st[1 + i] * self.kernel_dilation[i] for i in range(d))
                        + tuple(st[1 + i] * self.stride[i] for i in range(d)) + (st[-1],))
        win = xp.lib.stride_tricks.as_strided(xs, view_shape, view_strides)
        kvol, ovol = _prod(ksize), _prod(osize)
        cols = win.reshape(c * kvol, ovol * b)
        wmat = w.transpose(perm).reshape(c * kvol, w.shape[0])  # (C', *K, C_out)
        out = (cols.T @ wmat).reshape(osize + (b, w.shape[0]))
        return xp.moveaxis(out, d, 0)

    def _pad_dilate(self, xp, x):
        """The input dilated and padded (or cropped) as the windows see it."""
        lo, hi, idil = self.pad_lo, self.pad_hi, self.input_dilation
        if not any(lo) and not any(hi) and all(v == 1 for v in idil):
            return x
        spatial = x.shape[1:-1]
        new = tuple((s - 1) * dl + 1 + a + b for s, dl, a, b in zip(spatial, idil, lo, hi))
        out = xp.zeros((x.shape[0],) + new + (x.shape[-1],), x.dtype)
        src, dst = [slice(None)], [slice(None)]
        for s, dl, a, size in zip(spatial, idil, lo, new):
            # Element j lands at a + j*dl; keep those inside [0, size).
            j0 = 0 if a >= 0 else (-a + dl - 1) // dl
            j1 = min(s, (size - 1 - a) // dl + 1)
            if j1 <= j0:
                return out  # everything cropped away: all padding
            src.append(slice(j0, j1))
            dst.append(slice(a + j0 * dl, a + (j1 - 1) * dl + 1, dl))
        out[tuple(dst)] = x[tuple(src)]
        return out

    # ------------------------------------------------------------ autodiff
    def vjp(self, primals, cotangents, argnums, outputs):
        x, w = primals
        g = cotangents[0]
        return [self._grad_input(x, w, g) if i == 0 else self._grad_weight(x, w, g) for i in argnums]

    def _grad_input(self, x, w, g):
        """d/dx: the cotangent convolved with the channel-swapped, flipped kernel."""
        d = x.ndim - 2
        groups = self.groups
        ksize, osize, ssize = w.shape[1:-1], g.shape[1:-1], x.shape[1:-1]
        lo, hi = [], []
        for i in range(d):
            kd = (ksize[i] - 1) * self.kernel_dilation[i] + 1
            sd = (ssize[i] - 1) * self.input_dilation[i] + 1
            lo.append(kd - 1 - self.pad_lo[i])
            hi.append(sd - (osize[i] - 1) * self.stride[i] - 1 + self.pad_lo[i])
        # (G*Og, *K, Cg) -> (G*Cg, *K, Og): each group's kernel with in/out channels swapped.
        og, cg = w.shape[0] // groups, w.shape[-1]
        wt = mx.reshape(w, (groups, og) + ksize + (cg,))
        wt = mx.transpose(wt, (0, d + 2) + tuple(range(2, d + 2)) + (1,))
        wt = mx.reshape(wt, (groups * cg,) + ksize + (og,))
        prim = Convolution(stride=self.input_dilation, pad_lo=tuple(lo), pad_hi=tuple(hi),
                           kernel_dilation=self.kernel_dilation, input_dilation=self.stride,
                           groups=groups, flip=not self.flip)
        return prim._node(g, wt)

    def _grad_weight(self, x, w, g):
        """d/dw: the input (batch and channels swapped) convolved with the cotangent."""
        d = x.ndim - 2
        groups = self.groups
        n, ssize, c_in = x.shape[0], x.shape[1:-1], x.shape[-1]
        ksize, osize = w.shape[1:-1], g.shape[1:-1]
        cg, og = c_in // groups, w.shape[0] // groups
        hi = []
        for i in range(d):
            kd = (ksize[i] - 1) * self.kernel_dilation[i] + 1
            padded = (ssize[i] - 1) * self.input_dilation[i] + 1 + self.pad_lo[i] + self.pad_hi[i]
            # Crop the tail no window reached, so the output has exactly K taps.
            hi.append(self.pad_hi[i] - (padded - (osize[i] - 1) * self.stride[i] - kd))
        sp = tuple(range(1, d + 1))
        # x: (N, *S, G*Cg) -> (Cg, *S, G*N): channels become the batch, (group, batch) the channels.
        xt = mx.reshape(x, (n,) + ssize + (groups, cg))
        xt = mx.transpose(xt, (d + 2,) + sp + (d + 1, 0))
        xt = mx.reshape(xt, (cg,) + ssize + (groups * n,))
        # g: (N, *O, G*Og) -> (G*Og, *O, N)
        gt = mx.reshape(g, (n,) + osize + (groups, og))
        gt = mx.transpose(gt, (d + 1, d + 2) + sp + (0,))
        gt = mx.reshape(gt, (groups * og,) + osize + (n,))
        prim = Convolution(stride=self.kernel_dilation, pad_lo=self.pad_lo, pad_hi=tuple(hi),
                           kernel_dilation=self.stride, input_dilation=self.input_dilation,
                           groups=groups, flip=False)
        dw = prim._node(xt, gt)  # (Cg, *K, G*Og)
        dw = mx.swapaxes(dw, 0, d + 1)
        if self.flip:
            dw = _reverse_kernel(dw)
        return dw

    def jvp(self, primals, tangents, argnums, outputs):
        # Bilinear: d(x * w) = dx * w + x * dw.
        x, w = primals
        out = None
        for t, i in zip(tangents, argnums):
            term = self._node(t, w) if i == 0 else self._node(x, t)
            out = term if out is None else out + term
        return [out]

    # ------------------------------------------------------------ vmap
    def vmap(self, inputs, axes):
        x, w = inputs
        ax, aw = axes
        d = x.ndim - 2 - (ax is not None)
        if aw is None:
            # Batched input only: fold the vmapped axis into the batch.
            x = to_front(x, ax)
            b, n = x.shape[0], x.shape[1]
            out = self._node(mx.reshape(x, (b * n,) + x.shape[2:]), w)
            return [mx.reshape(out, (b, n) + out.shape[1:])], [0]
        w = to_front(w, aw)
        b = w.shape[0]
        groups = self.groups
        og, ksize, cg = w.shape[1] // groups, w.shape[2:-1], w.shape[-1]
        if ax is None:
            # Batched weights only: the B kernels of each group become extra
            # output channels of that group, ordered (group, b, out).
            wt = mx.reshape(w, (b, groups, og) + ksize + (cg,))
            wt = mx.swapaxes(wt, 0, 1)
            wt = mx.reshape(wt, (groups * b * og,) + ksize + (cg,))
            out = self._node(x, wt)  # (N, *O, G*B*Og)
            lead = out.shape[:-1]
            out = mx.reshape(out, lead + (groups, b, og))
            out = mx.moveaxis(out, d + 2, 0)  # (B, N, *O, G, Og)
            return [mx.reshape(out, (b,) + lead + (groups * og,))], [0]
        # Both batched: each batch entry is its own set of groups.
        x = to_front(x, ax)
        n, ssize, c_in = x.shape[1], x.shape[2:-1], x.shape[-1]
        xt = mx.moveaxis(x, 0, d + 1)  # (N, *S, B, C_in)
        xt = mx.reshape(xt, (n,) + ssize + (b * c_in,))
        wt = mx.reshape(w, (b * w.shape[1],) + ksize + (cg,))
        prim = dataclasses.replace(self, groups=groups * b)
        out = prim._node(xt, wt)  # (N, *O, B*C_out)
        lead = out.shape[:-1]
        out = mx.reshape(out, lead + (b, w.shape[1]))
        return [mx.moveaxis(out, d + 1, 0)], [0]


def _reverse_kernel(w):
    """``w`` of shape ``(C_out, *K, C_in)`` with its spatial axes reversed.

    Written as a convolution so it needs no slicing op: cross-correlating a
    single one, padded by ``K - 1`` zeros on each side, with a kernel reads
    the kernel backwards (exactly: every product is by one or zero).
    """
    d = w.ndim - 2
    c_out, ksize, c_in = w.shape[0], w.shape[1:-1], w.shape[-1]
    # Every (out, in) channel pair becomes an output channel of a 1-channel conv.
    wt = mx.reshape(mx.moveaxis(w, d + 1, 1), (c_out * c_in,) + ksize + (1,))
    one = mx.ones((1,) * (d + 1) + (1,), w.dtype)
    pad = tuple(k - 1 for k in ksize)
    ones = (1,) * d
    prim = Convolution(stride=ones, pad_lo=pad, pad_hi=pad, kernel_dilation=ones, input_dilation=ones)
    out = prim._node(one, wt)  # (1, *K, C_out*C_in), reversed
    out = mx.reshape(out, ksize + (c_out, c_in))
    return mx.moveaxis(out, d, 0)
