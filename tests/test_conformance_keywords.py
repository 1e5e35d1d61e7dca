"""Keyword acceptance over the whole namespace, checked against the real MLX itself.

MLX's docstrings mark some arguments positional-only that MLX accepts by keyword all the same
(``mx.roll(x, 1, axis=1)``). For every function of ``kiln.core`` and its submodules with
positional-only parameters, each such parameter is passed by keyword (the ones before it
positionally, from a table of sample values by parameter name) to the real MLX; where MLX
accepts the call, kiln must not refuse it with a TypeError.
"""
from __future__ import annotations

import inspect

import pytest

import kiln.core as kmx

rmx = pytest.importorskip("mlx.core", reason="the real MLX is the oracle of this test")


def _samples(m):
    x = m.ones((2, 3)) * 0.5
    return {
        "a": x, "x": x, "b": x, "array": x, "arr": x, "y": x, "v": x, "values": x,
        "condition": x > 0, "indices": m.array([0, 1]), "arrays": [x, x],
        "shift": 1, "axis": 1, "axes": (0, 1), "axis1": 0, "axis2": 1, "k": 1, "kth": 1, "n": 1,
        "shape": (3, 2), "dtype": m.float32, "keepdims": True, "decimals": 1,
        "indices_or_sections": 1, "repeats": 2, "reps": (1, 2), "source": 0, "destination": 1,
        "offset": 0, "start": 0, "stop": 1, "step": 1, "min": 0, "max": 1, "a_min": 0, "a_max": 1,
        "pad_width": 1, "ddof": 0, "num": 3, "p": 2, "val": 1.0, "vals": 1.0,
    }


def _cases():
    for sub in (None, "linalg", "fft", "random", "fast"):
        km = kmx if sub is None else getattr(kmx, sub)
        rm = rmx if sub is None else getattr(rmx, sub)
        for name in sorted(dir(km)):
            kf, rf = getattr(km, name, None), getattr(rm, name, None)
            if name.startswith("_") or rf is None or not callable(kf) or inspect.isclass(kf):
                continue
            try:
                sig = inspect.signature(kf)
            except (TypeError, ValueError):
                continue
            params = [p for p in sig.parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            for i, p in enumerate(params):
                if p.kind is p.POSITIONAL_ONLY:
                    before = [q.name for q in params[:i] if q.default is q.empty]
                    yield pytest.param(sub, name, before, p.name, id=f"{sub or 'mx'}.{name}({p.name}=)")


_NAMES = set(_samples(kmx))
CASES = [c for c in _cases() if set(c.values[2] + [c.values[3]]) <= _NAMES]  # those with samples


def test_the_scan_covers_the_namespace():
    # A scan that finds nothing to check could not fail; the namespace has many such parameters.
    assert len(CASES) > 50


@pytest.mark.parametrize("sub,name,before,kw", CASES)
def test_keyword_accepted_where_mlx_accepts_it(sub, name, before, kw):
    rs, ks = _samples(rmx), _samples(kmx)
    rf = getattr(rmx if sub is None else getattr(rmx, sub), name)
    kf = getattr(kmx if sub is None else getattr(kmx, sub), name)
    try:
        rf(*[rs[n] for n in before], **{kw: rs[kw]})
    except Exception:  # noqa: BLE001 - MLX refuses this call: nothing to match
        return
    try:
        kf(*[ks[n] for n in before], **{kw: ks[kw]})
    except TypeError as e:
        pytest.fail(f"MLX accepts {name}({kw}=...) by keyword, kiln refuses it: {e}")
    except Exception:  # noqa: BLE001 - a value error of the sample is not a signature mismatch
        pass
