"""The package's public surface and its promise not to import Ray."""

from __future__ import annotations

import subprocess
import sys

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


def test_errors_share_one_base() -> None:
    for name in ("CheckpointError", "ConfigError", "DecodeError", "WriterError"):
        assert issubclass(getattr(peaknet_serve, name), peaknet_serve.PeakNetServeError)
