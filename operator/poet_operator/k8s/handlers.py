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
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="poet.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="poet.dev")
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        await reconciler.start()

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


__all__ = ["register"]
