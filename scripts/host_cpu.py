"""Where a host's CPU time goes during a service run: cores used per role over a window.

Why: with several GPUs on one host the service stopped scaling while the GPUs had time to spare
(docs/perf-notes.md, "Runs 19-22"); the writers, the ingresses, the PeakNet replicas' copy
threads and the benchmark's own pushers share the host's cores. A role is a Serve deployment
(Ray titles a replica's process ``ray::ServeReplica:APP:DEPLOYMENT``), the ``peaknet-serve
push`` ranks, Ray's other processes, or the rest.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import psutil

_REPLICA = re.compile(r"ServeReplica:[^:\s]+:(\w+)")


def process_role(cmdline: str) -> str:
    """The role of the process whose command line (arguments joined by spaces) is ``cmdline``."""
    if match := _REPLICA.search(cmdline):
        return match.group(1)
    words = cmdline.split()
    if "peaknet_serve.cli" in words and "push" in words:
        return "pushers"
    if "ray" in cmdline:
        return "ray (other)"
    return "other"


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds (user + system) used so far, per role and by the whole host, at ``wall``."""

    wall: float
    by_role: dict[str, float]
    host_busy: float


def snapshot() -> CpuSnapshot:
    """This host's CPU seconds per role now (processes that exited earlier are not counted)."""
    by_role: dict[str, float] = {}
    for proc in psutil.process_iter(["cmdline", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is None:  # gone, or not ours to read
            continue
        role = process_role(" ".join(proc.info["cmdline"] or []))
        by_role[role] = by_role.get(role, 0.0) + times.user + times.system
    host = psutil.cpu_times()
    return CpuSnapshot(time.monotonic(), by_role, host.user + host.system + host.nice)


def cores_used(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, float]:
    """Cores busy on average between two snapshots, per role (largest first), and ``host``."""
    seconds = max(end.wall - start.wall, 1e-9)
    cores = {
        role: (used - start.by_role.get(role, 0.0)) / seconds for role, used in end.by_role.items()
    }
    ranked = dict(sorted(cores.items(), key=lambda item: -item[1]))
    return ranked | {"host": (end.host_busy - start.host_busy) / seconds}


def describe(cores: dict[str, float], cpu_count: int) -> str:
    """``cores: ROLE N.N, ROLE N.N, ...; host N.N of CPUS``, leaving out roles under 0.05."""
    shown = {role: used for role, used in cores.items() if role != "host" and used >= 0.05}
    roles = [f"{role} {used:.1f}" for role, used in shown.items()]
    return f"cores: {', '.join(roles)}; host {cores['host']:.1f} of {cpu_count}"
