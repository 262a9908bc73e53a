"""CPU affinity: cores near a GPU from sample `nvidia-smi topo -m` text and a fake sysfs tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from peaknet_serve.engine.affinity import (
    choose_cpus,
    cpus_from_sysfs,
    format_cpulist,
    parse_cpulist,
    parse_topo_matrix,
    physical_gpu_index,
)

# Two sockets, four GPUs (a DGX-like node); nvidia-smi underlines the header with ANSI codes.
TOPO_4GPU = (
    "\t\x1b[4mGPU0\tGPU1\tGPU2\tGPU3\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m\n"
    "GPU0\t X \tNV18\tNV18\tNV18\tPXB\t0-47,96-143\t0\t\tN/A\n"
    "GPU1\tNV18\t X \tNV18\tNV18\tSYS\t0-47,96-143\t0\t\tN/A\n"
    "GPU2\tNV18\tNV18\t X \tNV18\tSYS\t48-95,144-191\t1\t\tN/A\n"
    "GPU3\tNV18\tNV18\tNV18\t X \tSYS\t48-95,144-191\t1\t\tN/A\n"
    "NIC0\tPXB\tSYS\tSYS\tSYS\t X \t\t\t\t\n"
    "\nLegend:\n\n  X    = Self\n  SYS  = Connection traversing PCIe as well as the SMP\n"
)
# As seen on the one-GPU H100 test machine (16 cores, one NUMA node).
TOPO_1GPU = (
    "\t\x1b[4mGPU0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m\n"
    "GPU0\t X \t0-15\t0\t\tN/A\n\nLegend:\n\n  X    = Self\n"
)


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("0-3,8-11", [0, 1, 2, 3, 8, 9, 10, 11]),
        ("5", [5]),
        ("0-7:2", [0, 2, 4, 6]),
        ("  0-1 ,4\n", [0, 1, 4]),
        ("", []),
    ],
)
def test_parse_cpulist(text: str, cpus: list[int]) -> None:
    assert parse_cpulist(text) == cpus


def test_format_cpulist_round_trips() -> None:
    assert format_cpulist([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert parse_cpulist(format_cpulist(list(range(48, 96)))) == list(range(48, 96))
    assert format_cpulist([]) == ""


def test_parse_topo_matrix_four_gpus_two_sockets() -> None:
    topo = parse_topo_matrix(TOPO_4GPU)
    assert sorted(topo) == [0, 1, 2, 3]
    cpus, numa = topo[2]
    assert numa == 1
    assert cpus == [*range(48, 96), *range(144, 192)]
    assert topo[0][1] == 0


def test_parse_topo_matrix_one_gpu_and_garbage() -> None:
    assert parse_topo_matrix(TOPO_1GPU) == {0: (list(range(16)), 0)}
    assert parse_topo_matrix("nvidia-smi: command not found") == {}


def _fake_sysfs(root: Path, bus_id: str, *, numa: str, local: str | None) -> None:
    device = root / "bus" / "pci" / "devices" / bus_id
    device.mkdir(parents=True)
    (device / "numa_node").write_text(numa + "\n")
    if local is not None:
        (device / "local_cpulist").write_text(local + "\n")
    node = root / "devices" / "system" / "node" / "node1"
    node.mkdir(parents=True)
    (node / "cpulist").write_text("48-95,144-191\n")


def test_sysfs_local_cpulist_then_numa_node(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path / "a", "0000:9b:00.0", numa="1", local="48-51")
    assert cpus_from_sysfs("0000:9B:00.0", root=tmp_path / "a") == ([48, 49, 50, 51], 1)
    _fake_sysfs(tmp_path / "b", "0000:9b:00.0", numa="1", local=None)
    cpus, numa = cpus_from_sysfs("0000:9b:00.0", root=tmp_path / "b")
    assert numa == 1 and cpus[:2] == [48, 49] and len(cpus) == 96
    _fake_sysfs(tmp_path / "c", "0000:9b:00.0", numa="-1", local=None)
    assert cpus_from_sysfs("0000:9b:00.0", root=tmp_path / "c") == ([], None)


def test_choose_prefers_sysfs_and_respects_allowed_cores(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path, "0000:9b:00.0", numa="1", local="48-95")
    allowed = set(range(0, 192))
    choice = choose_cpus(
        bus_id="0000:9b:00.0", gpu_index=2, allowed=allowed, sysfs_root=tmp_path, topo_text=""
    )
    assert choice.pinned and choice.source == "sysfs" and choice.numa_node == 1
    assert choice.cpus == tuple(range(48, 96))
    # A container limited to cores 40-55 gets the overlap only.
    choice = choose_cpus(
        bus_id="0000:9b:00.0",
        gpu_index=2,
        allowed=set(range(40, 56)),
        sysfs_root=tmp_path,
        topo_text="",
    )
    assert choice.cpus == tuple(range(48, 56))
    assert choice.describe() == {"cpus": "48-55", "numa_node": 1, "source": "sysfs"}


def test_choose_falls_back_to_nvidia_smi_and_explains_no_pin(tmp_path: Path) -> None:
    choice = choose_cpus(
        bus_id=None, gpu_index=3, allowed=set(range(192)), sysfs_root=tmp_path, topo_text=TOPO_4GPU
    )
    assert choice.source == "nvidia-smi" and choice.numa_node == 1
    assert choice.cpus[0] == 48
    # Cores near the GPU are outside this process's set: no pinning, with the reason.
    choice = choose_cpus(
        bus_id=None, gpu_index=3, allowed={0, 1}, sysfs_root=tmp_path, topo_text=TOPO_4GPU
    )
    assert not choice.pinned and "not allowed" in choice.source
    # The one-GPU machine: every allowed core is near the GPU, nothing to do.
    choice = choose_cpus(
        bus_id=None, gpu_index=0, allowed=set(range(16)), sysfs_root=tmp_path, topo_text=TOPO_1GPU
    )
    assert not choice.pinned and "every allowed core" in choice.source
    choice = choose_cpus(
        bus_id=None, gpu_index=0, allowed={0}, sysfs_root=tmp_path, topo_text="no topology"
    )
    assert choice.source == "not pinned: no topology found"


def test_physical_gpu_index_follows_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert physical_gpu_index(0) == 3
    assert physical_gpu_index(1) == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f2c")
    assert physical_gpu_index(0) == 0
