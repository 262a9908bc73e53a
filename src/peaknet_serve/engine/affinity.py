"""CPU affinity: run a replica's threads on the cores of its GPU's NUMA node.

On a two-socket GPU node, a replica whose copy threads and pinned staging buffers sit on the
other socket pays for every frame twice on the inter-socket link. The cores near a GPU come from
sysfs (``/sys/bus/pci/devices/<bus id>/local_cpulist``, or its ``numa_node`` and
``/sys/devices/system/node/nodeN/cpulist``) or, failing that, from ``nvidia-smi topo -m``.
Pinned host memory is placed on first touch, so staging buffers allocated after pinning land on
the GPU's node.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class AffinityChoice:
    """Which cores a process was pinned to, and why."""

    cpus: tuple[int, ...]
    numa_node: int | None
    source: str
    """Where the cores came from: "sysfs", "nvidia-smi", or why nothing was pinned."""

    @property
    def pinned(self) -> bool:
        return bool(self.cpus)

    def describe(self) -> dict[str, object]:
        cpus = format_cpulist(self.cpus)
        return {"cpus": cpus, "numa_node": self.numa_node, "source": self.source}


def parse_cpulist(text: str) -> list[int]:
    """CPU numbers of a Linux cpulist such as ``"0-3,8-11"`` or ``"0-55:2"`` (with a stride)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        span, _, stride = part.partition(":")
        first, _, last = span.partition("-")
        step = int(stride) if stride else 1
        cpus.extend(range(int(first), int(last or first) + 1, step))
    return sorted(set(cpus))


def format_cpulist(cpus: tuple[int, ...] | list[int]) -> str:
    """The compact cpulist form of ``cpus`` (``[0, 1, 2, 5]`` -> ``"0-2,5"``)."""
    ranges: list[str] = []
    ordered = sorted(set(cpus))
    start = previous = None
    for cpu in [*ordered, None]:
        if cpu is not None and previous is not None and cpu == previous + 1:
            previous = cpu
            continue
        if start is not None:
            ranges.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = cpu
    return ",".join(ranges)


def parse_topo_matrix(text: str) -> dict[int, tuple[list[int], int | None]]:
    """GPU index -> (CPU affinity, NUMA node) from the output of ``nvidia-smi topo -m``.

    The matrix is tab-separated, with a header naming the columns ("CPU Affinity", "NUMA
    Affinity"); rows of GPUs start with ``GPU<n>``. A NUMA entry of "N/A" gives None.
    """
    lines = [_ANSI.sub("", line).rstrip() for line in text.splitlines()]
    header = next((line.split("\t") for line in lines if "CPU Affinity" in line), None)
    if header is None:
        return {}
    header = [cell.strip() for cell in header]
    cpu_col = header.index("CPU Affinity")
    numa_col = header.index("NUMA Affinity") if "NUMA Affinity" in header else None
    result: dict[int, tuple[list[int], int | None]] = {}
    for line in lines:
        cells = [cell.strip() for cell in line.split("\t")]
        match = re.fullmatch(r"GPU(\d+)", cells[0]) if cells else None
        if match is None or len(cells) <= cpu_col:
            continue
        numa_text = cells[numa_col] if numa_col is not None and len(cells) > numa_col else ""
        numa = int(numa_text) if numa_text.isdigit() else None
        cpus = parse_cpulist(cells[cpu_col]) if re.match(r"\d", cells[cpu_col]) else []
        result[int(match.group(1))] = (cpus, numa)
    return result


def pci_bus_id(device: torch.device) -> str | None:
    """The sysfs name of ``device``'s PCI function, e.g. ``0000:1b:00.0``."""
    props = torch.cuda.get_device_properties(device)
    domain = getattr(props, "pci_domain_id", None)
    bus = getattr(props, "pci_bus_id", None)
    slot = getattr(props, "pci_device_id", None)
    if bus is None or slot is None:
        return None
    return f"{domain or 0:04x}:{bus:02x}:{slot:02x}.0"


def cpus_from_sysfs(bus_id: str, *, root: Path = Path("/sys")) -> tuple[list[int], int | None]:
    """(cores, NUMA node) of a PCI device from sysfs; ([], None) when sysfs does not say."""
    device_dir = root / "bus" / "pci" / "devices" / bus_id.lower()
    numa = _read_int(device_dir / "numa_node")
    numa = numa if numa is not None and numa >= 0 else None
    local = _read(device_dir / "local_cpulist")
    if local:
        return parse_cpulist(local), numa
    if numa is not None:
        node_cpus = _read(root / "devices" / "system" / "node" / f"node{numa}" / "cpulist")
        if node_cpus:
            return parse_cpulist(node_cpus), numa
    return [], numa


def physical_gpu_index(index: int) -> int:
    """The ``nvidia-smi`` index of CUDA device ``index`` under ``CUDA_VISIBLE_DEVICES``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    if index < len(visible) and visible[index].strip().isdigit():
        return int(visible[index])
    return index


def choose_cpus(
    *,
    bus_id: str | None,
    gpu_index: int,
    allowed: set[int],
    sysfs_root: Path = Path("/sys"),
    topo_text: str | None = None,
) -> AffinityChoice:
    """The cores nearest a GPU that this process may use (``allowed``).

    Args:
        bus_id: the GPU's PCI function (``0000:1b:00.0``), looked up in sysfs first.
        gpu_index: its ``nvidia-smi`` index, looked up in ``nvidia-smi topo -m`` otherwise.
        allowed: the cores this process may run on (``os.sched_getaffinity(0)``).
        sysfs_root: where sysfs is mounted.
        topo_text: ``nvidia-smi topo -m`` output; None runs nvidia-smi when sysfs says nothing.
    """
    cpus: list[int] = []
    numa: int | None = None
    source = "sysfs"
    if bus_id is not None:
        cpus, numa = cpus_from_sysfs(bus_id, root=sysfs_root)
    if not cpus:
        source = "nvidia-smi"
        text = topo_text if topo_text is not None else _nvidia_smi_topo()
        cpus, numa = parse_topo_matrix(text).get(gpu_index, ([], None))
    usable = sorted(set(cpus) & allowed)
    if not usable:
        why = "no topology found" if not cpus else f"cores {format_cpulist(cpus)} not allowed"
        return AffinityChoice((), numa, f"not pinned: {why}")
    if set(usable) == allowed:
        return AffinityChoice((), numa, "not pinned: every allowed core is near the GPU")
    return AffinityChoice(tuple(usable), numa, source)


def pin_process_near(device: torch.device) -> AffinityChoice:
    """Pin every thread of this process to the cores nearest ``device``; log the choice once.

    Threads started afterwards inherit the mask. Does nothing (and says why) on a CPU device,
    when no topology is found, or when the cores near the GPU are outside the allowed set.
    """
    if device.type != "cuda":
        return AffinityChoice((), None, "not pinned: CPU device")
    choice = choose_cpus(
        bus_id=pci_bus_id(device),
        gpu_index=physical_gpu_index(device.index or 0),
        allowed=set(os.sched_getaffinity(0)),
    )
    if choice.pinned:
        for task in Path("/proc/self/task").iterdir():
            # A thread may end meanwhile, or be one we may not move.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.sched_setaffinity(int(task.name), choice.cpus)
        os.sched_setaffinity(0, choice.cpus)
    logger.info("CPU affinity for %s: %s", device, choice.describe())
    return choice


def _nvidia_smi_topo() -> str:
    try:
        result = subprocess.run(
            ["nvidia-smi", "topo", "-m"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text)
    except ValueError:
        return None
