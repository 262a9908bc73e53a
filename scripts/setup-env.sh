# Sourced by scripts/test.sh and scripts/demo.sh: create (or reuse) the virtual environment and
# install the project with its test extras. Sets PY to the environment's python.
VENV="${PEAKNET_SERVE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip
# A plain "torch" requirement pulls a multi-GB CUDA build; a CPU build of 2.13.0 is at hand here.
# Any torch >= 2.4 that is already installed is kept.
if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -e ".[test]"
export PATH="$(cd "$VENV/bin" && pwd):$PATH"
# Ray >= 2.59 turns on token auth by default; a single-user demo or test cluster needs none.
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
