"""Method forms of ops on ``array`` (``x.sum(axis=0)``, ``x.reshape(2, 3)``)."""
from __future__ import annotations

# MLX's array methods that are plain ``op(self, *args, **kwargs)``.
_SIMPLE = (
    "abs", "all", "any", "argmax", "argmin", "conj", "cos", "cummax", "cummin", "cumprod",
    "cumsum", "diag", "diagonal", "exp", "flatten", "imag", "log", "log10", "log1p", "log2",
    "logcumsumexp", "logsumexp", "max", "mean", "min", "moveaxis", "prod", "real",
    "reciprocal", "round", "rsqrt", "sin", "split", "sqrt", "square", "squeeze", "std", "sum",
    "swapaxes", "var",
)


def _simple(op):
    def method(self, *args, **kwargs):
        return op(self, *args, **kwargs)

    method.__name__ = op.__name__
    method.__doc__ = op.__doc__
    return method


def install(array, ns) -> None:
    """Attach the method forms of the ops found in namespace ``ns``."""
    for name in _SIMPLE:
        op = getattr(ns, name, None)
        if op is not None:
            setattr(array, name, _simple(op))

    def reshape(self, *shape, stream=None):
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = shape[0]
        return ns.reshape(self, shape, stream=stream)

    def transpose(self, *axes, stream=None):
        if len(axes) == 1 and not isinstance(axes[0], int):
            axes = axes[0]
        return ns.transpose(self, axes if axes else None, stream=stream)

    def mT(self):
        return ns.swapaxes(self, -1, -2)

    array.reshape = reshape
    array.transpose = transpose
    array.mT = property(mT)
