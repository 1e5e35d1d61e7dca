#!/usr/bin/env bash
# Creates .venv (if missing), installs kiln with the example dependencies, and
# trains the character-level transformer example with mx.compile (on the GPU
# when CuPy and an NVIDIA GPU are present, else on the CPU): it prints the
# device, kernels and compile time, a progress bar, the validation loss and a
# generated sample. Extra arguments go to examples/char_transformer.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q -e ".[examples,fast]"
# On a small CPU, BLAS threads competing for the cores slow this model's small
# matrix products down; one thread is fastest there (the GPU path ignores it).
if [ "$(nproc 2>/dev/null || echo 1)" -le 4 ]; then
    export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
exec .venv/bin/python examples/char_transformer.py "$@"
