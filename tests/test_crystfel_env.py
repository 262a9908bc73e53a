"""scripts/test.sh's CrystFEL step (scripts/crystfel-env.sh) against a stand-in build.sh: it
builds from ../shared where it can, puts the programs on PATH, and stops when the build fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "crystfel-env.sh"
STAND_IN = """#!/usr/bin/env bash
echo "$@" >> "$(dirname "$0")/calls"
{fail}
mkdir -p "$1/bin" && printf '#!/bin/sh\\necho indexamajig 0.11.1\\n' > "$1/bin/indexamajig"
chmod +x "$1/bin/indexamajig"
"""

pytestmark = pytest.mark.skipif(
    (os.geteuid() != 0 or shutil.which("apt-get") is None) and not os.environ.get("CI"),
    reason="the CrystFEL build runs as root with apt-get only (as in CI)",
)


def _source(tmp_path: Path, *, fail: bool) -> tuple[subprocess.CompletedProcess, Path]:
    repo, build = tmp_path / "repo", tmp_path / "shared" / "crystfel" / "build.sh"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "scripts")
    build.parent.mkdir(parents=True)
    build.write_text(STAND_IN.format(fail="echo compiler broke; exit 3" if fail else ""))
    build.chmod(0o755)
    prefix = tmp_path / "prefix"
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail; source scripts/crystfel-env.sh; indexamajig"],
        cwd=repo, env=dict(os.environ, CRYSTFEL_PREFIX=str(prefix)),
        capture_output=True, text=True, check=False, timeout=60,
    )
    return result, build.parent / "calls"


def test_the_ci_step_builds_crystfel_from_shared_and_puts_it_on_path(tmp_path) -> None:
    result, calls = _source(tmp_path, fail=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "indexamajig 0.11.1"
    assert calls.read_text().split() == [str(tmp_path / "prefix")]


def test_a_failed_build_stops_the_tests_with_its_log(tmp_path) -> None:
    result, _ = _source(tmp_path, fail=True)
    assert result.returncode == 1 and "compiler broke" in result.stdout
