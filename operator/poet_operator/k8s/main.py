"""`poetmon operator`: start the operator against a kubeconfig or from inside the cluster."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import kopf

from poet_operator import __version__
from poet_operator.k8s.api import KubeApi, load_client
from poet_operator.k8s.defaults import SpecDefaults
from poet_operator.k8s.handlers import register
from poet_operator.k8s.metrics import OperatorMetrics
from poet_operator.k8s.reconciler import OperatorConfig, Reconciler

DEFAULT_RUNTIME_IMAGE = f"poet-monitor/runtime:{__version__}"


@dataclass
class Operator:
    """One operator: its registry, reconciler and metrics, ready to run with `kopf.operator`."""

    registry: kopf.OperatorRegistry
    reconciler: Reconciler
    metrics: OperatorMetrics
    api: KubeApi

    async def run(
        self,
        *,
        namespaces: Sequence[str] = (),
        health_port: int | None = None,
        stop_flag: asyncio.Event | None = None,
        ready_flag: asyncio.Event | None = None,
    ) -> None:
        liveness = f"http://0.0.0.0:{health_port}/healthz" if health_port else None
        try:
            await kopf.operator(
                registry=self.registry,
                standalone=True,  # one replica (the chart's Deployment uses strategy Recreate), no peering
                clusterwide=not namespaces,
                namespaces=list(namespaces),
                liveness_endpoint=liveness,
                stop_flag=stop_flag,
                ready_flag=ready_flag,
            )
        finally:
            self.api.close()


def build_operator(config: OperatorConfig, *, kubeconfig: str | None = None) -> Operator:
    """Wire the pieces; nothing talks to the cluster until `run`."""
    api = KubeApi(load_client(kubeconfig))
    metrics = OperatorMetrics()
    reconciler = Reconciler(api, config, metrics)
    registry = kopf.OperatorRegistry()
    register(registry, reconciler)
    return Operator(registry, reconciler, metrics, api)


def operator_command(
    namespaces: Sequence[str] = (),
    *,
    operator_namespace: str | None = None,
    runtime_image: str | None = None,
    metrics_port: int = 9090,
    health_port: int = 8081,
    prometheus_url: str | None = None,
    kubeconfig: str | None = None,
) -> int:
    """`poetmon operator`: run until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = OperatorConfig(
        runtime_image=runtime_image or os.environ.get("POET_RUNTIME_IMAGE") or DEFAULT_RUNTIME_IMAGE,
        operator_namespace=operator_namespace or os.environ.get("POD_NAMESPACE") or "poet-system",
        prometheus_url=prometheus_url or os.environ.get("POET_PROMETHEUS_URL") or None,
        spec_defaults=SpecDefaults.from_env(),
    )
    try:
        operator = build_operator(config, kubeconfig=kubeconfig)
    except Exception as exc:  # a missing kubeconfig is the usual cause: one line, no traceback
        print(f"poetmon operator: cannot reach a cluster: {exc}", file=sys.stderr)
        return 1
    if metrics_port:
        operator.metrics.serve(metrics_port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        await operator.run(namespaces=namespaces, health_port=health_port, stop_flag=stop)

    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("poetmon operator must run on the main thread")
    asyncio.run(main())
    return 0


__all__ = ["DEFAULT_RUNTIME_IMAGE", "Operator", "build_operator", "operator_command"]
