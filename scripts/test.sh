#!/usr/bin/env bash
# The test command: set up (or reuse) .venv, install the project with its test extras, run pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -k wire -x
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${PEAKNET_SERVE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip
# A plain "torch" requirement pulls a multi-GB CUDA build; a CPU build of 2.13.0 is at hand.
if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -e ".[test]"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
exec "$PY" -m pytest "$@"
