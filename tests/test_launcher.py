"""``peaknet-serve run``'s signals: the first drains, the second forces the exit, even while the
drain waits inside C++ (a call into Ray's core whose raylet is gone), where Python cannot run a
signal handler on the thread that waits."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployments.launcher import FORCED_EXIT_CODE

ROOT = Path(__file__).resolve().parent.parent

STUCK_DRAIN = r"""
import ctypes, logging, signal, sys
from types import SimpleNamespace
from deployments import launcher

def deployed(raw, *, address):
    return ["peaknet"]

def stuck(names):
    # a wait inside C that no signal ends, as Ray's core waits on a reply that never comes:
    # pthread_join (never EINTR, pthread_join(3)) on a thread that pauses with every signal blocked
    libc = ctypes.CDLL(None)
    thread = ctypes.c_ulong()
    before = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    libc.pthread_create(ctypes.byref(thread), None, ctypes.cast(libc.pause, ctypes.c_void_p), None)
    signal.pthread_sigmask(signal.SIG_SETMASK, before)
    print("joining", file=sys.stderr, flush=True)
    libc.pthread_join(thread, None)
    return 0

logging.basicConfig(level=logging.INFO)
launcher.deploy, launcher.drain_and_shutdown = deployed, stuck
sys.exit(launcher.run(SimpleNamespace(config=sys.argv[1], address=None)))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_exits_at_once_while_the_drain_is_stuck(signum: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK_DRAIN, str(ROOT / "serve_config.yaml")],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "drains and stops" in proc.stderr.readline()
        proc.send_signal(signum)
        assert "stopping: draining" in proc.stderr.readline()
        assert proc.stderr.readline() == "joining\n"
        time.sleep(0.5)  # into pthread_join
        proc.send_signal(signum)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == FORCED_EXIT_CODE
    assert f"second {signum.name}: exiting without waiting" in proc.stderr.read()
