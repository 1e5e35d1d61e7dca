"""Typical MLX training scripts, unmodified, run on kiln through ``python -m kiln.run`` and learn."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = os.path.join(REPO, "tests", "mlx_programs")


def run(script, *args, real_mlx=False):
    env = dict(os.environ, PYTHONPATH=REPO, OPENBLAS_NUM_THREADS="1")
    cmd = [sys.executable, os.path.join(PROGRAMS, script), *args]
    if not real_mlx:
        cmd[1:1] = ["-m", "kiln.run"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def numbers(text, *keys):
    return [float(re.search(rf"{k} ([-\d.]+)", text).group(1)) for k in keys]


def test_mlp_script_learns():
    (acc,) = numbers(run("mlp_mnist_style.py"), "FINAL")
    assert acc > 0.9


@pytest.mark.skipif(importlib.util.find_spec("mlx") is None, reason="real MLX not installed")
def test_mlp_script_matches_real_mlx():
    # Same script, same seeds: kiln's random numbers and arithmetic follow MLX's,
    # so the two runs end at nearly the same accuracy.
    (k,) = numbers(run("mlp_mnist_style.py", "--epochs", "2"), "FINAL")
    (m,) = numbers(run("mlp_mnist_style.py", "--epochs", "2", real_mlx=True), "FINAL")
    assert abs(k - m) < 0.02


def test_cnn_batchnorm_script_learns():
    first, last, acc = numbers(run("cnn_batchnorm.py"), "FIRST", "LAST", "ACC")
    assert last < 0.2 * first and acc > 0.9


def test_transformer_lm_script_learns():
    first, last, uniform = numbers(run("transformer_lm.py"), "FIRST", "LAST", "UNIFORM")
    assert first > 0.8 * uniform and last < 0.3 * first
