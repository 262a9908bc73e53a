#!/usr/bin/env bash
# The test command: set up (or reuse) .venv, install the project with its test extras, run pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -k wire -x
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-env.sh
exec "$PY" -m pytest "$@"
