"""The Unique primitive: sorted unique elements of a flattened array, padded to a fixed size."""
from __future__ import annotations

from kiln.primitives.base import Primitive, primitive


@primitive
class Unique(Primitive):
    """Outputs values, first index, inverse and counts, each of static size (inverse: a's shape).

    Entries past the last unique element hold ``fill`` (or the smallest unique value when
    ``fill`` is None), with the index of that value and a count of 0. NaNs are each unique,
    sorted last, as NumPy's ``unique(equal_nan=False)``.
    """

    size: int = 0
    fill: object = None

    def eval(self, xp, a):
        flat = a.reshape(-1)
        n = self.size
        vals, first, inv, counts = xp.unique(flat, return_index=True, return_inverse=True,
                                             return_counts=True, equal_nan=False)
        k = min(n, vals.shape[0])
        out_v = xp.empty((n,), dtype=a.dtype)
        out_i = xp.zeros((n,), dtype=xp.uint32)
        out_c = xp.zeros((n,), dtype=xp.int32)
        out_v[:k], out_i[:k], out_c[:k] = vals[:k], first[:k], counts[:k]
        if n > k:
            out_v[k:] = (vals[0] if vals.shape[0] else 0) if self.fill is None else self.fill
            out_i[k:] = first[0] if first.shape[0] else 0
        # A truncated output clamps inverse indices to its last entry.
        inv = xp.minimum(inv.reshape(a.shape), max(n - 1, 0)).astype(xp.uint32)
        return out_v, out_i, inv, out_c

    def output_shapes(self, inputs):
        return [(self.size,), (self.size,), tuple(inputs[0].shape), (self.size,)]

    def vmap(self, inputs, axes):
        raise ValueError("[unique] vmap is not supported: the unique elements of each row differ.")
