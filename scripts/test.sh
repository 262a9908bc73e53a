#!/usr/bin/env bash
# The test command: set up (or reuse) .venv, install the project with its test extras, run pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -k wire -x
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-env.sh
# The live-page browser test drives Debian's Chromium; the Slurm script is checked by
# shellcheck. Install both where this can (root with apt-get); elsewhere those tests are skipped,
# except under CI, where they fail.
if ! { [ -x /usr/bin/chromium ] && command -v shellcheck >/dev/null; } \
        && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq chromium shellcheck > /dev/null
fi
# The real CrystFEL, built from ../shared where this can, on PATH (scripts/crystfel-env.sh).
# shellcheck source=scripts/crystfel-env.sh
source scripts/crystfel-env.sh
# The real LCLStreamer (main and 0.3) for the producer tests, from the archives in ../shared.
LCLSTREAMER_SETUP=../shared/lclstreamer/setup.sh
if [ "$(id -u)" = 0 ] && [ -x "$LCLSTREAMER_SETUP" ]; then
    "$LCLSTREAMER_SETUP" > /dev/null
fi
exec "$PY" -m pytest "$@"
