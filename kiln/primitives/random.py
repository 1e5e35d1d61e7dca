"""The random-bits primitive: a counter-based Threefry-2x32 generator.

Every random number in kiln starts here. ``RandomBits`` maps a key (two
uint32 words) to raw bits of a given shape with the Threefry-2x32 block
cipher (20 rounds), written only with uint32 arithmetic on ``xp``, so a key
gives the same bits on every backend. Distributions turn the bits into
numbers with ordinary ops (``kiln/core/random.py``).
"""
from __future__ import annotations

from kiln.primitives.base import ops as mx

from kiln.primitives.base import Primitive, primitive, to_front

# Rotation constants of Threefry-2x32, used four at a time, alternating.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA  # the key-schedule constant of the Threefish family


def _rotl(xp, x, r: int):
    return xp.left_shift(x, xp.uint32(r)) | xp.right_shift(x, xp.uint32(32 - r))


def threefry2x32(xp, k0, k1, x0, x1):
    """Encrypt counters ``(x0, x1)`` with key ``(k0, k1)`` (uint32 arrays).

    All arguments broadcast together; uint32 arithmetic wraps modulo 2**32,
    which is what the cipher wants.
    """
    ks = (k0, k1, k0 ^ k1 ^ xp.uint32(_PARITY))
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for block in range(5):  # 5 blocks of 4 rounds, a key injection after each
        for r in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = _rotl(xp, x1, r) ^ x0
        x0 = x0 + ks[(block + 1) % 3]
        x1 = x1 + ks[(block + 2) % 3] + xp.uint32(block + 1)
    return x0, x1


_WIDTH_DTYPES = {1: "uint8", 2: "uint16", 4: "uint32"}


@primitive
class RandomBits(Primitive):
    """Raw random bits of ``shape`` for each key in the input.

    The input is a key array of shape ``(*K, 2)`` (uint32); the output has
    shape ``(*K, *shape)`` and holds unsigned integers of ``width`` bytes.
    Each key fills ``ceil(width * size / 4)`` 32-bit words: with ``h`` half
    that number rounded up, word ``i < h`` and word ``i + h`` are the two
    halves of the cipher applied to counters ``(i, i + h)``; a counter past
    the end is replaced by 0. The bytes of the words (little-endian) are
    then read as the output elements.
    """

    shape: tuple = ()
    width: int = 4

    def eval(self, xp, keys):
        dtype = getattr(xp, _WIDTH_DTYPES[self.width])
        lead = keys.shape[:-1]
        n_keys = 1
        for d in lead:
            n_keys *= d
        size = 1
        for d in self.shape:
            size *= d
        out_shape = lead + self.shape
        n_bytes = size * self.width
        n_words = (n_bytes + 3) // 4
        if n_keys == 0 or n_words == 0:
            return xp.zeros(out_shape, dtype=dtype)
        keys = xp.reshape(keys, (n_keys, 2))
        half = (n_words + 1) // 2
        lo = xp.arange(half, dtype=xp.uint32)
        hi = lo + xp.uint32(half)
        hi = xp.where(hi < n_words, hi, xp.uint32(0))
        x0, x1 = threefry2x32(xp, keys[:, 0:1], keys[:, 1:2], lo[None, :], hi[None, :])
        words = xp.concatenate([x0, x1], axis=1)[:, :n_words]
        if self.width == 4:
            return xp.reshape(words, out_shape)
        # Narrower elements read the words' bytes in order (hosts are little-endian).
        data = xp.ascontiguousarray(words).view(xp.uint8)[:, :n_bytes]
        return xp.reshape(xp.ascontiguousarray(data).view(dtype), out_shape)

    def vjp(self, primals, cotangents, argnums, outputs):
        # Keys are integers: nothing flows back to them.
        return [mx.zeros_like(primals[0])]

    def jvp(self, primals, tangents, argnums, outputs):
        out = outputs[0]
        return [mx.zeros(out.shape, out.dtype)]

    def vmap(self, inputs, axes):
        # The primitive already handles leading key dimensions: a batch of
        # keys gives one independent block of bits per key.
        keys = to_front(inputs[0], axes[0])
        out = self.apply([keys], keys.shape[:-1] + self.shape, outputs_dtype(self.width))
        return [out], [0]

    def output_shapes(self, inputs):
        return [tuple(inputs[0].shape[:-1]) + tuple(self.shape)]


def outputs_dtype(width: int):
    """The kiln dtype of bits of ``width`` bytes."""
    return getattr(mx, _WIDTH_DTYPES[width])
