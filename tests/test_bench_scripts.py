"""The GPU benchmark scripts on the CPU: they import and answer --help, the service run's config
is deployments/gpu-node.yaml adapted and still valid, and the rate and ratio arithmetic; the
tail-loss benchmark refuses bad arguments before it starts anything."""

from __future__ import annotations

import argparse
import importlib
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from peaknet_serve.config import load_service_config

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str) -> ModuleType:
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module(name)


@pytest.mark.parametrize("name", ["bench_model", "bench_warmup", "bench_service", "bench_kernels"])
def test_script_answers_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _script(name).main(["--help"])
    assert exit_.value.code == 0
    assert "--seconds" in capsys.readouterr().out


SERVICE_ARGS = argparse.Namespace(
    preset="peaknet-standard",
    precisions="bf16",
    modes="default",
    pushers=3,
    writers=5,
    cache_dir="",
    compression="",
)
"""The command-line arguments bench_service's config builder reads."""


@pytest.mark.parametrize(("layout", "mode"), [((1, 1), "listen"), ((2, 2), "dial")])
def test_service_run_config_is_gpu_node_yaml_adapted_and_valid(
    tmp_path: Path, layout: tuple[int, int], mode: str
) -> None:
    bench = _script("bench_service")
    args = SERVICE_ARGS
    gpus, ingresses = layout
    (entry,) = bench._layouts(args, f"{gpus}x{ingresses}")
    assert entry.config == "gpu-node.yaml"
    config = bench._service_config(args, (512, 512), 64, str(tmp_path), entry)
    service = load_service_config(config)
    assert service.source.mode == mode
    ranks = range(1) if mode == "listen" else range(3)
    addresses = [f"tcp://127.0.0.1:{12321 + rank}" for rank in ranks]
    assert service.source.addresses == addresses
    assert service.output.output_dir == str(tmp_path / "out")
    assert service.engine.compile == "default" and service.engine.precision == "bf16"
    assert 64 in service.engine.batch_buckets
    replicas = {d["name"]: d for d in config["applications"][0]["deployments"]}
    assert replicas["Ingress"]["num_replicas"] == ingresses
    assert replicas["PeakNet"]["num_replicas"] == gpus
    assert replicas["PeakNet"]["user_config"]["max_batch_frames"] == 64
    assert replicas["PeakFinderWriter"]["num_replicas"] == 5
    assert "autoscaling_config" not in replicas["PeakFinderWriter"]


