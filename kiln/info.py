"""What kiln finds on this machine: ``python -m kiln.info``.

Prints kiln's version, the devices found, the backends and the kernels
available to ``mx.compile`` (fused or not), and which optional extras are
installed. Every query here is defensive: a missing or broken optional
package is reported, never raised, so the command works on any install.

Kernel generators are found, not listed: any module of ``kiln.backend``
(other than the ``cpu`` and ``cuda`` backends) with a module-level
``enabled: bool`` is one. It may also set ``device`` (``"cpu"``, the
default, or ``"gpu"``: whose buffers its kernels run on), ``engine`` (the
name to print) and ``stats`` (a dict whose ``"built"`` counts the kernels it
has built). ``codegen`` (numexpr) is one today.
"""
from __future__ import annotations

import importlib
import importlib.util
import platform
import sys

import kiln

# The extras of pyproject.toml and the import names that tell whether each is installed.
EXTRAS = {
    "fast": ["numexpr"],
    "cuda": ["cupy"],
    "io": ["safetensors", "gguf"],
    "examples": ["tqdm", "sklearn"],
    "docs": ["mkdocs"],
}
# Packages kernels can be generated with (numexpr: fused CPU elementwise
# kernels; numba: compiled CPU kernels; CuPy: GPU kernels).
KERNEL_PACKAGES = ("numexpr", "numba", "cupy")
# Names of the kernel generators in kiln.backend, by module, where the module
# has no ``engine`` attribute of its own (others show as their module name).
ENGINE_NAMES = {"codegen": "numexpr"}
_labels: dict = {}


def package_version(name: str) -> str | None:
    """The version of an importable package, or None when it is not installed.

    Args:
        name: the import name (``"cupy"``, ``"sklearn"``).

    Returns:
        Its ``__version__`` (``"installed"`` when it has none), or None.
    """
    if importlib.util.find_spec(name) is None:
        return None
    try:
        mod = importlib.import_module(name)
    except Exception:  # installed but broken (e.g. CuPy without a driver)
        return None
    return str(getattr(mod, "__version__", "installed"))


def extras() -> dict:
    """Which optional extras are installed.

    Returns:
        ``{extra: True/False}``: True when every package of the extra is installed.
    """
    # find_spec only: importing scikit-learn or CuPy to answer this would take seconds.
    return {extra: all(importlib.util.find_spec(p) is not None for p in pkgs)
            for extra, pkgs in EXTRAS.items()}


def devices() -> list:
    """The devices kiln can run on, each as a dict.

    Returns:
        A list of ``{"device", "type", "name", "default"}`` dicts (``type``: ``"cpu"``
        or ``"gpu"``); the CPU is always there,
        the GPU when CuPy sees an NVIDIA GPU.
    """
    import kiln.core as mx

    default = mx.default_device()
    out = []
    for dtype in (mx.cpu, mx.gpu):
        if not mx.is_available(dtype):
            continue
        dev = mx.Device(dtype)
        try:
            name = mx.device_info(dev).get("device_name", "")
        except Exception:  # a device that is there but cannot describe itself
            name = ""
        out.append({"device": str(dev), "type": dtype.name, "name": name, "default": dev == default})
    return out


def backends() -> dict:
    """The array library behind each device type.

    Returns:
        ``{"cpu": "NumPy x.y", "gpu": "CuPy x.y" or why it is unavailable}``.
    """
    import numpy as np

    import kiln.core as mx

    cupy = package_version("cupy")
    if mx.is_available(mx.gpu):
        gpu = f"CuPy {cupy}"
    elif cupy is None:
        gpu = "not available (install the cuda extra: CuPy)"
    else:
        gpu = f"not available (CuPy {cupy} sees no GPU)"
    return {"cpu": f"NumPy {np.__version__}", "gpu": gpu}


def _compile_enabled() -> bool:
    # ``mx.compile``'s global switch (disable_compile, KILN_DISABLE_COMPILE);
    # read through the transform's module so a moved module only loses this line.
    import kiln.core as mx

    mod = sys.modules.get(getattr(mx.compile, "__module__", ""), None)
    flags = getattr(mod, "_flags", None)
    return bool(getattr(flags, "enabled", True))


