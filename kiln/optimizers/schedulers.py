"""Learning-rate schedules: functions of the step count returning the rate."""
from __future__ import annotations

import math
from typing import Callable, List

import kiln.core as mx

__all__ = ["exponential_decay", "step_decay", "cosine_decay", "linear_schedule", "join_schedules"]


def exponential_decay(init: float, decay_rate: float) -> Callable:
    """``init * decay_rate ** step``."""

    def schedule(step):
        return init * decay_rate**step

    return schedule


def step_decay(init: float, decay_rate: float, step_size: int) -> Callable:
    """``init * decay_rate ** (step // step_size)``."""

    def schedule(step):
        return init * (decay_rate ** (step // step_size))

    return schedule


def cosine_decay(init: float, decay_steps: int, end: float = 0.0) -> Callable:
    """Half a cosine from ``init`` to ``end`` over ``decay_steps``, then ``end``."""

    def schedule(step):
        s = mx.minimum(step, decay_steps)
        decay = 0.5 * (1.0 + mx.cos((math.pi / decay_steps) * s))
        return end + decay * (init - end)

    return schedule


def linear_schedule(init: float, end: float, steps: int) -> Callable:
    """Linear from ``init`` to ``end`` over ``steps``, then ``end``."""
    if steps < 1:
        raise ValueError(f"steps must be greater than 0, but got {steps}.")

    def schedule(step):
        s = mx.minimum(step, steps)
        return s * ((end - init) / steps) + init

    return schedule


def join_schedules(schedules: List[Callable], boundaries: List[int]) -> Callable:
    """Use ``schedules[i]`` from ``boundaries[i - 1]`` on, each called with the
    steps since its boundary.

    Args:
        schedules: the schedules.
        boundaries: ``len(schedules) - 1`` step counts.
    """
    if len(schedules) == 0:
        raise ValueError("Must provide at least 1 schedule to join.")
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(
            f"Received {len(boundaries)} boundaries but expected {len(schedules) - 1}."
        )

    def schedule(step):
        out = schedules[0](step)
        for boundary, fn in zip(boundaries, schedules[1:]):
            out = mx.where(step < boundary, out, fn(step - boundary))
        return out

    return schedule