def test_multi_gpu_layout_runs_the_shipped_multi_gpu_yaml_scaled_per_gpu(tmp_path: Path) -> None:
    bench = _script("bench_service")
    args = SERVICE_ARGS
    shipped = bench._replicas(bench._shipped("multi-gpu.yaml"))
    per_gpu = {name: count // shipped["PeakNet"] for name, count in shipped.items()}
    (layout,) = bench._layouts(args, "multi-gpu:2")
    assert layout == ("multi-gpu.yaml", 2, 2 * per_gpu["Ingress"], 2 * per_gpu["PeakFinderWriter"])
    config = bench._service_config(args, (512, 512), 64, str(tmp_path), layout)
    service = load_service_config(config)
    assert service.source.mode == "dial" and len(service.source.addresses) == 3
    replicas = bench._replicas(config)
    assert replicas == {
        "Ingress": layout.ingresses,
        "PeakNet": 2,
        "PeakFinderWriter": layout.writers,
    }


@pytest.mark.parametrize(("compression", "expected"), [("", "bitshuffle_lz4"), ("none", "none")])
def test_service_run_compression_is_the_shipped_one_unless_set(
    tmp_path: Path, compression: str, expected: str
) -> None:
    bench = _script("bench_service")
    args = argparse.Namespace(**(vars(SERVICE_ARGS) | {"compression": compression}))
    (layout,) = bench._layouts(args, "multi-gpu:2")
    config = bench._service_config(args, (512, 512), 64, str(tmp_path), layout)
    assert load_service_config(config).output.compression == expected


def test_multi_gpu_yaml_runs_per_gpu_the_ingresses_gpu_node_yaml_runs_for_its_one_gpu() -> None:
    """The ingress count one GPU needs is set in gpu-node.yaml; multi-gpu.yaml scales it by GPUs,
    and several ingresses on one node need dial mode (one port, one listener)."""
    bench = _script("bench_service")
    node = bench._shipped("gpu-node.yaml")
    node_replicas = bench._replicas(node)
    multi = bench._replicas(bench._shipped("multi-gpu.yaml"))
    assert node_replicas["PeakNet"] == 1
    assert multi["Ingress"] == node_replicas["Ingress"] * multi["PeakNet"]
    assert bench._default_ingresses() == node_replicas["Ingress"]
    if node_replicas["Ingress"] > 1:
        assert node["applications"][0]["args"]["source"]["mode"] == "dial"


@pytest.mark.parametrize(
    "entry", ["multi-gpu:0", "multi-gpu:x", "multi-gpu:2:9", "2", "0x2", "1x2x3", "\u00b2x1"]
)
def test_a_bad_layout_is_refused_naming_it_before_anything_runs(
    entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _script("bench_service")
    with pytest.raises(ValueError, match=f"--layouts '{entry}'"):
        bench._layouts(argparse.Namespace(writers=5), entry)
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--parts", "model,engine,service", "--layouts", f"1x1,{entry}"])
    assert exit_.value.code == 2 and f"--layouts '{entry}'" in capsys.readouterr().err


def test_steady_rate_leaves_out_ramp_up_and_tail() -> None:
    bench = _script("bench_service")
    # 0-10 s: slow start; 10-20 s: 100 frames/s; then a slow tail.
    samples = [(0.0, 0), (10.0, 100), (15.0, 600), (20.0, 1100), (40.0, 1200)]
    assert bench._steady_rate(samples, 1000) == pytest.approx(100.0)


def test_ratios_take_the_fastest_compiled_rows_of_the_same_shape() -> None:
    bench = _script("bench_service")
    row = _script("benchlib").Row
    rows = [
        row("model", "1920x1920", "eager bf16 CL", 16, 200.0),
        row("model", "1920x1920", "default bf16 CL", 16, 80.0),
        row("model", "512x512", "default bf16 CL", 64, 900.0),
        row("engine", "1920x1920", "default bf16 f32 in", 16, 60.0),
        row("engine", "1920x1920", "default bf16 f64 in", 16, 70.0),
        row("service", "1920x1920", "default bf16, 1 GPU, 2 ingress", 16, 72.0),
        row("service", "1920x1920", "default bf16, 1 GPU, 1 ingress", 16, 50.0),
        row("service", "1920x1920", "default bf16, 2 GPU, 4 ingress", 16, 140.4),
    ]
    lines = bench.ratios(rows)
    assert len(lines) == 7
    assert "2 GPU, 4 ingress" in lines[0] and "1-GPU service: 1.95x (140.4 / 72.0)" in lines[0]
    assert "fastest engine: 120.0% (72.0 / 60.0)" in lines[1]
    assert "fastest model: 90.0% (72.0 / 80.0)" in lines[2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--min-batches", "41"], "--min-batches 41 is above --max-batches 40"),
        (["--min-batches", "5", "--max-batches", "3"], "--min-batches 5 is above --max-batches 3"),
        (["--max-batches", "0"], "argument --max-batches: 0 is not above 0"),
        (["--min-batches", "-2"], "argument --min-batches: -2 is not above 0"),
        (["--runs", "0"], "argument --runs: 0 is not above 0"),
        (["--set", "recv_bufer_messages=2"], "source.recv_bufer_messages: Extra inputs"),
        (["--set", "buffer_messages=0"], "source.buffer_messages: Input should be greater"),
        (["--set", "recv_buffer_messages=many"], "source.recv_buffer_messages: Input should be"),
        (["--set", "buffer_messages"], "expected KEY=VALUE"),
        (["--version", "0.3", "--producer-linger-ms", "100"], "main (zmq) only"),
        (["--bare", "--set", "buffer_messages=8"], "only --set recv_buffer_messages applies"),
        (["--buffered"], "--buffered goes with --bare"),
    ],
)
def test_tail_loss_bad_arguments_are_argparse_errors_before_anything_starts(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No LCLStreamer under this prefix: a run that got past the arguments would return 2 from
    # main with "is missing" instead of exiting in the parser.
    prefix = ["--lclstreamer-prefix", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_:
        _script("bench_tail_loss").main([*prefix, *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err, err
    assert "is missing" not in err


def test_tail_loss_set_values_are_parsed_as_yaml_and_kept() -> None:
    sets = ["--set", "recv_buffer_messages=2", "--set", "buffer_bytes=1000000"]
    batches = ["--min-batches", "5", "--max-batches", "5"]
    args = _script("bench_tail_loss").parse_args([*sets, *batches])
    assert args.source == {"recv_buffer_messages": 2, "buffer_bytes": 1_000_000}
    assert (args.min_batches, args.max_batches) == (5, 5)


def test_tail_loss_buffered_receiver_takes_every_source_setting() -> None:
    argv = ["--bare", "--buffered", "--set", "buffer_messages=8"]
    args = _script("bench_tail_loss").parse_args(argv)
    assert args.bare and args.buffered and args.source == {"buffer_messages": 8}


def test_a_service_run_that_fails_leaves_no_folder_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _script("bench_service")

    def fails(
        args: argparse.Namespace, shape: tuple[int, int], batch: int, layout: object, workdir: str
    ) -> object:
        Path(workdir, "peaknet-w0-00000.cxi.inprogress").write_bytes(b"frames")
        raise RuntimeError("service did not settle")

    monkeypatch.setattr(bench, "_measure_service", fails)
    args = argparse.Namespace(**(vars(SERVICE_ARGS) | {"service_output_dir": str(tmp_path)}))
    (layout,) = bench._layouts(args, "1x3")
    with pytest.raises(RuntimeError, match="did not settle"):
        bench._service_run(args, (512, 512), 16, layout)
    assert list(tmp_path.iterdir()) == []


def test_sigterm_unwinds_the_benchmark_so_its_cleanup_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _script("bench_service")
    cleaned: list[str] = []

    def run_tool(args: argparse.Namespace, parts: object, name: str, summary: object) -> int:
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:
            cleaned.append(name)
        return 0

    def no_handler(signum: int, frame: object) -> None:
        raise AssertionError("main installed no SIGTERM handler")

    monkeypatch.setattr(bench.benchlib, "run_tool", run_tool)
    previous = signal.signal(signal.SIGTERM, no_handler)  # a regression fails, not kills, pytest
    try:
        with pytest.raises(SystemExit) as exited:
            bench.main(["--parts", "service", "--layouts", "1x1"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exited.value.code == 128 + signal.SIGTERM and cleaned == ["bench_service"]


SLEEPER = "import time; time.sleep(60)"
SIGINT_DRAINS = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGINT, lambda *a: sys.exit(7))\n"
    "print('up', flush=True)\n"
    "time.sleep(60)"
)
DEAF = (
    "import signal, time\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('up', flush=True)\n"
    "time.sleep(60)"
)


def _started(code: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    if "print" in code:
        assert process.stdout is not None and process.stdout.readline() == "up\n"
    return process


def test_stop_ends_the_pushers_then_drains_the_service_with_sigint() -> None:
    bench = _script("bench_service")
    pushers = [_started(SLEEPER) for _ in range(2)]
    service = _started(SIGINT_DRAINS)
    bench.stop(pushers, service, grace_s=30)
    assert [p.returncode for p in pushers] == [-signal.SIGTERM] * 2
    assert service.returncode == 7  # its SIGINT handler ran: the drain


def test_stop_kills_what_does_not_exit_in_time() -> None:
    bench = _script("bench_service")
    pusher, service = _started(DEAF), _started(DEAF)
    bench.stop([pusher], service, grace_s=0.5)
    assert pusher.returncode == service.returncode == -signal.SIGKILL


def test_wait_ready_says_when_the_service_exited_first() -> None:
    service = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    service.wait()
    with pytest.raises(RuntimeError, match="the service exited with 3"):
        _script("benchlib").wait_ready(service, "http://127.0.0.1:9", timeout=30)


@pytest.mark.parametrize(
    ("cmdline", "role"),
    [
        ("ray::ServeReplica:peaknet:PeakFinderWriter", "PeakFinderWriter"),
        ("ray::ServeReplica:peaknet:Ingress.handle_request", "Ingress"),
        ("/usr/bin/python3 -m peaknet_serve.cli --log-level=warning push --rank=3", "pushers"),
        ("/usr/bin/python3 -m peaknet_serve.cli run /tmp/service.yaml", "other"),
        ("/venv/site-packages/ray/core/src/ray/raylet/raylet --node_id=1", "ray (other)"),
        ("ray::ServeController", "ray (other)"),
        ("/usr/bin/python3 push.py", "other"),
        ("/usr/bin/python3 xray_array.py", "other"),
    ],
)
def test_host_cpu_names_the_role_of_a_process(cmdline: str, role: str) -> None:
    assert _script("host_cpu").process_role(cmdline) == role


def test_host_cpu_counts_a_pushers_cpu_seconds_between_two_snapshots() -> None:
    host_cpu = _script("host_cpu")
    burn = (
        "import sys, time\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < 0.4: pass\n"
        "print('burnt', flush=True)\n"
        "sys.stdin.read()\n"
    )
    before = host_cpu.snapshot()
    child = subprocess.Popen(
        [sys.executable, "-c", burn, "peaknet_serve.cli", "push"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "burnt\n"
        after = host_cpu.snapshot()
    finally:
        child.communicate("")
    cores = host_cpu.cores_used(before, after)
    assert 0.35 <= cores["pushers"] * (after.wall - before.wall) < 5.0
    assert cores["host"] > 0


def _snapshot(wall: float, processes: dict, busy: float = 0.0, steal: float = 0.0) -> object:
    return _script("host_cpu").CpuSnapshot(wall, processes, busy, steal)


def test_host_cpu_counts_each_process_from_its_own_start_and_names_those_that_exited() -> None:
    host_cpu = _script("host_cpu")
    start = _snapshot(
        0.0,
        {(1, 5.0): ("Ingress", 10.0), (2, 5.0): ("pushers", 40.0), (3, 5.0): ("pushers", 7.0)},
        busy=100.0,
    )
    end = _snapshot(
        2.0,
        # pid 2 exited; pid 4 started in the window; pid 3's number was reused by a new process
        {(1, 5.0): ("Ingress", 14.0), (4, 6.0): ("PeakNet", 6.0), (3, 7.0): ("pushers", 1.0)},
        busy=124.0,
        steal=1.0,
    )
    cores = host_cpu.cores_used(start, end)
    assert cores == {
        "PeakNet": 3.0,
        "Ingress": 2.0,
        "pushers": 0.5,
        "host": 12.0,
        "steal": 0.5,
        "exited": 2.0,
    }
    assert list(cores)[:3] == ["PeakNet", "Ingress", "pushers"]
    assert host_cpu.describe(cores, 32) == (
        "cores: PeakNet 3.0, Ingress 2.0, pushers 0.5; host 12.0 of 32, 0.5 stolen; "
        "2 processes exited (their last seconds not counted)"
    )


def test_benchmark_models_have_a_grn_that_is_not_the_identity() -> None:
    from peaknet_serve.model.grn import GlobalResponseNorm

    model = _script("benchlib").build_model("peaknet-demo")
    grns = [m for m in model.modules() if isinstance(m, GlobalResponseNorm)]
    assert grns and all(m.weight.abs().max() > 0 and m.bias.abs().max() > 0 for m in grns)


def _table(script: str, *args: str, first: tuple[str, ...]) -> list[list[str]]:
    """The rows of a CPU benchmark script's table whose first column starts with ``first``."""
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / script), "--size", "256", "--batch", "2", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return [line.split() for line in done.stdout.splitlines() if line.startswith(first)]


@pytest.mark.cluster
def test_bench_ingress_times_each_transport_end_to_end() -> None:
    rows = _table("bench_ingress.py", "--messages", "3", first=("nng", "zmq"))
    assert [row[0] for row in rows] == ["nng", "zmq"]
    assert all(float(rate) > 0 and float(cpu_ms) > 0 for _, rate, cpu_ms in rows)


def test_bench_writer_times_judging_and_writing_per_compression(tmp_path: Path) -> None:
    rows = _table(
        "bench_writer.py",
        *("--batches", "1", "--dir", str(tmp_path), "--compressions", "none,bitshuffle_lz4"),
        first=("judging", "none", "bit"),
    )
    assert [row[0] for row in rows] == ["judging", "none", "bitshuffle_lz4"]
    assert float(rows[0][2]) > 0 and all(float(process) > 0 for _, process in rows[1:])
    assert list(tmp_path.iterdir()) == []  # the CXI files went with the run


def test_bench_memory_gives_the_copy_bandwidth_per_process_count() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_memory.py"), "--procs", "1,2", "--mb", "8"]
        + ["--seconds", "0.2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = [line.split() for line in done.stdout.splitlines()[2:]]
    assert [row[0] for row in rows] == ["1", "2"]
    assert all(float(total) > 0 and float(each) > 0 for _, total, each in rows)
