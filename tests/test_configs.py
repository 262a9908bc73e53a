"""Every YAML in the repo loads: Serve's own schema, our service config, our batching config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from peaknet_serve.config import ServiceConfig, load_service_config
from peaknet_serve.engine.config import BatchingConfig
from peaknet_serve.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SERVE_CONFIGS = [ROOT / "serve_config.yaml", *sorted((ROOT / "deployments").glob("*.yaml"))]
DEPLOYMENT_NAMES = {"Ingress", "PeakNet", "PeakFinderWriter"}


@pytest.mark.parametrize("path", SERVE_CONFIGS, ids=lambda p: p.name)
def test_serve_config_is_valid(path: Path) -> None:
    from ray.serve.schema import ServeDeploySchema

    data = yaml.safe_load(path.read_text())
    schema = ServeDeploySchema.model_validate(data)
    (app,) = schema.applications
    assert app.import_path == "deployments.app:build_app"
    assert isinstance(load_service_config(path), ServiceConfig)
    names = {d.name for d in app.deployments}
    assert names <= DEPLOYMENT_NAMES, names - DEPLOYMENT_NAMES
    for deployment in app.deployments:
        if deployment.name == "PeakNet" and deployment.user_config:
            BatchingConfig.model_validate(deployment.user_config)


def test_the_default_config_listens_on_the_documented_port_and_output() -> None:
    config = load_service_config(ROOT / "serve_config.yaml")
    assert config.source.addresses == ["tcp://0.0.0.0:12321"]
    assert config.source.transport == "nng"
    assert Path(config.output.output_dir) == Path("./output")
    assert config.model.weights is not None and config.model.weights.is_file()


def test_config_errors_name_the_section_and_key() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_service_config(
            {"model": {"weights": "builtin:peaknet-demo"}, "peaks": {"min_pixles": 3}}
        )
    assert "peaks.min_pixles" in str(excinfo.value)


def test_a_model_needs_weights_or_an_explicit_random_seed() -> None:
    with pytest.raises(ConfigError, match="exactly one of 'weights'"):
        load_service_config({"model": {"preset": "peaknet-demo"}})


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_service_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("key", ["geometry_file", "clen_field", "clen_unit"])
def test_serve_config_shows_the_geometry_keys_with_their_defaults(key: str) -> None:
    from peaknet_serve.cxi import CXIConfig

    text = (ROOT / "serve_config.yaml").read_text()
    shown = [line.split("#", 1)[1].strip() for line in text.splitlines()
             if line.strip().startswith(f"# {key}:")]
    assert len(shown) == 1, f"serve_config.yaml should show '# {key}: DEFAULT  # what it does'"
    value, _, comment = shown[0].partition("#")
    assert yaml.safe_load(value.split(":", 1)[1]) == CXIConfig.model_fields[key].default
    assert comment.strip()


def test_crystfel_env_returns_when_sourced_and_the_build_fails(tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "crystfel-env.sh").write_text(
        (ROOT / "scripts" / "crystfel-env.sh").read_text())
    build = tmp_path / "shared" / "crystfel" / "build.sh"
    build.parent.mkdir(parents=True)
    build.write_text("#!/bin/sh\necho build failed\nexit 3\n")
    build.chmod(0o755)
    if subprocess.run(["sh", "-c", "[ $(id -u) = 0 ] && command -v apt-get"]).returncode:
        pytest.skip("crystfel-env.sh builds only as root with apt-get")
    shell = subprocess.run(
        ["bash", "-c", "source scripts/crystfel-env.sh; echo rc=$? still here"],
        cwd=repo, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                      "CRYSTFEL_PREFIX": str(tmp_path / "cf")},
    )
    assert "rc=1 still here" in shell.stdout, shell.stdout + shell.stderr


@pytest.mark.parametrize(("name", "cores_per_gpu"), [("gpu-node.yaml", 16), ("multi-gpu.yaml", 16)])
def test_a_gpu_config_fits_the_cores_it_is_written_for(name: str, cores_per_gpu: int) -> None:
    """Ray starts a replica only where its ``num_cpus`` are free: replicas beyond the node's
    CPUs (autoscaled writers at their maximum included) would wait for ever."""
    deployments = yaml.safe_load((ROOT / "deployments" / name).read_text())["applications"][0][
        "deployments"
    ]
    reserved = 0.0
    gpus = 0
    for deployment in deployments:
        autoscaling = deployment.get("autoscaling_config") or {}
        replicas = deployment.get("num_replicas") or autoscaling["max_replicas"]
        options = deployment.get("ray_actor_options", {})
        reserved += replicas * options.get("num_cpus", 1)
        gpus += replicas * options.get("num_gpus", 0)
    assert gpus >= 1
    assert reserved <= cores_per_gpu * gpus, f"{name} reserves {reserved} CPUs for {gpus} GPUs"
