#!/usr/bin/env bash
# Creates .venv (if missing), installs kiln with the example dependencies, and
# trains the character-level transformer example with mx.compile (on the GPU
# when CuPy and an NVIDIA GPU are present, else on the CPU): it prints the
# device, kernels and compile time, a progress bar, the validation loss and a
# generated sample. Extra arguments go to examples/char_transformer.py.
#
# With an NVIDIA GPU (nvidia-smi sees one) the cuda extra (CuPy) is installed
# too. KILN_SYSTEM_PYTHON=1 skips the venv and the installs and runs with
# $PYTHON (default python3) as it is, e.g. on a machine with no package index.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ "${KILN_SYSTEM_PYTHON:-0}" = "1" ]; then
    RUN=("$PY")
else
    if [ ! -x .venv/bin/python ]; then
        "$PY" -m venv .venv
    fi
    RUN=(.venv/bin/python)
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        .venv/bin/python -m pip install -q -e ".[examples,fast,cuda]" \
            || { echo "train.sh: could not install CuPy; running on the CPU" >&2;
                 .venv/bin/python -m pip install -q -e ".[examples,fast]"; }
    else
        .venv/bin/python -m pip install -q -e ".[examples,fast]"
    fi
fi
# On a small CPU, BLAS threads competing for the cores slow this model's small
# matrix products down; one thread is fastest there (the GPU path ignores it).
if [ "$(nproc 2>/dev/null || echo 1)" -le 4 ]; then
    export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
exec "${RUN[@]}" examples/char_transformer.py "$@"