def _fusion_engines() -> list:
    # Each module of kiln's backend that generates fused kernels says so with a
    # module-level ``enabled`` flag, with ``device`` ("cpu" unless it says
    # otherwise) which device's buffers its kernels run on, and optionally
    # with ``engine`` the name to show. codegen (numexpr) is one; others may
    # join without a change here.
    import pkgutil

    import kiln.backend as backend

    found = []
    for m in sorted(pkgutil.iter_modules(backend.__path__), key=lambda m: m.name):
        if m.name in ("cpu", "cuda"):
            continue
        try:
            mod = importlib.import_module(f"kiln.backend.{m.name}")
        except Exception:
            continue
        flag = getattr(mod, "enabled", None)
        if isinstance(flag, bool):
            label = getattr(mod, "engine", None)
            if isinstance(label, str):
                _labels[m.name] = label
            found.append((m.name, flag, str(getattr(mod, "device", "cpu"))))
    return found


def _device_name(device) -> str:
    import kiln.core as mx

    if device is None:
        device = mx.default_device()
    if isinstance(device, str):
        return device
    return getattr(getattr(device, "type", device), "name", str(device))


def kernels(device=None) -> dict:
    """What ``mx.compile`` can run: whether it is on and which kernel generators are usable.

    Args:
        device: the device asked about (a Device, a DeviceType, or ``"cpu"``/``"gpu"``);
            default: the default device.

    Returns:
        A dict with ``device`` (``"cpu"`` or ``"gpu"``), ``compile`` (bool: compilation
        enabled), ``fused`` (bool: a fused-kernel generator for that device is enabled),
        ``engines`` (``{module: enabled}`` for all of kiln's kernel generators),
        ``engine_devices`` (``{module: "cpu" or "gpu"}``) and ``packages``
        (``{package: version or None}`` for the kernel packages kiln can use).
    """
    dev = _device_name(device)
    found = _fusion_engines()
    on = _compile_enabled()
    return {
        "device": dev,
        "compile": on,
        "fused": on and any(enabled and d == dev for _, enabled, d in found),
        "engines": {name: enabled for name, enabled, _ in found},
        "engine_devices": {name: d for name, _, d in found},
        "packages": {p: package_version(p) for p in KERNEL_PACKAGES},
    }


def fused_kernels_built() -> int:
    """How many fused kernels kiln's generators have built in this process so far.

    Each generator that keeps a ``stats`` dict with a ``"built"`` count (codegen
    does) adds to it; compare the count before and after a compiled call to see
    whether that call's plan used fusion.

    Returns:
        The total count (0 when no generator keeps one).
    """
    import kiln.backend as backend

    total = 0
    for name, _, _ in _fusion_engines():
        stats = getattr(getattr(backend, name, None), "stats", None)
        if isinstance(stats, dict) and isinstance(stats.get("built"), int):
            total += stats["built"]
    return total


def describe_kernels(device=None) -> str:
    """One line saying which kernels compiled functions use on a device.

    Args:
        device: the device asked about; default: the default device.

    Returns:
        e.g. ``"compile on, elementwise fusion on the CPU: numexpr (where it measures
        faster)"``, or a line saying
        that compiled functions run unfused or that compilation is off.
    """
    k = kernels(device)
    if not k["compile"]:
        return "compile off (KILN_DISABLE_COMPILE or disable_compile): functions run eagerly"
    on = [_labels.get(name) or ENGINE_NAMES.get(name, name) for name, enabled in k["engines"].items()
          if enabled and k["engine_devices"][name] == k["device"]]
    where = "on the GPU" if k["device"] == "gpu" else "on the CPU"
    if on:
        # Generators fuse a chain only where it pays (codegen times numexpr
        # against NumPy once per process), so "available" is not "used":
        # fused_kernels_built() tells what a call actually built.
        return f"compile on, elementwise fusion {where}: {', '.join(on)} (where it measures faster)"
    ops = "CuPy" if k["device"] == "gpu" else "NumPy"
    return f"compile on, unfused {where}: {ops} ops one by one in a generated replay function"


def report() -> str:
    """The whole report ``python -m kiln.info`` prints.

    Returns:
        A multi-line string.
    """
    lines = [f"kiln {kiln.__version__} (Python {platform.python_version()}, {platform.machine()})", "",
             "devices:"]
    for d in devices():
        mark = "  (default)" if d["default"] else ""
        lines.append(f"  {d['device']}: {d['name'] or '-'}{mark}")
    lines += ["", "backends:"]
    lines += [f"  {k}: {v}" for k, v in backends().items()]
    k = kernels()
    lines += ["", "kernels:"]
    lines += [f"  {d['device']}: {describe_kernels(d['type'])}" for d in devices()]
    lines.append("  kernel packages: " + ", ".join(f"{p} {v}" if v else f"{p} not installed"
                                                   for p, v in k["packages"].items()))
    lines += ["", "extras:"]
    lines += [f"  {e}: {'installed' if ok else 'not installed'}" for e, ok in extras().items()]
    return "\n".join(lines)


def main() -> int:
    """Print :func:`report`."""
    print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
