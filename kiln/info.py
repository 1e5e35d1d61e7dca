"""What kiln finds on this machine: ``python -m kiln.info``.

Prints kiln's version, the devices found, the backends and the kernels
available to ``mx.compile`` (fused or not), and which optional extras are
installed. Every query here is defensive: a missing or broken optional
package is reported, never raised, so the command works on any install.
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
# Packages kiln can generate kernels with, and what each is for.
KERNEL_PACKAGES = {
    "numexpr": "fused CPU elementwise kernels",
    "numba": "compiled CPU kernels",
    "cupy": "GPU kernels",
}
# Names of the kernel generators in kiln.backend, by module (others show as their module name).
ENGINE_NAMES = {"codegen": "numexpr"}


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
        A list of ``{"device", "name", "default"}`` dicts; the CPU is always there,
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
        out.append({"device": str(dev), "name": name, "default": dev == default})
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
    # module-level ``enabled`` flag (codegen for numexpr; others may join).
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
            found.append((m.name, flag))
    return found


def kernels() -> dict:
    """What ``mx.compile`` can run: whether it is on and which kernel generators are usable.

    Returns:
        A dict with ``compile`` (bool: compilation enabled), ``fused`` (bool: some
        fused-kernel generator is enabled), ``engines`` (``{module: enabled}`` for
        kiln's kernel generators) and ``packages`` (``{package: version or None}``
        for the kernel packages kiln can use).
    """
    engines = dict(_fusion_engines())
    return {
        "compile": _compile_enabled(),
        "fused": _compile_enabled() and any(engines.values()),
        "engines": engines,
        "packages": {p: package_version(p) for p in KERNEL_PACKAGES},
    }


def describe_kernels() -> str:
    """One line saying which kernels compiled functions use here.

    Returns:
        e.g. ``"compile on, fused kernels: codegen (numexpr 2.14)"`` or
        ``"compile on, unfused (NumPy ops one by one)"``.
    """
    k = kernels()
    if not k["compile"]:
        return "compile off (KILN_DISABLE_COMPILE or disable_compile): functions run eagerly"
    on = [ENGINE_NAMES.get(name, name) for name, enabled in k["engines"].items() if enabled]
    if on:
        return f"compile on, fused elementwise kernels: {', '.join(on)}"
    return "compile on, unfused: primitives run one by one in a generated replay function"


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
    lines += ["", "kernels:", f"  {describe_kernels()}"]
    for p, what in KERNEL_PACKAGES.items():
        v = k["packages"][p]
        lines.append(f"  {p}: {v if v else 'not installed'} ({what})")
    lines += ["", "extras:"]
    lines += [f"  {e}: {'installed' if ok else 'not installed'}" for e, ok in extras().items()]
    return "\n".join(lines)


def main() -> int:
    """Print :func:`report`."""
    print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
