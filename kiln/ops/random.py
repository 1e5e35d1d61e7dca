"""``mx.random``: keys, the global key state, and sampling from distributions.

Keys are uint32 arrays of shape ``(2,)``. ``RandomBits`` (a Threefry-2x32
primitive) turns a key into raw bits; every distribution here transforms
those bits with ordinary ops, so samples are differentiable with respect to
their parameters (``loc``, ``scale``, ``low``, ``high``) and batch under
``vmap`` (a batch of keys gives a batch of independent samples). The layout
of the bits and the transformations follow MLX, so the same key gives the
same numbers as MLX.

Without ``key=``, a function takes the next key from the global state
``state`` (a list holding the current key): the state is split in two, the
first half becomes the new state and the second is used.
"""
from __future__ import annotations

import math
import time
from typing import Optional, Sequence

import ml_dtypes
import numpy as np

from kiln import dtypes as _dt
from kiln.ops.normalize import as_array, get_stream, norm_axis, shape_str
from kiln.graph.array import _make, array
from kiln.primitives.base import broadcast_shapes
from kiln.primitives.random import RandomBits
from kiln.ops import elementwise as _ew
from kiln.ops import reduce as _rd
from kiln.ops import indexing as _ix
from kiln.ops import linalg
from kiln.ops import products as _pr
from kiln.ops import shape as _sh

__all__ = [
    "key", "split", "seed", "state", "bits", "uniform", "normal", "randint", "bernoulli",
    "truncated_normal", "gumbel", "categorical", "laplace", "multivariate_normal",
    "permutation",
]

_SQRT2 = math.sqrt(2.0)


# ---------------------------------------------------------------- keys and state
def _check_seed(value, op: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}(): expected an int seed, got {type(value).__name__}.")
    value = int(value)
    if value < 0 or value >= 2**64:
        raise TypeError(f"{op}(): the seed must be an integer in [0, 2**64), got {value}.")
    return value


def key(seed: int) -> array:
    """Get a PRNG key from a seed.

    Args:
        seed (int): Seed for the PRNG, an integer in ``[0, 2**64)``.

    Returns:
        array: The key, a uint32 array of shape ``(2,)`` holding the high and
        low 32 bits of the seed.
    """
    seed = _check_seed(seed, "key")
    return array(np.array([seed >> 32, seed & 0xFFFFFFFF], dtype=np.uint32), _dt.uint32)


# The global state: a list holding the current key, as in MLX (compile and
# tree utilities can capture and replace its content).
state: list = [key(time.time_ns() & 0xFFFFFFFFFFFFFFFF)]


def seed(seed: int) -> None:
    """Seed the global PRNG.

    Args:
        seed (int): Seed for the global PRNG.
    """
    state[0] = key(_check_seed(seed, "seed"))


def _next_key() -> array:
    """Advance the global state and return a fresh key."""
    halves = split(state[0])
    state[0] = halves[0]
    return halves[1]


def _get_key(k, op: str = "bits") -> array:
    """The key to use: ``k`` validated, or the next key of the global state."""
    if k is None:
        return _next_key()
    k = as_array(k)
    if k.dtype is not _dt.uint32:
        raise ValueError(f"[{op}] Expected key type uint32 but received {k.dtype.name}.")
    if k.shape != (2,):
        raise ValueError(f"[{op}] Expected key shape (2) but received {shape_str(k.shape)}.")
    return k


def _check_shape(shape, op: str) -> tuple:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"[{op}] Negative dimensions not allowed.")
    return shape


def bits(shape: Sequence[int] = (), width: int = 4, key: Optional[array] = None,
         stream=None) -> array:
    """Generate raw random bits.

    Args:
        shape (list(int), optional): Shape of the output. Default: ``()``.
        width (int, optional): Bytes per element: 1, 2 or 4 (giving uint8,
          uint16 or uint32). Default: ``4``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: Unsigned integers with uniformly random bits.
    """
    shape = _check_shape(shape, "bits")
    if width not in (1, 2, 4):
        raise ValueError(f"[bits] Bit width must be in {{1, 2, 4}} but got {width}.")
    k = _get_key(key, "bits")
    dtype = {1: _dt.uint8, 2: _dt.uint16, 4: _dt.uint32}[width]
    return _make(shape, dtype, RandomBits(shape, width), (k,), get_stream(stream))


