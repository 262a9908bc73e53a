"""``peaknet-serve scale DEPLOYMENT N``: change a deployment's replicas in the running service.

The Ray dashboard is read-only; Serve changes ``num_replicas`` in place when the edited config is
deployed again. This command does that round trip over the Serve REST API (what ``serve config``
and ``serve deploy`` use): ``GET /api/serve/applications/``, edit, ``PUT`` the whole config back
(a PUT replaces every application, so all of them are sent, unchanged but the one deployment).

Ray's token auth (on by default since 2.59) is honoured like Ray's own clients do: the token is
taken from ``$RAY_AUTH_TOKEN``, else the file named by ``$RAY_AUTH_TOKEN_PATH``, else
``~/.ray/auth_token``, and sent as ``Authorization: Bearer <token>``. No Ray import: this runs
from any machine that reaches the dashboard.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from peaknet_serve.errors import ConfigError, PeakNetServeError

logger = logging.getLogger(__name__)

HELP = "set a deployment's number of replicas in the running service (Serve REST API)"

API = "/api/serve/applications/"
DEFAULT_DASHBOARD = "http://127.0.0.1:8265"
TOP_LEVEL_KEYS = ("proxy_location", "http_options", "grpc_options", "target_capacity")
"""The parts of the running instance that a PUT carries besides the applications."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("deployment", help="deployment name: Ingress, PeakNet, PeakFinderWriter")
    parser.add_argument("replicas", type=int, help="number of replicas wanted (>= 0)")
    parser.add_argument(
        "--address",
        default=os.environ.get("RAY_DASHBOARD_ADDRESS", DEFAULT_DASHBOARD),
        help="Ray dashboard URL (default: $RAY_DASHBOARD_ADDRESS or %(default)s)",
    )
    parser.add_argument(
        "--app", default=None, help="application name (default: the only one running)"
    )
    parser.add_argument(
        "--replace-autoscaling",
        action="store_true",
        help="the deployment autoscales: drop its autoscaling_config for a fixed N",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS until N replicas are RUNNING (default: do not wait)",
    )


def auth_token(environ: dict[str, str] | None = None, home: Path | None = None) -> str | None:
    """Ray's auth token, looked up where Ray's own clients look; None when there is none."""
    env = os.environ if environ is None else environ
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return env["RAY_AUTH_TOKEN"].strip()
    path = Path(env["RAY_AUTH_TOKEN_PATH"]) if env.get("RAY_AUTH_TOKEN_PATH") else None
    if path is None:
        path = (home or Path.home()) / ".ray" / "auth_token"
    try:
        token = path.read_text().strip()
    except OSError:
        if env.get("RAY_AUTH_TOKEN_PATH"):
            raise ConfigError(f"RAY_AUTH_TOKEN_PATH={path} cannot be read") from None
        return None
    return token or None


def client(address: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=address.rstrip("/"), headers=headers, timeout=60.0)


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code in (401, 403):
        raise PeakNetServeError(
            f"the dashboard refused the request ({response.status_code}): put Ray's token in "
            "$RAY_AUTH_TOKEN or ~/.ray/auth_token (on the head node: ray get-auth-token)"
        )
    response.raise_for_status()
    return response.json() if response.content else {}


def running_instance(http: httpx.Client) -> dict[str, Any]:
    """The Serve instance details (``serve status`` in JSON), from the dashboard."""
    return _check(http.get(API))


def pick_app(details: dict[str, Any], app: str | None) -> str:
    apps = details.get("applications") or {}
    if app is not None:
        if app not in apps:
            raise ConfigError(f"no application {app!r} is running; running: {sorted(apps)}")
        return app
    if len(apps) != 1:
        raise ConfigError(f"pass --app: the running applications are {sorted(apps) or 'none'}")
    return next(iter(apps))


def scaled_config(
    details: dict[str, Any],
    *,
    app: str,
    deployment: str,
    replicas: int,
    replace_autoscaling: bool = False,
) -> dict[str, Any]:
    """The running config as a ``serve deploy`` body with ``deployment`` set to ``replicas``.

    Every application goes back as it was deployed (its ``deployed_app_config``); only the
    named deployment's ``num_replicas`` changes, which Serve applies without restarting
    anything else.
    """
    if replicas < 0:
        raise ConfigError(f"replicas must be >= 0, got {replicas}")
    applications = []
    for name, entry in (details.get("applications") or {}).items():
        config = entry.get("deployed_app_config")
        if config is None:
            raise ConfigError(
                f"application {name!r} was not deployed from a config (serve run of a Python "
                "app?): only config-deployed services can be scaled through the REST API"
            )
        config = copy.deepcopy(config)
        if name == app:
            known = entry.get("deployments") or {}
            if deployment not in known:
                raise ConfigError(
                    f"application {app!r} has no deployment {deployment!r}; it has {sorted(known)}"
                )
            _set_replicas(config, deployment, replicas, replace_autoscaling=replace_autoscaling)
        applications.append(config)
    body = {key: details[key] for key in TOP_LEVEL_KEYS if details.get(key) is not None}
    body["applications"] = applications
    return body


def _set_replicas(
    config: dict[str, Any], deployment: str, replicas: int, *, replace_autoscaling: bool
) -> None:
    entries = config.setdefault("deployments", [])
    entry = next((d for d in entries if d.get("name") == deployment), None)
    if entry is None:
        entry = {"name": deployment}
        entries.append(entry)
    if entry.get("autoscaling_config") is not None or entry.get("num_replicas") == "auto":
        if not replace_autoscaling:
            raise ConfigError(
                f"{deployment} autoscales ({entry.get('autoscaling_config')}): edit its "
                "autoscaling_config, or pass --replace-autoscaling for a fixed number"
            )
        entry.pop("autoscaling_config", None)
    entry["num_replicas"] = replicas


