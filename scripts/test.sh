#!/usr/bin/env bash
# Creates .venv (if missing), installs kiln with its test dependencies, checks the import
# contract, runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e ".[test]"
export KILN_CHECK=1
# Two pytest workers on two cores: one BLAS thread each avoids oversubscription.
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# The floors' contract (pyproject.toml [tool.importlinter]): a back edge fails before any test runs.
.venv/bin/lint-imports
exec .venv/bin/python -m pytest -n 2 "$@"
