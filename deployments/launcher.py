"""``peaknet-serve run``: ``serve run`` for this application, with a drain on SIGTERM too.

``serve run`` drains only on Ctrl-C, and gives the replicas 30 s at most. This launcher turns
SIGINT and SIGTERM alike into: the ingress stops pulling and drains its batches in flight
(while the model and writer replicas are still up), the application is deleted (writers close
and rename their files), Serve shuts down. A second signal forces the exit at once.

The CLI finds this module through the ``peaknet_serve.subcommands`` entry point (pyproject.toml),
so the library never names it. Ray is imported inside the functions only: ``peaknet-serve
--help`` must not import it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from peaknet_serve.config import load_service_config, read_yaml
from peaknet_serve.errors import ConfigError

logger = logging.getLogger(__name__)

HELP = "run the service from a Serve config (like 'serve run'), draining on SIGINT and SIGTERM"

FORCED_EXIT_CODE = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="Serve config file (serve_config.yaml)")
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (e.g. auto); default: start a local one, like 'serve run'",
    )


def run(args: argparse.Namespace) -> int:
    """Deploy, wait for a signal, drain, shut down; 0 after a clean drain."""
    try:
        raw = read_yaml(args.config)
        load_service_config(raw)  # every application's args, validated before Ray starts
    except ConfigError as exc:
        logger.error("%s", exc)
        return 1
    names = deploy(raw, address=args.address)
    stop = threading.Event()
    install_signal_handlers(stop)  # after ray.init, which installs a SIGTERM handler that aborts
    logger.info("running %s; Ctrl-C or SIGTERM drains and stops", ", ".join(names))
    while not stop.wait(1.0):
        pass
    logger.warning("stopping: draining in-flight batches (a second signal forces the exit)")
    return wait_in_python(drain_and_shutdown, names)


def wait_in_python(drain: Callable[[list[str]], int], names: list[str]) -> int:
    """``drain(names)`` in a thread of its own, the main thread waiting in short Python waits.

    Python runs signal handlers only on the main thread, between bytecodes: a main thread blocked
    inside Ray's C++ core (a call waiting on a dead raylet) would never run the second signal's
    handler, and the forced exit would not come.
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="drain") as pool:
        done = pool.submit(drain, names)
        while True:
            with contextlib.suppress(concurrent.futures.TimeoutError):
                return done.result(timeout=0.5)


def install_signal_handlers(stop: threading.Event) -> None:
    """First SIGINT/SIGTERM sets ``stop``; the next one exits at once."""

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            logger.error("second %s: exiting without waiting", signal.Signals(signum).name)
            os._exit(FORCED_EXIT_CODE)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def deploy(raw: dict[str, Any], *, address: str | None) -> list[str]:
    """Start (or join) Ray and Serve and deploy every application of the Serve config."""
    import ray
    from ray.serve._private import api as serve_api
    from ray.serve._private.constants import SERVE_NAMESPACE
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(raw)
    if not ray.is_initialized():
        ray.init(address=address, namespace=SERVE_NAMESPACE)
    client = serve_api.serve_start(
        http_options=config.http_options.model_dump(),
        proxy_location=config.proxy_location,
        controller_options=config.controller_options,
    )
    client.deploy_apps(config, _blocking=False)
    return [app.name for app in config.applications]


def drain_and_shutdown(names: list[str]) -> int:
    """Drain every ingress, then delete the applications and stop Serve."""
    from ray import serve

    status = 0
    for name in names:
        try:
            account = serve.get_app_handle(name).drain.remote().result()
        except Exception as exc:  # the app may never have started; still shut down
            logger.error("application %s could not drain: %s", name, exc)
            status = 1
            continue
        logger.warning("application %s drained: %s", name, _summary(account))
        if account.get("in_flight"):
            status = 1
    for name in names:
        serve.delete(name)
    serve.shutdown()
    return status


def _summary(account: dict[str, Any]) -> str:
    """The service's account (every ingress replica, dead ones included), with what was lost."""
    service = account.get("service") or account
    keys = ("received", "hits_written", "non_hits", "failed", "in_flight")
    parts = [f"{key}={service.get(key)}" for key in keys]
    if service.get("lost"):
        floor = "at least " if service.get("lost_at_least") else ""
        parts.append(
            f"lost={floor}{service['lost']} {service.get('lost_by_reason')} "
            f"(messages_lost={service.get('messages_lost')})"
        )
    return ", ".join(parts)
