#!/usr/bin/env bash
# Creates .venv (if missing), installs kiln with the example dependencies,
# and trains the digits MLP example, printing its progress and test accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q -e ".[examples,fast]"
exec .venv/bin/python examples/digits_mlp.py "$@"
