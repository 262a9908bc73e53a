"""Where a host's CPU time goes during a service run: cores used per role over a window.

Why: with several GPUs on one host the service stopped scaling while the GPUs had time to spare
(docs/perf-notes.md, "Runs 19-22"); the writers, the ingresses, the PeakNet replicas' copy
threads and the benchmark's own pushers share the host's cores. A role is a Serve deployment
(Ray titles a replica's process ``ray::ServeReplica:APP:DEPLOYMENT``), the pusher ranks
(``python -m peaknet_serve.cli push``), Ray's other processes, or the rest.
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
    if cmdline.startswith("ray::") or "/ray/" in cmdline:
        return "ray (other)"
    return "other"


@dataclass(frozen=True)
class CpuSnapshot:
    """At ``wall`` (monotonic seconds): each process's role and CPU seconds (user + system) so
    far, keyed by (pid, start time); the host's busy and stolen CPU seconds so far."""

    wall: float
    processes: dict[tuple[int, float], tuple[str, float]]
    host_busy: float
    host_steal: float


def snapshot() -> CpuSnapshot:
    """This host's processes and CPU seconds now (those we may not read are left out)."""
    processes: dict[tuple[int, float], tuple[str, float]] = {}
    for proc in psutil.process_iter(["cmdline", "cpu_times", "create_time"]):
        times, created = proc.info["cpu_times"], proc.info["create_time"]
        if times is None or created is None:
            continue
        role = process_role(" ".join(proc.info["cmdline"] or []))
        processes[(proc.pid, created)] = (role, times.user + times.system)
    host = psutil.cpu_times()
    guest = getattr(host, "guest", 0.0) + getattr(host, "guest_nice", 0.0)  # inside user, nice
    steal = getattr(host, "steal", 0.0)
    idle = host.idle + getattr(host, "iowait", 0.0)
    busy = sum(host) - guest - idle - steal
    return CpuSnapshot(time.monotonic(), processes, busy, steal)


def cores_used(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, float]:
    """Cores busy on average between two snapshots, per role (largest first), then ``host``
    (busy), ``steal`` (taken by the hypervisor) and ``exited`` (processes that ended in between,
    whose last CPU seconds are not counted). A process that started in between counts whole."""
    seconds = max(end.wall - start.wall, 1e-9)
    used: dict[str, float] = {}
    for key, (role, cpu) in end.processes.items():
        before = start.processes.get(key, (role, 0.0))[1]
        used[role] = used.get(role, 0.0) + (cpu - before) / seconds
    ranked = dict(sorted(used.items(), key=lambda item: -item[1]))
    return ranked | {
        "host": (end.host_busy - start.host_busy) / seconds,
        "steal": (end.host_steal - start.host_steal) / seconds,
        "exited": float(len(start.processes.keys() - end.processes.keys())),
    }


SUMMARY_KEYS = ("host", "steal", "exited")


def describe(cores: dict[str, float], cpu_count: int) -> str:
    """``cores: ROLE N.N, ...; host N.N of CPUS`` (roles under 0.05 left out), with the stolen
    cores and the processes that exited when there are any."""
    shown = {role: n for role, n in cores.items() if role not in SUMMARY_KEYS and n >= 0.05}
    text = f"cores: {', '.join(f'{role} {n:.1f}' for role, n in shown.items())}"
    text += f"; host {cores['host']:.1f} of {cpu_count}"
    if cores["steal"] >= 0.05:
        text += f", {cores['steal']:.1f} stolen"
    if cores["exited"]:
        text += f"; {cores['exited']:.0f} processes exited (their last seconds not counted)"
    return text
