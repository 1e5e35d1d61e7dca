"""``python -m kiln``: ``--version`` prints the version, ``--info`` what :mod:`kiln.info` reports."""
from __future__ import annotations

import argparse
import sys

import kiln


def main(argv=None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and act on it.

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m kiln",
                                     description="kiln: MLX's Python API on NumPy and CuPy.",
                                     epilog="Run an MLX program: python -m kiln.run script.py [args]")
    parser.add_argument("--version", action="version", version=f"kiln {kiln.__version__}")
    parser.add_argument("--info", action="store_true", help="devices, backends, kernels and extras found")
    args = parser.parse_args(argv)
    if args.info:
        from kiln import info

        return info.main()
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
