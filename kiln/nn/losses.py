"""Loss functions (the ``mlx.nn.losses`` API).

Every loss takes ``reduction`` (``'none'``, ``'mean'`` or ``'sum'``) and is
written in a numerically stable form (``logsumexp``, ``logaddexp``).
"""
from __future__ import annotations

import math
from typing import Literal

import kiln.core as mx

__all__ = [
    "cross_entropy", "binary_cross_entropy", "l1_loss", "mse_loss", "nll_loss",
    "gaussian_nll_loss", "kl_div_loss", "smooth_l1_loss", "triplet_loss", "hinge_loss",
    "huber_loss", "log_cosh_loss", "cosine_similarity_loss", "margin_ranking_loss",
]

Reduction = Literal["none", "mean", "sum"]


def _reduce(loss, reduction: Reduction = "none"):
    if reduction == "mean":
        return mx.mean(loss)
    if reduction == "sum":
        return mx.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError("Invalid reduction. Must be one of ('none', 'mean', 'sum').")


def _weighted_reduce(loss, weights, reduction: Reduction):
    """``loss`` times optional per-element ``weights`` (same shape), then reduced."""
    if weights is not None:
        if weights.shape != loss.shape:
            raise ValueError(
                f"Weights with shape {weights.shape} is not the same as output loss with shape {loss.shape}."
            )
        loss = loss * weights
    return _reduce(loss, reduction)


def _check_same_shape(name1, a, name2, b):
    if a.shape != b.shape:
        raise ValueError(
            f"{name1} shape {a.shape} does not match {name2} shape {b.shape}."
        )


def cross_entropy(logits, targets, weights=None, axis: int = -1, label_smoothing: float = 0.0,
                  reduction: Reduction = "none"):
    """Cross entropy between ``logits`` and class indices or probabilities.

    Args:
        logits: unnormalised scores.
        targets: integer class indices (one fewer dimension than ``logits``)
            or probabilities (same shape as ``logits``).
        weights: optional per-element weights, shaped like the loss.
        axis: the class axis.
        label_smoothing: in ``[0, 1)``; mixes the target with the uniform
            distribution.
        reduction: ``'none'``, ``'mean'`` or ``'sum'``.

    Returns:
        The loss.
    """
    if label_smoothing < 0 or label_smoothing >= 1:
        raise ValueError(f"Label smoothing must in [0, 1), got {label_smoothing}.")
    as_probs = targets.ndim == logits.ndim
    if not as_probs and targets.ndim != logits.ndim - 1:
        raise ValueError(
            f"Targets shape {targets.shape} does not match logits shape {logits.shape}."
        )
    # Shift by the max so logsumexp and the score share one stable scale
    # (this also gives the same answer as MLX for unnormalised targets).
    logits = logits - mx.stop_gradient(mx.max(logits, axis=axis, keepdims=True))
    if as_probs:
        score = mx.sum(logits * targets, axis=axis)
    else:
        idx = mx.expand_dims(targets, axis)
        score = mx.take_along_axis(logits, idx, axis).squeeze(axis)
    lse = mx.logsumexp(logits, axis=axis)
    if label_smoothing > 0:
        # Smoothed target = (1 - s) * target + s / C, so its score adds s * mean(logits).
        score = (1 - label_smoothing) * score + label_smoothing * mx.mean(logits, axis=axis)
    loss = lse - score
    return _weighted_reduce(loss, weights, reduction)


def binary_cross_entropy(inputs, targets, weights=None, with_logits: bool = True,
                         reduction: Reduction = "mean"):
    """Binary cross entropy.

    Args:
        inputs: logits (``with_logits=True``) or probabilities.
        targets: targets in ``[0, 1]``.
        weights: optional per-element weights.
        with_logits: whether ``inputs`` are logits (the stable form).
        reduction: ``'none'``, ``'mean'`` or ``'sum'``.

    Returns:
        The loss.
    """
    if inputs.shape != targets.shape:
        raise ValueError(f"Inputs shape {inputs.shape} does not match targets shape {targets.shape}.")
    if with_logits:
        loss = mx.logaddexp(0.0, inputs) - inputs * targets
    else:
        # log is clipped at -100 so 0 and 1 probabilities stay finite.
        log_p = mx.maximum(mx.log(inputs), -100)
        log_q = mx.maximum(mx.log(1 - inputs), -100)
        loss = -(targets * log_p + (1 - targets) * log_q)
    return _weighted_reduce(loss, weights, reduction)


def l1_loss(predictions, targets, reduction: Reduction = "mean"):
    """Mean absolute error."""
    _check_same_shape("Predictions", predictions, "targets", targets)
    return _reduce(mx.abs(predictions - targets), reduction)


