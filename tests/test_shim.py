"""The MLX shim: ``python -m kiln.run`` and ``kiln.mlx_shim.install()`` make
MLX programs import kiln, leaving other ``mlx.*`` packages alone."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

import kiln.core
import kiln.nn
from kiln import mlx_shim

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent('''
    import sys
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx.utils import tree_flatten

    print("modules", mx.__name__, nn.__name__, optim.__name__, "args", *sys.argv[1:])
    mx.random.seed(0)
    model = nn.Linear(3, 1)
    x = mx.random.normal((32, 3))
    y = x.sum(axis=1, keepdims=True)
    opt = optim.SGD(learning_rate=0.1)
    loss_and_grad = nn.value_and_grad(model, lambda: nn.losses.mse_loss(model(x), y))
    first = None
    for _ in range(40):
        loss, grads = loss_and_grad()
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state)
        first = first if first is not None else loss.item()
    print("loss", first, loss.item(), len(tree_flatten(model.parameters())))
''')


@pytest.fixture
def shim():
    mlx_shim.install()
    try:
        yield
    finally:
        mlx_shim.uninstall()


def test_install_redirects_imports(shim):
    import mlx
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers
    import mlx.utils
    from mlx.nn.layers.base import Module

    assert mx is kiln.core and nn is kiln.nn and mlx.core is kiln.core
    assert mlx.optimizers.__name__ == "kiln.optimizers" and mlx.utils.__name__ == "kiln.utils"
    assert Module is kiln.nn.Module
    assert kiln.core.__spec__.name == "kiln.core"
    assert isinstance(mx.array([1.0]), kiln.core.array)
    mlx_shim.install()  # idempotent
    assert mlx_shim.installed()


@pytest.mark.skipif(importlib.util.find_spec("mlx") is None, reason="real mlx not installed")
def test_other_mlx_packages_left_alone(shim):
    import mlx._reprlib_fix as other

    assert "kiln" not in other.__file__ and os.path.join("mlx", "_reprlib_fix") in other.__file__


def test_uninstall_restores():
    before = sys.modules.get("mlx.core")
    mlx_shim.install()
    mlx_shim.uninstall()
    assert not mlx_shim.installed()
    assert sys.modules.get("mlx.core") is before


def test_run_script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, "-m", "kiln.run", str(path), "a", "--b"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert lines["modules"] == "kiln.core kiln.nn kiln.optimizers args a --b"
    first, last, count = lines["loss"].split()
    assert float(last) < 0.01 * float(first) and count == "2"


def test_run_usage():
    from kiln import run

    assert run.main([]) == 2
