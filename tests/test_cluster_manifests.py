"""The Slurm script and the KubeRay manifest: the embedded Serve config is valid, and the
replicas and resources in it fit the cluster the manifest asks for."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from peaknet_serve.config import load_service_config

ROOT = Path(__file__).resolve().parent.parent
SBATCH = ROOT / "deployments" / "slurm" / "peaknet-serve.sbatch"
RAYSERVICE = ROOT / "deployments" / "kuberay" / "rayservice.yaml"


def manifests() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(RAYSERVICE.read_text())}


def test_the_rayservice_embeds_a_valid_serve_config_that_fits_its_cluster() -> None:
    from ray.serve.schema import ServeDeploySchema

    service = manifests()["RayService"]["spec"]
    serve_config = yaml.safe_load(service["serveConfigV2"])
    (app,) = ServeDeploySchema.model_validate(serve_config).applications
    assert app.import_path == "deployments.app:build_app"
    config = load_service_config(serve_config)
    assert config.source.mode == "listen"

    cluster = service["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0"
    assert cluster["authOptions"] == {"mode": "token"}
    (workers,) = cluster["workerGroupSpecs"]
    (container,) = workers["template"]["spec"]["containers"]
    gpus = int(container["resources"]["limits"]["nvidia.com/gpu"]) * workers["replicas"]
    deployments = {d.name: d for d in app.deployments}
    peaknet = deployments["PeakNet"]
    assert peaknet.num_replicas * peaknet.ray_actor_options.num_gpus == gpus

    # one listening ingress, pinned to the head (the only node with the `ingress` resource)
    ingress = deployments["Ingress"]
    assert ingress.num_replicas == 1
    assert ingress.ray_actor_options.resources == {"ingress": 1}
    head_resources = yaml.safe_load(
        yaml.safe_load(cluster["headGroupSpec"]["rayStartParams"]["resources"])
    )
    assert head_resources == {"ingress": 1}
    port = int(config.source.addresses[0].rsplit(":", 1)[1])
    (head,) = cluster["headGroupSpec"]["template"]["spec"]["containers"]
    assert port in {p["containerPort"] for p in head["ports"]}
    frames = manifests()["Service"]["spec"]
    assert frames["selector"]["ray.io/node-type"] == "head"
    assert frames["ports"][0]["targetPort"] == port


def test_the_slurm_script_parses_and_its_default_config_dials() -> None:
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    text = SBATCH.read_text()
    default = text.split("CONFIG=${1:-", 1)[1].split("}", 1)[0]
    assert load_service_config(ROOT / default).source.mode == "dial"
    assert "serve deploy" in text and "serve shutdown" in text


@pytest.mark.skipif(
    shutil.which("shellcheck") is None and not os.environ.get("CI"),
    reason="shellcheck is not installed (scripts/test.sh installs it as root; CI must have it)",
)
def test_the_slurm_script_passes_shellcheck() -> None:
    subprocess.run(["shellcheck", str(SBATCH)], check=True)
