"""Run an MLX program on kiln: ``python -m kiln.run script.py [args...]``
or ``python -m kiln.run -m package.module [args...]``;
``python -m kiln.run -m mlx.launch -n 2 script.py`` starts an MLX program on
several processes through :mod:`kiln.launch`.

The script sees ``sys.argv`` as if it had been run directly, and its
``import mlx.core as mx`` (``mlx.nn``, ``mlx.optimizers``, ``mlx.utils``)
gets kiln (see :mod:`kiln.mlx_shim`).
"""
from __future__ import annotations

import os
import runpy
import sys

from kiln import mlx_shim

USAGE = "usage: python -m kiln.run script.py [args...]\n       python -m kiln.run -m module [args...]"


def main(argv=None) -> int:
    """Run the program named in ``argv`` (default ``sys.argv[1:]``) under the shim.

    Returns:
        The exit status (0 unless the usage is wrong).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    mlx_shim.install()
    if argv[0] == "-m":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        if argv[1] == "mlx.launch":  # MLX's launcher: kiln's, with the programs under the shim
            from kiln import launch
            return launch.main(["--mlx", *argv[2:]])
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        return 0
    script = argv[0]
    sys.argv = [script, *argv[1:]]
    # As when running ``python script.py``: the script's folder comes first.
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