def split(key: array, num: int = 2, stream=None) -> array:
    """Split a PRNG key into sub keys.

    Args:
        key (array): Input key to split.
        num (int, optional): Number of sub keys. Default: ``2``.

    Returns:
        array: The array of sub keys with ``num`` as its first dimension.
    """
    return bits((num, 2), 4, _get_key(key, "bits"), stream)


# ---------------------------------------------------------------- helpers
def _float_dtype(dtype, op: str, message: str):
    dtype = _dt.as_dtype(dtype)
    if not dtype.is_floating:
        raise ValueError(f"[{op}] {message}")
    return dtype


def _param(v, dtype) -> array:
    """A distribution parameter as an array of ``dtype`` (Python scalars exact)."""
    return as_array(v, dtype)


def _output_shape(shape, param_shape, op: str) -> tuple:
    """``shape`` after checking the parameters broadcast to it, as MLX does."""
    full = broadcast_shapes(shape, param_shape)
    if full != shape:
        raise ValueError(f"[{op}] Cannot generate random values of shape {shape_str(shape)} "
                         f"from broadcasted shape {shape_str(param_shape)}.")
    return shape


def _below(value: float, toward: float, dtype) -> float:
    """The number of ``dtype`` next to ``value`` in the direction of ``toward``.

    Stepped on the bits, so it works for bfloat16 too (``np.nextafter`` does not).
    """
    v = np.array(value, dtype=dtype.np)
    if float(v) == toward:
        return float(v)
    uint = {2: np.uint16, 4: np.uint32, 8: np.uint64}[v.itemsize]
    if float(v) == 0.0:
        # The smallest subnormal, with the sign of the direction.
        b = np.array(1, uint) | (np.array(1, uint) << (8 * v.itemsize - 1) if toward < 0 else 0)
    else:
        b = v.view(uint)
        # Sign-magnitude: toward zero decrements the magnitude, away increments it.
        b = b - uint(1) if (abs(toward) < abs(value) or (toward > 0) != (value > 0)) else b + uint(1)
    return float(np.array(b, uint).view(dtype.np))


def _unit_uniform(shape: tuple, dtype, k, stream) -> array:
    """Uniform numbers in [0, 1] of ``dtype`` from 32 random bits each."""
    b = bits(shape, 4, k, stream)
    # Exact: 2**-32 is a power of two (MLX divides by float32(2**32 - 1) == 2**32).
    u = _ew.multiply(_ew.astype(b, _dt.float32), 2.0**-32)
    return _ew.astype(u, dtype)


# ---------------------------------------------------------------- distributions
def uniform(low=0, high=1, shape: Sequence[int] = (), dtype=_dt.float32,
            key: Optional[array] = None, stream=None) -> array:
    """Generate uniformly distributed random numbers.

    The values are sampled uniformly in the half-open interval ``[low, high)``.
    ``low`` and ``high`` can be scalars or arrays and must broadcast to ``shape``.

    Args:
        low (scalar or array, optional): Lower bound. Default: ``0``.
        high (scalar or array, optional): Upper bound. Default: ``1``.
        shape (list(int), optional): Shape of the output. Default: ``()``.
        dtype (Dtype, optional): Type of the output. Default: ``float32``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The array of random values.
    """
    dtype = _float_dtype(dtype, "uniform",
                         "Can only generate uniform numbers with real floating point type.")
    shape = _check_shape(shape, "uniform")
    lo, hi = _param(low, dtype), _param(high, dtype)
    _output_shape(shape, broadcast_shapes(lo.shape, hi.shape), "uniform")
    k = _get_key(key, "bits")
    u = _unit_uniform(shape, dtype, k, stream)
    out = _ew.add(_ew.multiply(u, _ew.subtract(hi, lo)), lo)
    # u can round up to 1: keep the interval half-open.
    if _is_number(low) and _is_number(high):
        return _ew.minimum(out, _below(float(high), float(low), dtype))
    return _ew.where(_ew.less(out, hi), out, lo)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def normal(shape: Sequence[int] = (), dtype=_dt.float32, loc=None, scale=None,
           key: Optional[array] = None, stream=None) -> array:
    """Generate normally distributed random numbers.

    Without ``loc`` and ``scale`` the standard normal is used (for complex64,
    real and imaginary parts are each normal with variance 1/2).

    Args:
        shape (list(int), optional): Shape of the output. Default: ``()``.
        dtype (Dtype, optional): Type of the output. Default: ``float32``.
        loc (scalar or array, optional): Mean. Default: ``None``.
        scale (scalar or array, optional): Standard deviation. Default: ``None``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The array of random values; differentiable w.r.t. ``loc`` and ``scale``.
    """
    dtype = _dt.as_dtype(dtype)
    if not (dtype.is_floating or dtype is _dt.complex64):
        raise ValueError("[normal] Only floating point and complex64 types are supported.")
    shape = _check_shape(shape, "normal")
    k = _get_key(key, "bits")
    if dtype is _dt.complex64:
        parts = normal(shape + (2,), _dt.float32, key=k, stream=stream)
        parts = _ew.multiply(parts, math.sqrt(0.5))
        re, im = _sh.split(parts, 2, axis=-1)
        z = _ew.add(_ew.astype(_sh.squeeze(re, -1), dtype),
                   _ew.multiply(_ew.astype(_sh.squeeze(im, -1), dtype), 1j))
        if scale is not None:
            z = _ew.multiply(z, scale)
        if loc is not None:
            z = _ew.add(z, loc)
        return z
    loc_a = None if loc is None else _param(loc, dtype)
    scale_a = None if scale is None else _param(scale, dtype)
    for p in (loc_a, scale_a):
        if p is not None:
            shape = broadcast_shapes(shape, p.shape)
    u = uniform(_below(-1.0, 0.0, dtype), 1.0, shape, dtype, k, stream)
    z = _ew.erfinv(u)
    # sqrt(2) is folded into the scale first, as MLX does, for equal rounding.
    z = _ew.multiply(z, _SQRT2 if scale_a is None else _ew.multiply(scale_a, _SQRT2))
    if loc_a is not None:
        z = _ew.add(z, loc_a)
    return z


