"""The README's main job: scripts/train.sh runs the char transformer example,
which reports its device, kernels and compile time (tests/test_examples.py
checks that it learns)."""
from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys

import pytest

import kiln.core as mx
from kiln import info

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "char_transformer.py")
TINY = ["--quiet", "--steps", "6", "--batch-size", "4", "--context", "16", "--dims", "16", "--layers", "1",
        "--sample-length", "5", "--max-chars", "5000", "--eval-batches", "1"]


def _run(capsys, monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["char_transformer.py", *TINY, *args])
    runpy.run_path(SCRIPT, run_name="__main__")
    return capsys.readouterr().out


def test_train_sh_runs_the_char_transformer_with_its_extras():
    with open(os.path.join(ROOT, "scripts", "train.sh"), encoding="utf-8") as f:
        text = f.read()
    assert re.search(r"^exec .*examples/char_transformer\.py \"\$@\"$", text, re.M)
    assert '".[examples,fast]"' in text


def test_train_sh_runs_end_to_end():
    # KILN_SYSTEM_PYTHON=1: this interpreter, no venv or installs (those need a package index).
    env = dict(os.environ, KILN_SYSTEM_PYTHON="1", PYTHON=sys.executable)
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "train.sh"), *TINY], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    for line in ("device: ", "kernels: ", "compile: ", "initial validation loss", "final validation loss",
                 "sample:\n"):
        assert line in r.stdout, r.stdout


@pytest.fixture
def compile_on():
    mx.enable_compile()
    yield
    mx.enable_compile()


def test_reports_device_kernels_and_compile_time(capsys, monkeypatch, compile_on):
    out = _run(capsys, monkeypatch)
    assert re.search(rf"^device: {re.escape(str(mx.default_device()))}", out, re.M), out
    assert f"\nkernels: {info.describe_kernels()}\n" in out
    m = re.search(r"^compile: ([\d.]+) s, (\d+) fused kernels built \(first step ([\d.]+) s, "
                  r"then ([\d.]+) ms per step\)$", out, re.M)
    assert m, out
    assert float(m.group(1)) <= float(m.group(3))
    assert re.search(r"^final validation loss [\d.]+ after 6 steps \([\d.]+ s, [\d,]+ tokens/s\)$", out, re.M)


def test_no_compile_says_so(capsys, monkeypatch, compile_on):
    out = _run(capsys, monkeypatch, "--no-compile")
    assert "\nkernels: not compiled (--no-compile)" in out
    assert "\ncompile:" not in out


def test_kernels_line_follows_the_global_switch(capsys, monkeypatch, compile_on):
    mx.disable_compile()
    out = _run(capsys, monkeypatch)
    assert "\nkernels: compile off" in out