def cluster_resources(http: httpx.Client) -> dict[str, float]:
    """CPU and GPU of the cluster's live nodes (what ``ray.cluster_resources()`` adds up), from
    the dashboard's state API (``GET /api/v0/nodes``, what ``ray list nodes`` uses)."""
    answer = _check(http.get("/api/v0/nodes", params={"limit": 10000}))
    nodes = answer.get("data", {}).get("result", {}).get("result") or []
    total = {"CPU": 0.0, "GPU": 0.0}
    for node in nodes:
        if node.get("state") == "ALIVE":
            for key in total:
                total[key] += float((node.get("resources_total") or {}).get(key) or 0)
    return total


def requested_resources(
    details: dict[str, Any], *, app: str, deployment: str, replicas: int
) -> dict[str, float]:
    """CPU and GPU every deployment of every application asks for once ``app``'s
    ``deployment`` has ``replicas`` (others at their running config's ``num_replicas``, or their
    replica count when they autoscale); a replica without ``num_cpus`` takes 1, as in Serve."""
    total = {"CPU": 0.0, "GPU": 0.0}
    for name, entry in (details.get("applications") or {}).items():
        for dep_name, dep in (entry.get("deployments") or {}).items():
            config = dep.get("deployment_config") or {}
            count = config.get("num_replicas")
            if name == app and dep_name == deployment:
                count = replicas
            elif not isinstance(count, int):
                count = len(dep.get("replicas") or [])
            options = config.get("ray_actor_options") or {}
            cpus = options.get("num_cpus")
            total["CPU"] += count * (1.0 if cpus is None else float(cpus))
            total["GPU"] += count * float(options.get("num_gpus") or 0)
    return total


def placement_warning(requested: dict[str, float], available: dict[str, float]) -> str | None:
    """What to tell the operator when the replicas asked for need more than the cluster has."""
    short = [
        f"{requested[key]:g} {key} asked for, {available.get(key, 0):g} in the cluster"
        for key in ("CPU", "GPU")
        if requested[key] > available.get(key, 0) + 1e-9
    ]
    if not short:
        return None
    return (
        "the replicas will not all fit ("
        + "; ".join(short)
        + "): Serve keeps the rest waiting for resources, and a waiting replica can take the "
        "place a replacement Ingress or writer needs after a crash; add nodes or ask for fewer"
    )


def running_replicas(details: dict[str, Any], *, app: str, deployment: str) -> int:
    deployments = details.get("applications", {}).get(app, {}).get("deployments", {})
    replicas = deployments.get(deployment, {}).get("replicas") or []
    return sum(1 for replica in replicas if replica.get("state") == "RUNNING")


def scale(
    *,
    address: str,
    deployment: str,
    replicas: int,
    app: str | None = None,
    replace_autoscaling: bool = False,
    wait_s: float = 0.0,
    token: str | None = None,
) -> str:
    """Redeploy the running config with ``deployment`` at ``replicas``; returns the app name.

    With ``wait_s`` > 0, returns once that many replicas are RUNNING (raises after ``wait_s``).
    """
    with client(address, token if token is not None else auth_token()) as http:
        details = running_instance(http)
        name = pick_app(details, app)
        body = scaled_config(
            details,
            app=name,
            deployment=deployment,
            replicas=replicas,
            replace_autoscaling=replace_autoscaling,
        )
        _warn_if_unplaceable(http, details, app=name, deployment=deployment, replicas=replicas)
        _check(http.put(API, json=body))
        logger.info("%s/%s: num_replicas=%d sent to %s", name, deployment, replicas, address)
        deadline = time.monotonic() + wait_s
        while wait_s > 0:
            current = running_replicas(running_instance(http), app=name, deployment=deployment)
            if current == replicas:
                break
            if time.monotonic() > deadline:
                raise PeakNetServeError(
                    f"{name}/{deployment} has {current} RUNNING replicas, not {replicas}, after "
                    f"{wait_s} s: see 'serve status' (are the resources there?)"
                )
            time.sleep(0.5)
    return name


def _warn_if_unplaceable(
    http: httpx.Client, details: dict[str, Any], *, app: str, deployment: str, replicas: int
) -> None:
    try:
        available = cluster_resources(http)
    except (PeakNetServeError, httpx.HTTPError, ValueError) as exc:
        logger.warning("could not read the cluster's resources to check the request: %s", exc)
        return
    requested = requested_resources(details, app=app, deployment=deployment, replicas=replicas)
    if warning := placement_warning(requested, available):
        sys.stderr.write(
            f"peaknet-serve scale: warning: {app}/{deployment} x {replicas}: {warning}\n"
        )


def run(args: argparse.Namespace) -> int:
    try:
        app = scale(
            address=args.address,
            deployment=args.deployment,
            replicas=args.replicas,
            app=args.app,
            replace_autoscaling=args.replace_autoscaling,
            wait_s=args.wait,
        )
    except (PeakNetServeError, httpx.HTTPError) as exc:
        sys.stderr.write(f"peaknet-serve scale: {exc}\n")
        return 1
    done = "running" if args.wait > 0 else "requested"
    sys.stdout.write(f"{app}/{args.deployment}: {args.replicas} replica(s) {done}\n")
    return 0
