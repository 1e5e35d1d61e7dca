"""Make ``import mlx.core`` (and ``mlx.nn``, ``mlx.optimizers``,
``mlx.utils``) resolve to kiln, so unmodified MLX programs run on kiln.

Usage::

    import kiln.mlx_shim
    kiln.mlx_shim.install()
    import mlx.core as mx        # this is kiln.core

or run a script under the shim with ``python -m kiln.run script.py``.

Only those four packages (and their submodules) are redirected; any other
``mlx.*`` package that is installed (say ``mlx.data``) still imports from its
own location, because the stand-in ``mlx`` package keeps the real one's
search path.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

__all__ = ["install", "uninstall", "installed"]

# mlx package name -> kiln module that serves it.
_REDIRECTS = {
    "mlx.core": "kiln.core",
    "mlx.nn": "kiln.nn",
    "mlx.optimizers": "kiln.optimizers",
    "mlx.utils": "kiln.utils",
}

_saved: dict = {}
_finder = None


def _target(fullname: str):
    """The kiln module name serving ``fullname``, or None."""
    for prefix, target in _REDIRECTS.items():
        if fullname == prefix or fullname.startswith(prefix + "."):
            return target + fullname[len(prefix):]
    return None


class _AliasLoader(importlib.abc.Loader):
    """Loads an ``mlx.*`` name by returning the already-imported kiln module."""

    def __init__(self, target: str):
        self.target = target
        self._spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._spec = getattr(module, "__spec__", None)
        return module

    def exec_module(self, module):
        # The import system stamped the alias spec on the shared module;
        # give kiln's module its own spec back.
        if self._spec is not None:
            module.__spec__ = self._spec


class _Finder(importlib.abc.MetaPathFinder):
    """Meta-path finder that answers for the redirected ``mlx.*`` names."""

    def find_spec(self, fullname, path=None, target=None):
        kiln_name = _target(fullname)
        if kiln_name is None:
            return None
        if importlib.util.find_spec(kiln_name) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(kiln_name))


def _stand_in_package(real_path):
    pkg = types.ModuleType("mlx", "kiln standing in for mlx (see kiln.mlx_shim).")
    pkg.__path__ = list(real_path)
    pkg.__kiln_shim__ = True
    return pkg


def installed() -> bool:
    """Whether the shim is active."""
    return _finder is not None


def install() -> None:
    """Redirect ``mlx.core``, ``mlx.nn``, ``mlx.optimizers`` and ``mlx.utils``
    to kiln for every later import (idempotent)."""
    global _finder
    if _finder is not None:
        return
    # Keep the real package's search path so other mlx.* packages still load.
    real_path = []
    real = sys.modules.get("mlx")
    if real is not None and not getattr(real, "__kiln_shim__", False):
        real_path = list(getattr(real, "__path__", []))
    else:
        try:
            spec = importlib.util.find_spec("mlx")
            real_path = list(spec.submodule_search_locations or []) if spec else []
        except (ImportError, ValueError):
            real_path = []
    # Remember (and drop) any real mlx modules already imported.
    for name in list(sys.modules):
        if name == "mlx" or _target(name) is not None:
            _saved[name] = sys.modules.pop(name)
    pkg = _stand_in_package(real_path)
    sys.modules["mlx"] = pkg
    _finder = _Finder()
    sys.meta_path.insert(0, _finder)
    for alias, target in _REDIRECTS.items():
        module = importlib.import_module(target)
        sys.modules[alias] = module
        setattr(pkg, alias.split(".", 1)[1], module)
    # Alias every kiln submodule already loaded (mlx.nn.layers, mlx.core.random, ...).
    for name, module in list(sys.modules.items()):
        for alias, target in _REDIRECTS.items():
            if name.startswith(target + "."):
                sys.modules[alias + name[len(target):]] = module


def uninstall() -> None:
    """Undo :func:`install`, restoring any real ``mlx`` modules it displaced."""
    global _finder
    if _finder is None:
        return
    sys.meta_path.remove(_finder)
    _finder = None
    for name in list(sys.modules):
        if name == "mlx" or _target(name) is not None:
            del sys.modules[name]
    sys.modules.update(_saved)
    _saved.clear()