def randint(low, high, shape: Sequence[int] = (), dtype=_dt.int32,
            key: Optional[array] = None, stream=None) -> array:
    """Generate random integers from the half-open interval ``[low, high)``.

    The samples come from a float32 uniform, floored and clamped to
    ``[low, high - 1]`` (so beyond 2**24 not every integer is reachable).

    Args:
        low (scalar or array): Lower bound of the interval.
        high (scalar or array): Upper bound of the interval.
        shape (list(int), optional): Shape of the output. Default: ``()``.
        dtype (Dtype, optional): Type of the output. Default: ``int32``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The array of random integers.
    """
    dtype = _dt.as_dtype(dtype)
    if not (dtype.is_integer or dtype is _dt.bool_):
        raise ValueError("[randint] randint only accepts integer dtypes and bool.")
    lo = _param(low, _dt.float32)
    hi = _param(high, _dt.float32)
    u = uniform(lo, hi, shape, _dt.float32, key, stream)
    out = _ew.maximum(_ew.minimum(_ew.floor(u), _ew.subtract(hi, 1.0)), lo)
    return _ew.astype(out, dtype)


def bernoulli(p=0.5, shape: Optional[Sequence[int]] = None, key: Optional[array] = None,
              stream=None) -> array:
    """Generate Bernoulli random values.

    Args:
        p (float or array, optional): Probability of ``True``; must broadcast
          to ``shape``. Default: ``0.5``.
        shape (list(int), optional): Shape of the output. Default: ``p.shape``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: A boolean array.
    """
    p = as_array(p)
    if not p.dtype.is_floating:
        p = _ew.astype(p, _dt.float32)
    shape = p.shape if shape is None else _check_shape(shape, "bernoulli")
    broadcast_shapes(shape, p.shape)  # raises for incompatible shapes
    u = uniform(shape=shape, dtype=p.dtype, key=key, stream=stream)
    return _ew.less(u, p)