def mse_loss(predictions, targets, reduction: Reduction = "mean"):
    """Mean squared error."""
    _check_same_shape("Predictions", predictions, "targets", targets)
    return _reduce(mx.square(predictions - targets), reduction)


def nll_loss(inputs, targets, axis: int = -1, reduction: Reduction = "none"):
    """Negative log likelihood of class indices ``targets`` under the
    log-probabilities ``inputs``."""
    loss = -mx.take_along_axis(inputs, mx.expand_dims(targets, axis), axis).squeeze(axis)
    return _reduce(loss, reduction)


def gaussian_nll_loss(inputs, targets, vars, full: bool = False, eps: float = 1e-6,
                      reduction: Reduction = "mean"):
    """Negative log likelihood of ``targets`` under ``N(inputs, vars)``.

    Args:
        inputs: predicted means.
        targets: observed values.
        vars: predicted variances (clamped below at ``eps``).
        full: add the constant ``0.5 * log(2 pi)``.
        eps: variance floor for stability.
        reduction: ``'none'``, ``'mean'`` or ``'sum'``.
    """
    _check_same_shape("Inputs", inputs, "targets", targets)
    _check_same_shape("Inputs", inputs, "vars", vars)
    vars = mx.maximum(vars, eps)
    loss = 0.5 * (mx.log(vars) + mx.square(targets - inputs) / vars)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


def kl_div_loss(inputs, targets, axis: int = -1, reduction: Reduction = "none"):
    """KL divergence ``sum(exp(t) * (t - x))`` between log-probabilities."""
    loss = mx.sum(mx.exp(targets) * (targets - inputs), axis)
    return _reduce(loss, reduction)


def smooth_l1_loss(predictions, targets, beta: float = 1.0, reduction: Reduction = "mean"):
    """Quadratic below ``beta``, linear above."""
    _check_same_shape("Predictions", predictions, "targets", targets)
    diff = mx.abs(predictions - targets)
    loss = mx.where(diff < beta, 0.5 * mx.square(diff) / beta, diff - 0.5 * beta)
    return _reduce(loss, reduction)


def triplet_loss(anchors, positives, negatives, axis: int = -1, p: int = 2, margin: float = 1.0,
                 eps: float = 1e-6, reduction: Reduction = "none"):
    """``max(d(a, p) - d(a, n) + margin, 0)`` with the (eps-smoothed)
    ``p``-norm distance along ``axis``."""
    def dist(a, b):
        return mx.power(mx.sum(mx.power(mx.abs(a - b), p), axis) + eps, 1.0 / p)

    loss = mx.maximum(dist(anchors, positives) - dist(anchors, negatives) + margin, 0)
    return _reduce(loss, reduction)


def hinge_loss(inputs, targets, reduction: Reduction = "none"):
    """``max(1 - inputs * targets, 0)`` for targets in {-1, 1}."""
    return _reduce(mx.maximum(1 - inputs * targets, 0), reduction)


def huber_loss(inputs, targets, delta: float = 1.0, reduction: Reduction = "none"):
    """Quadratic within ``delta``, linear (slope ``delta``) outside."""
    err = mx.abs(inputs - targets)
    quad = mx.minimum(err, delta)
    lin = err - quad
    return _reduce(0.5 * mx.square(quad) + delta * lin, reduction)


def log_cosh_loss(inputs, targets, reduction: Reduction = "none"):
    """``log(cosh(x - t))``, computed as ``logaddexp(e, -e) - log 2``."""
    err = inputs - targets
    return _reduce(mx.logaddexp(err, -err) - math.log(2), reduction)


def cosine_similarity_loss(x1, x2, axis: int = 1, eps: float = 1e-8, reduction: Reduction = "none"):
    """Cosine similarity along ``axis``; the norm product is floored at ``eps``."""
    n1 = mx.sqrt(mx.sum(mx.square(x1), axis=axis))
    n2 = mx.sqrt(mx.sum(mx.square(x2), axis=axis))
    loss = mx.sum(x1 * x2, axis=axis) / mx.maximum(n1 * n2, eps)
    return _reduce(loss, reduction)


def margin_ranking_loss(inputs1, inputs2, targets, margin: float = 0.0, reduction: Reduction = "none"):
    """``max(0, -targets * (inputs1 - inputs2) + margin)``."""
    if not (inputs1.shape == inputs2.shape == targets.shape):
        raise ValueError(
            f"The shapes of the arguments do not match. The provided shapes are "
            f"inputs1.shape={inputs1.shape}, inputs2.shape={inputs2.shape}, and "
            f"targets.shape={targets.shape}."
        )
    loss = mx.maximum(0, -targets * (inputs1 - inputs2) + margin)
    return _reduce(loss, reduction)
