"""The example programs run and learn (the MLP example: at least 97% test
accuracy on the digits; the char transformer is the README's main job)."""
from __future__ import annotations

import os
import re
import runpy
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # On a small, shared CPU, OpenBLAS threads spinning against each other make
    # small matrix products 10-100x slower; one thread is fastest here.
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _run(capsys, monkeypatch, name, *args):
    monkeypatch.setattr(sys, "argv", [name, "--quiet", *args])
    runpy.run_path(os.path.join(EXAMPLES, name), run_name="__main__")
    return capsys.readouterr().out


def _accuracy(out):
    return float(re.search(r"Final test accuracy: ([\d.]+)%", out).group(1))


def test_digits_mlp_reaches_97_percent(capsys, monkeypatch):
    out = _run(capsys, monkeypatch, "digits_mlp.py")
    assert _accuracy(out) >= 97.0, out


def test_digits_cnn_learns(capsys, monkeypatch):
    out = _run(capsys, monkeypatch, "digits_cnn.py", "--epochs", "2")
    assert _accuracy(out) >= 90.0, out


def test_char_transformer_loss_falls(capsys, monkeypatch):
    out = _run(capsys, monkeypatch, "char_transformer.py", "--steps", "25", "--batch-size", "8",
               "--context", "24", "--dims", "32", "--layers", "1", "--sample-length", "10",
               "--max-chars", "20000")
    first = float(re.search(r"initial validation loss ([\d.]+)", out).group(1))
    last = float(re.search(r"final validation loss ([\d.]+)", out).group(1))
    assert last < first - 1.0, out
    assert "sample:\ndef " in out


@pytest.mark.skipif(not hasattr(__import__("kiln.core").core, "compile"), reason="no mx.compile")
def test_digits_mlp_without_compile_matches(capsys, monkeypatch):
    # The compiled and uncompiled steps train the same model from the same seed.
    a = _accuracy(_run(capsys, monkeypatch, "digits_mlp.py", "--epochs", "1"))
    b = _accuracy(_run(capsys, monkeypatch, "digits_mlp.py", "--epochs", "1", "--no-compile"))
    assert abs(a - b) <= 0.6
