"""The FFT primitive: complex, real-to-complex and complex-to-real transforms.

One class covers the whole family, parametrised by ``axes``, ``inverse``,
``real`` and ``norm``. Ops in ``core/fft.py`` pad or truncate the input to
the transform sizes beforehand, so the primitive only ever transforms the
full extent of its axes (``n`` is needed only by the complex-to-real
transform, whose output length is ambiguous from its input).

Every transform is linear, so its JVP is the same transform of the tangent;
its VJP is the adjoint. With the cotangent convention ``dL/dx + i dL/dy``
used by the rest of kiln, the adjoint of a complex-linear map ``A`` is its
conjugate transpose ``A^H``; for the unnormalised DFT ``F``, ``F^H`` is the
inverse transform without its ``1/N``, i.e. ``ifft(norm="forward")``. So the
adjoint of a transform with norm ``a`` is the opposite transform with the
"dual" norm (backward <-> forward, ortho <-> ortho).
"""
from __future__ import annotations

import dataclasses

from kiln.primitives.base import ops as mx

from kiln.primitives.base import Primitive, primitive, to_front

_DUAL_NORM = {"backward": "forward", "ortho": "ortho", "forward": "backward"}


@primitive
class FFT(Primitive):
    """``fftn``/``ifftn`` (``real=False``), ``rfftn`` (``real, not inverse``)
    or ``irfftn`` (``real, inverse``, last-axis output length ``n``) over
    ``axes`` (non-negative, in order; the real axis is the last)."""

    axes: tuple = ()
    inverse: bool = False
    real: bool = False
    norm: str = "backward"
    n: int = 0

    def eval(self, xp, x):
        axes = list(self.axes)
        if not self.real:
            fn = xp.fft.ifftn if self.inverse else xp.fft.fftn
            out = fn(x, axes=axes, norm=self.norm)
            return out.astype(xp.complex64, copy=False)
        if not self.inverse:
            out = xp.fft.rfftn(x, axes=axes, norm=self.norm)
            return out.astype(xp.complex64, copy=False)
        s = [x.shape[a] for a in axes[:-1]] + [self.n]
        out = xp.fft.irfftn(x, s=s, axes=axes, norm=self.norm)
        return out.astype(xp.float32, copy=False)

    def output_shapes(self, inputs):
        shape = list(inputs[0].shape)
        if self.real:
            last = self.axes[-1]
            shape[last] = self.n if self.inverse else shape[last] // 2 + 1
        return [tuple(shape)]

    def _out_dtype(self):
        return mx.float32 if (self.real and self.inverse) else mx.complex64

    def jvp(self, primals, tangents, argnums, outputs):
        t = tangents[0]
        t = mx.astype(t, mx.float32 if (self.real and not self.inverse) else mx.complex64)
        return [self.apply([t], outputs[0].shape, outputs[0].dtype)]

    def vjp(self, primals, cotangents, argnums, outputs):
        x = primals[0]
        g = cotangents[0]
        dual = _DUAL_NORM[self.norm]
        if not self.real:
            g = mx.astype(g, mx.complex64)
            adj = FFT(self.axes, not self.inverse, False, dual)
            return [adj.apply([g], x.shape, mx.complex64)]
        last = self.axes[-1]
        if not self.inverse:
            # rfft = truncate(F x): the adjoint zero-pads the half spectrum back
            # to full length, applies F^H, and keeps the real part (x is real).
            g = mx.astype(g, mx.complex64)
            n = x.shape[last]
            widths = [(0, 0)] * g.ndim
            widths[last] = (0, n - g.shape[last])
            g = mx.pad(g, widths)
            adj = FFT(self.axes, True, False, dual)
            return [mx.real(adj.apply([g], x.shape, mx.complex64))]
        # irfft reads each non-DC, non-Nyquist bin twice (itself and its
        # conjugate mirror), so the adjoint is rfft of g with those bins doubled.
        g = mx.astype(g, mx.float32)
        adj = FFT(self.axes, False, True, dual)
        spec = adj.apply([g], x.shape, mx.complex64)
        m = x.shape[last]
        doubled = [1.0] + [2.0] * (m - 1)
        if self.n % 2 == 0 and m > 1:
            doubled[-1] = 1.0
        w = mx.array(doubled, dtype=mx.float32)
        w = mx.reshape(w, (m,) + (1,) * (x.ndim - 1 - last))
        return [spec * w]

    def vmap(self, inputs, axes):
        x = to_front(inputs[0], axes[0])
        prim = dataclasses.replace(self, axes=tuple(a + 1 for a in self.axes))
        return [prim.apply([x], prim.output_shapes([x])[0], self._out_dtype())], [0]
