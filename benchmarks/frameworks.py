"""One small adapter per framework, so a workload can build, synchronise and read back arrays.

``kiln`` and ``mlx`` share the family ``"mlx"``: the same workload code runs on both, only the
imported package differs. Frameworks are imported lazily, inside the worker's own venv.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
from types import SimpleNamespace

import numpy as np

FRAMEWORKS = ("kiln", "mlx", "jax", "torch", "numpy")


def _versions(*mods: str) -> dict:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for m in mods:
        try:
            out[m] = importlib.metadata.version(m)
        except Exception:  # noqa: BLE001 - a version is informational only
            pass
    return out


def load(name: str, gpu: bool = False) -> SimpleNamespace:
    """Import framework ``name`` and return its adapter.

    The adapter has ``name``, ``family``, ``device`` (a string), ``versions``, ``sync(*trees)``
    (force evaluation and wait), ``to_numpy(x)``, and the framework's modules.
    """
    if name in ("kiln", "mlx"):
        mx = importlib.import_module(f"{name}.core")
        try:
            nn = importlib.import_module(f"{name}.nn")
            optim = importlib.import_module(f"{name}.optimizers")
        except ImportError:  # kiln grows these while the benchmarks are written
            nn = optim = None
        device = "cpu"
        if gpu:
            if not mx.cuda.is_available():
                raise RuntimeError(f"{name}: no GPU backend available")
            mx.set_default_device(mx.gpu)
            device = "gpu"
        else:
            mx.set_default_device(mx.cpu)
        return SimpleNamespace(
            name=name, family="mlx", mx=mx, nn=nn, optim=optim, device=device,
            versions=_versions("kiln" if name == "kiln" else "mlx", "numba"),
            sync=lambda *trees: mx.eval(*trees),
            to_numpy=lambda x: np.array(x),
            asarray=lambda a: mx.array(a),
        )
    if name == "jax":
        import jax

        jax.config.update("jax_platforms", "cuda" if gpu else "cpu")
        # On GPUs JAX multiplies float32 matrices in TF32 by default; kiln and
        # PyTorch use full float32, so ask JAX for the same arithmetic.
        jax.config.update("jax_default_matmul_precision", "highest")
        import jax.numpy as jnp

        dev = jax.devices()[0]

        def sync(*trees):
            for leaf in jax.tree_util.tree_leaves(trees):
                leaf.block_until_ready()

        return SimpleNamespace(
            name=name, family="jax", jax=jax, jnp=jnp, device=str(dev.platform),
            versions=_versions("jax", "jaxlib"), sync=sync,
            to_numpy=lambda x: np.asarray(x), asarray=lambda a: jax.device_put(jnp.asarray(a), dev),
        )
    if name == "torch":
        import torch

        dev = torch.device("cuda" if gpu else "cpu")
        if gpu and not torch.cuda.is_available():
            raise RuntimeError("torch: CUDA not available")

        def sync(*trees):
            if gpu:
                torch.cuda.synchronize()

        return SimpleNamespace(
            name=name, family="torch", torch=torch, dev=dev, device=str(dev),
            versions=_versions("torch") | {"threads": torch.get_num_threads()}, sync=sync,
            to_numpy=lambda x: x.detach().cpu().numpy(),
            asarray=lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dev),
        )
    if name == "numpy":
        if gpu:
            raise RuntimeError("numpy: CPU only")
        return SimpleNamespace(
            name=name, family="numpy", np=np, device="cpu", versions=_versions(),
            sync=lambda *trees: None, to_numpy=np.asarray, asarray=np.asarray,
        )
    raise ValueError(f"unknown framework {name!r}")
