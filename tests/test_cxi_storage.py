"""The CXI writer's filters: where a bitshuffle write costs twice what it could, it is said once
with the command that fixes it."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from peaknet_serve.cxi import storage
from peaknet_serve.cxi.config import CXIConfig

AVX2_CPU = "processor\t: 0\nflags\t\t: fpu sse2 ssse3 avx avx2 bmi2\n\nprocessor\t: 1\n"
OLD_CPU = "processor\t: 0\nflags\t\t: fpu sse2 ssse3 avx\n"


def built(monkeypatch: pytest.MonkeyPatch, *, avx2: bool) -> None:
    config = SimpleNamespace(build_config=SimpleNamespace(avx2=avx2))
    monkeypatch.setattr(storage.hdf5plugin, "get_config", lambda: config)


@pytest.mark.parametrize(
    ("build_avx2", "cpu", "slow"),
    [(False, AVX2_CPU, True), (True, AVX2_CPU, False), (False, OLD_CPU, False)],
)
def test_bitshuffle_is_slow_only_without_avx2_on_an_avx2_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, build_avx2: bool, cpu: str, slow: bool
) -> None:
    built(monkeypatch, avx2=build_avx2)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(cpu)
    assert storage.slow_bitshuffle(cpuinfo) is slow


def test_an_unreadable_cpuinfo_is_not_a_slow_bitshuffle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built(monkeypatch, avx2=False)
    assert storage.slow_bitshuffle(tmp_path / "missing") is False


def test_a_slow_bitshuffle_is_said_once_with_the_build_command(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(storage, "slow_bitshuffle", lambda: True)
    storage._note_bitshuffle_build.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger=storage.__name__):
            for compression in ("bitshuffle_lz4", "bitshuffle_zstd", "gzip", "bitshuffle_lz4"):
                storage.filters(CXIConfig(output_dir=".", compression=compression))
    finally:
        storage._note_bitshuffle_build.cache_clear()
    (record,) = caplog.records
    assert storage.AVX2_BUILD in record.getMessage()


def test_gzip_and_no_compression_never_look_at_bitshuffle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail() -> bool:
        raise AssertionError("bitshuffle looked at")

    monkeypatch.setattr(storage, "slow_bitshuffle", fail)
    storage._note_bitshuffle_build.cache_clear()
    try:
        assert storage.filters(CXIConfig(output_dir=".", compression="none")) == {}
        assert (
            storage.filters(CXIConfig(output_dir=".", compression="gzip"))["compression"] == "gzip"
        )
    finally:
        storage._note_bitshuffle_build.cache_clear()