def truncated_normal(lower, upper, shape: Optional[Sequence[int]] = None, dtype=_dt.float32,
                     key: Optional[array] = None, stream=None) -> array:
    """Generate values from a normal distribution truncated to ``(lower, upper)``.

    Args:
        lower (scalar or array): Lower bound of the domain.
        upper (scalar or array): Upper bound of the domain.
        shape (list(int), optional): Shape of the output. Default: the
          broadcast shape of ``lower`` and ``upper``.
        dtype (Dtype, optional): Type of the output. Default: ``float32``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The array of random values.
    """
    dtype = _float_dtype(dtype, "trunc_normal", "trunc_normal only accepts floating point dtypes.")
    lo, hi = _param(lower, dtype), _param(upper, dtype)
    bshape = broadcast_shapes(lo.shape, hi.shape)
    shape = bshape if shape is None else _check_shape(shape, "trunc_normal")
    # Sample the normal CDF's image of the interval uniformly, then invert.
    a = _ew.erf(_ew.divide(lo, _SQRT2))
    b = _ew.erf(_ew.divide(hi, _SQRT2))
    u = uniform(a, b, shape, dtype, key, stream)
    z = _ew.multiply(_ew.erfinv(u), _SQRT2)
    return _ew.minimum(_ew.maximum(z, lo), hi)


def gumbel(shape: Sequence[int] = (), dtype=_dt.float32, key: Optional[array] = None,
           stream=None) -> array:
    """Sample from the standard Gumbel distribution (CDF ``exp(-exp(-x))``).

    Args:
        shape (list(int)): The shape of the output. Default: ``()``.
        dtype (Dtype, optional): The data type of the output. Default: ``float32``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: Gumbel samples of ``shape``.
    """
    dtype = _float_dtype(dtype, "uniform",
                         "Can only generate uniform numbers with real floating point type.")
    # Start just above 0 so the double logarithm stays finite.
    u = uniform(float(ml_dtypes.finfo(dtype.np).tiny), 1.0, shape, dtype, key, stream)
    return _ew.negative(_ew.log(_ew.negative(_ew.log(u))))


def laplace(shape: Sequence[int] = (), dtype=_dt.float32, loc: float = 0.0, scale: float = 1.0,
            key: Optional[array] = None, stream=None) -> array:
    """Sample numbers from a Laplace distribution.

    Args:
        shape (list(int), optional): Shape of the output. Default: ``()``.
        dtype (Dtype, optional): Type of the output. Default: ``float32``.
        loc (float, optional): Mean of the distribution. Default: ``0.0``.
        scale (float, optional): The scale ``b``. Default: ``1.0``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The array of random values.
    """
    dtype = _float_dtype(dtype, "laplace", "Only real floating point types are supported.")
    u = uniform(_below(-1.0, 0.0, dtype), 1.0, shape, dtype, key, stream)
    # Inverse CDF: the sign picks the side, -log(1 - |u|) is exponential.
    x = _ew.multiply(_ew.sign(u), _ew.log1p(_ew.negative(_ew.abs(u))))
    return _ew.add(_ew.multiply(x, scale), loc)


def categorical(logits: array, axis: int = -1, shape: Optional[Sequence[int]] = None,
                num_samples: Optional[int] = None, key: Optional[array] = None,
                stream=None) -> array:
    """Sample from a categorical distribution.

    At most one of ``shape`` and ``num_samples`` can be given. Without
    either, the output has the shape of ``logits`` with ``axis`` removed.

    Args:
        logits (array): The *unnormalized* log-probabilities.
        axis (int, optional): The axis holding the categories. Default: ``-1``.
        shape (list(int), optional): Output shape, broadcast compatible with
          ``logits.shape`` without ``axis``. Default: ``None``.
        num_samples (int, optional): Samples per distribution, as a new last
          axis. Default: ``None``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: uint32 category indices.
    """
    if shape is not None and num_samples is not None:
        raise ValueError("[categorical] At most one of shape or num_samples can be specified.")
    logits = as_array(logits)
    if logits.ndim == 0:
        raise ValueError("[categorical] logits must have at least one dimension.")
    ax = norm_axis(axis, logits.ndim, "categorical")
    n = logits.shape[ax]
    batch = logits.shape[:ax] + logits.shape[ax + 1:]
    if num_samples is not None:
        if num_samples < 0:
            raise ValueError("[categorical] num_samples must be non-negative.")
        out_shape = batch + (int(num_samples),)
    elif shape is not None:
        out_shape = _check_shape(shape, "categorical")
        if broadcast_shapes(out_shape, batch) != out_shape:
            raise ValueError(f"[categorical] Requested shape {shape_str(out_shape)} is not "
                             f"broadcast compatible with batch shape {shape_str(batch)}.")
    else:
        out_shape = batch
    k = _get_key(key, "bits")
    sampled = shape is not None or num_samples is not None or logits.ndim > 1
    if math.prod(batch) == 1 and sampled:
        # One distribution, many samples: invert its CDF (as MLX does, so the
        # same key gives the same samples).
        flat = _sh.reshape(logits, (n,))
        cdf = _rd.cumsum(_rd.softmax(flat, axis=-1))
        u = uniform(shape=out_shape, key=k, stream=stream)
        idx = _rd.sum(_ew.less(_sh.expand_dims(cdf, tuple(range(len(out_shape)))),
                             _sh.expand_dims(u, -1)), axis=-1)
        return _ew.astype(_ew.minimum(idx, n - 1), _dt.uint32)
    # The Gumbel-max trick: argmax(logits + Gumbel noise) samples the softmax.
    if num_samples is not None:
        x = _sh.expand_dims(logits, -1)
        g = gumbel(logits.shape + (int(num_samples),), logits.dtype if logits.dtype.is_floating
                   else _dt.float32, k, stream)
        return _rd.argmax(_ew.add(x, g), axis=ax)
    extra = len(out_shape) - len(batch)
    g_shape = out_shape[:extra + ax] + (n,) + out_shape[extra + ax:]
    g = gumbel(g_shape, logits.dtype if logits.dtype.is_floating else _dt.float32, k, stream)
    return _rd.argmax(_ew.add(logits, g), axis=extra + ax)


