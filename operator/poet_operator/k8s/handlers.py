"""The kopf handlers: thin. Every event only queues the monitor it concerns; the reconciler does the rest.

Only event handlers are used, so kopf keeps no per-object progress of its own (nothing in annotations or
status that the CRD would have to declare) and adds no finalizer: owner references let Kubernetes' garbage
collector remove a deleted monitor's objects, and a deletion can never hang on the operator.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from poet_operator.k8s.api import GROUP, PLURAL, VERSION
from poet_operator.k8s.observe import LABEL_MONITOR
from poet_operator.k8s.reconciler import Reconciler

MANAGED_BY = {"app.kubernetes.io/managed-by": "poet-monitor"}


def register(registry: kopf.OperatorRegistry, reconciler: Reconciler) -> None:
    """Register the handlers on `registry` (one registry per operator, so tests can run several)."""

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # The operator writes its own Events, with reasons users can filter on; kopf's would double them.
        settings.posting.enabled = False
        # Watches that hang silently are kopf's best-known failure: time them out on both ends and reconnect.
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.watching.connect_timeout = 30
        settings.networking.request_timeout = 60
        # The namespaces are given (or all are watched) and the chart installs the CRD before the operator:
        # no scanning of namespaces and CRDs, so the operator needs no permission on either.
        settings.scanning.disabled = True
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="poet.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="poet.dev")
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        await reconciler.start()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # The same credentials as the operator's own client (in-cluster, or the kubeconfig it was given),
        # read again on every login so a rotated ServiceAccount token is picked up.
        return connection_info(reconciler.api.client.configuration)

    @kopf.on.cleanup(registry=registry)
    async def shutdown(**_: Any) -> None:
        await reconciler.stop()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def monitor_changed(namespace: str, name: str, **_: Any) -> None:
        reconciler.enqueue(namespace, name)

    @kopf.on.event("", "v1", "pods", labels=MANAGED_BY, registry=registry)
    async def pod_changed(namespace: str, labels: dict[str, str], **_: Any) -> None:
        monitor = labels.get(LABEL_MONITOR)
        if monitor:
            reconciler.enqueue(namespace, monitor)

    @kopf.on.probe(id="reconciler", registry=registry)
    def reconciler_state(**_: Any) -> dict[str, int]:
        return reconciler.stats()


def connection_info(config: Any) -> kopf.ConnectionInfo:
    """kopf's credentials from a `kubernetes.client.Configuration` (token, client certificate or basic)."""
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (
        (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    )
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )


__all__ = ["connection_info", "register"]
