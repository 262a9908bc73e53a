"""The package's public surface and its promise not to import Ray."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import peaknet_serve


def test_public_names_are_exported() -> None:
    for name in peaknet_serve.__all__:
        assert hasattr(peaknet_serve, name), name


def test_library_does_not_import_ray() -> None:
    code = (
        "import sys, peaknet_serve, peaknet_serve.cli\n"
        "peaknet_serve.cli.build_parser()\n"
        "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ray'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_library_names_no_deployment_and_finds_run_through_its_entry_point() -> None:
    """``run`` needs Ray, so it lives in deployments/; the CLI learns of it from the installed
    distribution's entry points, never from an import in the library."""
    from deployments import launcher
    from peaknet_serve import cli

    src = Path(peaknet_serve.__file__).parent
    naming = [
        f"{path.relative_to(src)}:{n}"
        for path in src.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\b(from|import) deployments\b|[\"']deployments\.", line)
    ]
    assert naming == []
    assert cli.subcommand_modules()["run"] == "deployments.launcher"
    parser = cli.build_parser()
    assert parser.parse_args(["run", "serve_config.yaml"]).run is launcher.run


def test_errors_share_one_base() -> None:
    for name in ("CheckpointError", "ConfigError", "DecodeError", "WriterError"):
        assert issubclass(getattr(peaknet_serve, name), peaknet_serve.PeakNetServeError)
