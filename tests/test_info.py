"""kiln.__version__, ``python -m kiln --version`` and ``python -m kiln.info``."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import kiln
import kiln.core as mx
from kiln import info
from kiln.backend import codegen

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject() -> str:
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        return f.read()


def _python(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120)


def test_version_matches_pyproject():
    declared = re.search(r'^version = "([^"]+)"', _pyproject(), re.M).group(1)
    assert kiln.__version__ == declared


def test_module_version_flag():
    r = _python("-m", "kiln", "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"kiln {kiln.__version__}"


@pytest.mark.parametrize("args", [["-m", "kiln.info"], ["-m", "kiln", "--info"]])
def test_info_command_prints_every_section(args):
    r = _python(*args)
    assert r.returncode == 0, r.stderr
    for section in ("devices:", "backends:", "kernels:", "extras:"):
        assert f"\n{section}\n" in r.stdout, r.stdout
    assert f"kiln {kiln.__version__}" in r.stdout
    assert f"NumPy {np.__version__}" in r.stdout


def test_devices_mark_the_default_once():
    found = info.devices()
    assert [d["device"] for d in found if d["default"]] == [str(mx.default_device())]
    assert found[0]["device"] == str(mx.Device(mx.cpu))
    assert any(d["device"] == str(mx.Device(mx.gpu)) for d in found) == mx.is_available(mx.gpu)


def test_backends_say_why_the_gpu_is_missing():
    b = info.backends()
    assert b["cpu"] == f"NumPy {np.__version__}"
    if mx.is_available(mx.gpu):
        assert b["gpu"].startswith("CuPy ")
    else:
        assert b["gpu"].startswith("not available (")


def test_extras_are_the_pyproject_extras():
    declared = set(re.findall(r"^(\w+) = \[", _pyproject().split("[project.optional-dependencies]")[1]
                              .split("\n[")[0], re.M))
    assert set(info.EXTRAS) <= declared
    got = info.extras()
    # numpy-only packages answer the same way through both queries
    assert got["fast"] == (info.package_version("numexpr") is not None)


def test_package_version():
    assert info.package_version("numpy") == np.__version__
    assert info.package_version("no_such_package_kiln_test") is None


def test_kernels_follow_the_compile_switch():
    on = info.kernels()
    assert on["compile"] is True
    assert on["engines"].get("codegen") == codegen.enabled
    mx.disable_compile()
    try:
        off = info.kernels()
        assert off["compile"] is False and off["fused"] is False
        assert info.describe_kernels().startswith("compile off")
    finally:
        mx.enable_compile()
    assert info.kernels()["compile"] is True


def test_kernels_report_fusion_switched_off(monkeypatch):
    monkeypatch.setattr(codegen, "enabled", False)
    k = info.kernels()
    assert k["engines"]["codegen"] is False
    assert k["fused"] is any(v for name, v in k["engines"].items() if name != "codegen")
    if not k["fused"]:
        assert "unfused" in info.describe_kernels()


@pytest.mark.skipif(not codegen.enabled, reason="numexpr is not installed")
def test_kernels_report_numexpr_fusion():
    assert info.kernels()["fused"] is True
    assert "numexpr" in info.describe_kernels()


def test_kernels_are_per_device(monkeypatch):
    # codegen's numexpr kernels run on CPU buffers: they do not make GPU work fused.
    assert info.kernels("cpu")["fused"] is codegen.enabled
    gpu = info.kernels("gpu")
    assert gpu["device"] == "gpu"
    assert gpu["fused"] is any(on and gpu["engine_devices"][n] == "gpu" for n, on in gpu["engines"].items())
    if not gpu["fused"]:
        assert info.describe_kernels("gpu").startswith("compile on, unfused on the GPU: CuPy ops")
    # A generator that declares device = "gpu" counts for the GPU only.
    fake = [("codegen", False, "cpu"), ("gpufuse", True, "gpu")]
    monkeypatch.setattr(info, "_fusion_engines", lambda: fake)
    assert info.kernels("gpu")["fused"] and not info.kernels("cpu")["fused"]
    assert info.describe_kernels("gpu") == ("compile on, elementwise fusion on the GPU: gpufuse "
                                            "(where it measures faster)")
    assert info.describe_kernels(mx.Device(mx.cpu)).startswith("compile on, unfused on the CPU: NumPy ops")


def test_kernel_lines_name_every_device():
    text = info.report()
    for d in info.devices():
        assert f"  {d['device']}: {info.describe_kernels(d['type'])}" in text


@pytest.mark.skipif(not codegen.enabled, reason="numexpr is not installed")
def test_fused_kernels_built_counts_new_kernels(monkeypatch):
    monkeypatch.setattr(codegen, "calibrate", False)  # fuse whatever numexpr can, fast or not
    monkeypatch.setattr(codegen, "_kernels", {})  # an empty kernel cache: the kernel must be built
    before = info.fused_kernels_built()
    # One elementwise chain on an array large enough to be fused.
    f = mx.compile(lambda x: (x * 3.25 + 1.75) * x - 0.125)
    x = mx.random.uniform(shape=(1 << 13,))
    mx.eval(f(x))
    assert info.fused_kernels_built() == before + 1
    mx.eval(f(x))
    assert info.fused_kernels_built() == before + 1  # replayed, not rebuilt