def multivariate_normal(mean: array, cov: array, shape: Sequence[int] = (), dtype=_dt.float32,
                        key: Optional[array] = None, stream=None) -> array:
    """Generate jointly-normal random samples given a mean and covariance.

    ``cov`` must be positive semi-definite (it is factored by an SVD, which,
    unlike a Cholesky factorisation, accepts singular matrices).

    Args:
        mean (array): Shape ``(..., n)``, the mean.
        cov (array): Shape ``(..., n, n)``, the covariance; its batch shape
          must broadcast with that of ``mean``.
        shape (list(int), optional): Batch shape of the output, broadcast
          compatible with the batch shapes of ``mean`` and ``cov``. Default:
          their broadcast batch shape.
        dtype (Dtype, optional): The output type (float32 only). Default: ``float32``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: Samples of shape ``shape + (n,)``.
    """
    dtype = _dt.as_dtype(dtype)
    if dtype is not _dt.float32:
        raise ValueError("[multivariate_normal] dtype must be float32.")
    mean = as_array(mean, dtype)
    cov = as_array(cov, dtype)
    if mean.ndim < 1 or cov.ndim < 2 or cov.shape[-1] != cov.shape[-2] \
            or mean.shape[-1] != cov.shape[-1]:
        raise ValueError("[multivariate_normal] mean and cov must have compatible shapes.")
    n = mean.shape[-1]
    batch = broadcast_shapes(mean.shape[:-1], cov.shape[:-2])
    shape = _check_shape(shape, "multivariate_normal")
    if shape:
        broadcast_shapes(shape, batch)
    else:
        shape = batch
    z = normal(shape + (n,), dtype, key=key, stream=stream)
    u, s, _ = linalg.svd(cov, stream=stream)
    factor = _ew.multiply(u, _sh.expand_dims(_ew.sqrt(_ew.maximum(s, 0.0)), -2))
    # x = mean + factor @ z, written for a batch of row vectors.
    x = _sh.squeeze(_pr.matmul(_sh.expand_dims(z, -2), _sh.swapaxes(factor, -1, -2)), -2)
    return _ew.add(x, mean)


def permutation(x, axis: int = 0, key: Optional[array] = None, stream=None) -> array:
    """Generate a random permutation or permute the entries of an array.

    Args:
        x (int or array): An ``int`` gives a permutation of ``arange(x)``;
          an array has its entries permuted along ``axis``.
        axis (int, optional): The axis to permute along. Default: ``0``.
        key (array, optional): A PRNG key. Default: ``None``.

    Returns:
        array: The permutation (uint32) or the permuted array.
    """
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        if x < 0:
            raise ValueError("[permutation] The size must be non-negative.")
        # Sorting random bits gives a uniformly random order.
        return _ew.astype(_rd.argsort(bits((int(x),), 4, key, stream)), _dt.uint32)
    x = as_array(x)
    ax = norm_axis(axis, x.ndim, "permutation")
    order = _rd.argsort(bits((x.shape[ax],), 4, key, stream))
    return _ix.take(x, order, axis=ax)
