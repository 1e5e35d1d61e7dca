"""Pieces shared by the driver and the workers: the benchmark case, timing, memory probes."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Case:
    """One measured variant of a workload on one framework.

    Args:
        variant: short name shown in the table (``"eager"``, ``"compiled"``, ``"4096"``...).
        run: one timed unit of work; it must force evaluation (``mx.eval``,
            ``block_until_ready``, reading the result) before returning.
        check: returns a dict of NumPy arrays that every framework must agree on.
        per: ``(count, unit)``: also report the median time divided by ``count``, in ``unit``
            (``(1000, "us/op")``; the unit starts with ``us/``, ``ms/`` or ``s/``).
        rate: ``(amount, unit)``: also report ``amount / median_seconds``
            (``(2 * n**3 / 1e9, "GFLOP/s")``).
        memory: a callable returning ``{metric: bytes}`` instead of a timing.
        repeats: timed runs (before the time budget cuts them short).
        warmup: untimed runs first (they also trigger compilation).
    """

    variant: str
    run: Callable[[], object] | None = None
    check: Callable[[], dict] | None = None
    per: tuple[float, str] | None = None
    rate: tuple[float, str] | None = None
    memory: Callable[[], dict] | None = None
    repeats: int | None = None
    warmup: int = 1
    note: str = ""
    extra: dict = field(default_factory=dict)


def load1() -> float:
    """The 1-minute load average (the machine is shared; a high value taints timings)."""
    return os.getloadavg()[0]


def time_case(case: Case, repeats: int, budget_s: float) -> dict:
    """Warm up, then time ``case.run`` ``repeats`` times (at least 3, stopping at ``budget_s``)."""
    load_before = load1()
    t0 = time.perf_counter()
    for _ in range(case.warmup):
        case.run()
    first = time.perf_counter() - t0
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats:
        t = time.perf_counter()
        case.run()
        times.append(time.perf_counter() - t)
        if len(times) >= 3 and time.perf_counter() - start > budget_s:
            break
    med = statistics.median(times)
    res = {
        "median_s": med,
        "min_s": min(times),
        "max_s": max(times),
        "n": len(times),
        "warmup_s": first,
        "load1": [load_before, load1()],
    }
    if case.per:
        scale = {"us": 1e6, "ms": 1e3, "s": 1.0}[case.per[1].split("/")[0]]
        res["per"] = {"value": med / case.per[0] * scale, "unit": case.per[1]}
    if case.rate:
        res["rate"] = {"value": case.rate[0] / med, "unit": case.rate[1]}
    return res


# --- Memory probes -------------------------------------------------------------------------------
# Linux keeps a per-process high-water mark of the resident set (VmHWM) that can be reset by
# writing "5" to /proc/self/clear_refs, so the peak of one computation can be read for any
# framework, including those whose allocations Python's tracemalloc cannot see.


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def rss_peak_delta(fn: Callable[[], object]) -> int | None:
    """Bytes by which the peak resident set size rose above the current one while ``fn`` ran."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status_kib("VmRSS")
    except OSError:
        return None
    fn()
    return max(_status_kib("VmHWM") - base, 0) * 1024  # page accounting can dip just below the base


def compare(ref: dict, got: dict, rtol: float) -> tuple[bool, float]:
    """Largest error of ``got`` against ``ref``, relative to the largest magnitude in ``ref``."""
    import numpy as np

    worst = 0.0
    for key, r in ref.items():
        if key not in got:
            return False, float("inf")
        r = np.asarray(r, dtype=np.float64)
        g = np.asarray(got[key], dtype=np.float64)
        if r.shape != g.shape:
            return False, float("inf")
        scale = max(float(np.max(np.abs(r))) if r.size else 0.0, 1e-30)
        err = float(np.max(np.abs(r - g))) / scale if r.size else 0.0
        if not np.isfinite(err):
            err = float("inf")
        worst = max(worst, err)
    return worst <= rtol, worst
