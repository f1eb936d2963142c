"""The cluster side of `poetmon status|history|diff|promote|abort|regenerate|pause|resume` (`kubectl poet`).

Reads a ModelMonitor (CustomObjectsApi) and its version ConfigMaps (CoreV1Api), writes the manual-control
annotations with a JSON merge patch, and turns every failure into one line a person can act on (exit 1).
The text itself comes from `rollout.render`; the patches from `rollout.manual`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from poet_operator.rollout import manual, render
from poet_operator.rollout.status import MonitorStatus

GROUP = "poet.dev"
VERSION = "v1alpha1"
PLURAL = "modelmonitors"
MONITOR_RESOURCE = f"{PLURAL}.{GROUP}"
LABEL_MONITOR = "poet.dev/monitor"
LABEL_VERSION = "poet.dev/version"
CODE_KEY = "monitor.py"
MANIFEST_KEY = "manifest.json"
# Connect fast (a wrong address should not hang a terminal), read patiently (a busy API server).
REQUEST_TIMEOUT = (5.0, 30.0)
_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_VERSION_ARG = re.compile(r"^v?(\d+)$")


class UserCommandError(Exception):
    """A failure explained in one line (printed as `error: ...`, exit status 1)."""


class NotFoundError(UserCommandError):
    """The object asked for does not exist (the resource itself is served)."""


@dataclass
class Session:
    """An API client bound to the namespace the command works in."""

    api: Any  # kubernetes.client.ApiClient
    namespace: str
    server: str


# -- connecting ------------------------------------------------------------------------------------------


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Session:
    """Load the kubeconfig (or the in-cluster service account) and pick the namespace: `-n`, else the
    context's namespace, else `default`."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    in_cluster = (
        kubeconfig is None
        and not os.environ.get("KUBECONFIG")
        and not Path("~/.kube/config").expanduser().exists()
        and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    )
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)
            context_namespace = (
                _SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
                if _SERVICE_ACCOUNT_NAMESPACE.exists()
                else None
            )
        else:
            config_file = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            if kubeconfig is not None and not Path(kubeconfig).expanduser().exists():
                raise UserCommandError(f"kubeconfig {kubeconfig} does not exist")
            contexts, current = config.list_kube_config_contexts(config_file=config_file)
            chosen = current
            if context is not None:
                chosen = next((c for c in contexts if c.get("name") == context), None)
                if chosen is None:
                    known = ", ".join(sorted(c.get("name", "?") for c in contexts)) or "none"
                    raise UserCommandError(
                        f"context {context!r} is not in the kubeconfig (contexts: {known})"
                    )
            context_namespace = ((chosen or {}).get("context") or {}).get("namespace")
            config.load_kube_config(
                config_file=config_file,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except ConfigException as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        reason = _one_line(str(exc)).rstrip(".")
        raise UserCommandError(
            f"no usable kubeconfig ({where}): {reason}; pass --kubeconfig or set KUBECONFIG"
        ) from None
    configuration.retries = 1  # one retry on a dropped connection, not urllib3's three
    return Session(
        client.ApiClient(configuration), namespace or context_namespace or "default", configuration.host
    )


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- errors ----------------------------------------------------------------------------------------------


def _api_message(body: Any) -> str:
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else {}
    except ValueError:
        return _one_line(body.decode() if isinstance(body, bytes) else str(body))
    return _one_line(data.get("message", "")) if isinstance(data, dict) else ""


def explain_api_error(
    status: int, body: Any, *, verb: str, resource: str, name: str | None, namespace: str, server: str
) -> str:
    """One line for an API error: what was refused and what to do about it."""
    message = _api_message(body)
    target = f"{resource} {name!r}" if name else resource
    if status == 403:
        return (
            f"forbidden: you may not {verb} {target} in namespace {namespace} "
            f"(needs RBAC verb {verb!r} on {resource}){': ' + message if message else ''}"
        )
    if status == 401:
        return f"unauthorized: the API server at {server} refused the kubeconfig's credentials; log in again"
    if status == 404 and "could not find the requested resource" in message:
        return (
            f"the cluster does not serve {resource}: install the ModelMonitor CRD "
            f"(kubectl apply -f crds/modelmonitor.yaml)"
        )
    detail = f": {message}" if message else ""
    return f"the API server answered {status} to {verb} {target} in namespace {namespace}{detail}"


def _call(
    session: Session,
    fn: Callable[..., Any],
    *,
    verb: str,
    resource: str,
    name: str | None,
    not_found: str | None = None,
    **kwargs: Any,
) -> Any:
    """Call the API; every failure becomes a UserCommandError with one line to show."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        if name is not None:
            kwargs["name"] = name
        return fn(_request_timeout=REQUEST_TIMEOUT, **kwargs)
    except ApiException as exc:
        if exc.status == 404 and "could not find the requested resource" not in _api_message(exc.body):
            raise NotFoundError(
                not_found or f"{resource} {name!r} not found in namespace {session.namespace}"
            ) from None
        raise UserCommandError(
            explain_api_error(
                exc.status or 0,
                exc.body,
                verb=verb,
                resource=resource,
                name=name,
                namespace=session.namespace,
                server=session.server,
            )
        ) from None
    except HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise UserCommandError(
            f"cannot reach the Kubernetes API at {session.server} ({_one_line(_connection_reason(reason))}); "
            "check --kubeconfig/--context or try: kubectl cluster-info"
        ) from None
    except OSError as exc:
        raise UserCommandError(
            f"cannot reach the Kubernetes API at {session.server} ({_one_line(str(exc))}); "
            "check --kubeconfig/--context or try: kubectl cluster-info"
        ) from None


def _connection_reason(reason: Any) -> str:
    text = str(reason)
    # urllib3 wraps the cause as "<connection object>: Failed to establish a new connection: [Errno 111] ...".
    return text.split(": ", 1)[1] if "object at 0x" in text and ": " in text else text


# -- reading ---------------------------------------------------------------------------------------------


def _monitor_not_found(session: Session, name: str) -> str:
    return (
        f"modelmonitor {name!r} not found in namespace {session.namespace} "
        f"(see: kubectl get mm -n {session.namespace})"
    )


def read_monitor(session: Session, name: str) -> dict[str, Any]:
    from kubernetes import client

    api = client.CustomObjectsApi(session.api)
    return _call(
        session,
        api.get_namespaced_custom_object,
        verb="get",
        resource=MONITOR_RESOURCE,
        name=name,
        not_found=_monitor_not_found(session, name),
        group=GROUP,
        version=VERSION,
        namespace=session.namespace,
        plural=PLURAL,
    )


def kept_versions(session: Session, name: str) -> list[int]:
    """Version numbers whose ConfigMaps still exist (labelled poet.dev/monitor=NAME)."""
    from kubernetes import client

    api = client.CoreV1Api(session.api)
    listed = _call(
        session,
        api.list_namespaced_config_map,
        verb="list",
        resource="configmaps",
        name=None,
        namespace=session.namespace,
        label_selector=f"{LABEL_MONITOR}={name}",
    )
    numbers = set()
    for item in listed.items:
        labels = item.metadata.labels or {}
        if labels.get(LABEL_MONITOR) != name:  # the selector already did this on a real API server
            continue
        match = _VERSION_ARG.match(labels.get(LABEL_VERSION, "")) or re.match(
            rf"^{re.escape(name)}-v(\d+)$", item.metadata.name or ""
        )
        if match:
            numbers.add(int(match.group(1)))
    return sorted(numbers)


def resolve_version(argument: str, obj: Mapping[str, Any]) -> int:
    """A version argument: `3`, `v3`, `stable` or `canary`."""
    status = MonitorStatus.from_obj(obj.get("status"))
    name = (obj.get("metadata") or {}).get("name", "?")
    if argument in ("stable", "canary"):
        number = status.stable_version if argument == "stable" else status.canary_version
        if number is None:
            raise UserCommandError(f"{name} has no {argument} version now (phase {status.phase})")
        return number
    match = _VERSION_ARG.match(argument.strip())
    if not match or int(match.group(1)) < 1:
        raise UserCommandError(
            f"version {argument!r} is not a version: use a number (3 or v3), stable or canary"
        )
    return int(match.group(1))


def read_version(session: Session, obj: Mapping[str, Any], number: int) -> render.VersionPayload:
    """The code and manifest of version `number`, from its ConfigMap."""
    from kubernetes import client

    name = obj["metadata"]["name"]
    status = MonitorStatus.from_obj(obj.get("status"))
    entry = status.version(number)
    config_map = (entry.config_map if entry and entry.config_map else None) or f"{name}-v{number}"
    api = client.CoreV1Api(session.api)
    try:
        found = _call(
            session,
            api.read_namespaced_config_map,
            verb="get",
            resource="configmaps",
            name=config_map,
            namespace=session.namespace,
        )
    except NotFoundError:
        raise UserCommandError(_missing_version_message(session, obj, number, config_map)) from None
    data = found.data or {}
    for key in (CODE_KEY, MANIFEST_KEY):
        if key not in data:
            raise UserCommandError(
                f"ConfigMap {config_map} has no key {key!r}: it is not a poet-monitor version"
            )
    try:
        manifest = json.loads(data[MANIFEST_KEY])
    except ValueError as exc:
        raise UserCommandError(f"ConfigMap {config_map}: {MANIFEST_KEY} is not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise UserCommandError(f"ConfigMap {config_map}: {MANIFEST_KEY} is not a JSON object")
    return render.VersionPayload(number=number, config_map=config_map, code=data[CODE_KEY], manifest=manifest)


def _missing_version_message(session: Session, obj: Mapping[str, Any], number: int, config_map: str) -> str:
    name = obj["metadata"]["name"]
    status = MonitorStatus.from_obj(obj.get("status"))
    kept = kept_versions(session, name)
    kept_text = ", ".join(f"v{n}" for n in kept) or "none"
    if status.version(number) is None and number > status.latest_version:
        latest = status.latest_version
        return f"{name} has no version {number} (latest is v{latest}; ConfigMaps kept: {kept_text})"
    return (
        f"ConfigMap {config_map} of version {number} is gone (old versions are garbage-collected); "
        f"versions kept for {name}: {kept_text}"
    )


def patch_monitor(session: Session, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch of the ModelMonitor (the client sends merge-patch+json for a dict body)."""
    from kubernetes import client

    api = client.CustomObjectsApi(session.api)
    return _call(
        session,
        api.patch_namespaced_custom_object,
        verb="patch",
        resource=MONITOR_RESOURCE,
        name=name,
        not_found=_monitor_not_found(session, name),
        group=GROUP,
        version=VERSION,
        namespace=session.namespace,
        plural=PLURAL,
        body=dict(patch),
    )


# -- commands --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Terminal:
    """Where output goes and how it may look."""

    out: TextIO
    err: TextIO
    color: bool
    width: int

    @classmethod
    def detect(cls, out: TextIO | None = None, err: TextIO | None = None) -> Terminal:
        out = out or sys.stdout
        tty = bool(getattr(out, "isatty", lambda: False)())
        color = tty and not os.environ.get("NO_COLOR")
        width = shutil.get_terminal_size((render.DEFAULT_WIDTH, 24)).columns if tty else render.DEFAULT_WIDTH
        return cls(out, err or sys.stderr, color, max(60, width))


def user_command(
    command: str,
    *,
    name: str,
    namespace: str | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
    output: str | None = None,
    versions: tuple[str, str] | None = None,
    terminal: Terminal | None = None,
    now: datetime | None = None,
) -> int:
    """Run one user command against the cluster; 0 on success, 1 with `error: ...` on stderr."""
    from pydantic import ValidationError

    term = terminal or Terminal.detect()
    try:
        session = connect(kubeconfig, context, namespace)
        try:
            text = _run(command, session, name, output, versions, term, now or datetime.now(UTC))
        except ValidationError as exc:  # a status written by a newer (or broken) operator
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            raise UserCommandError(
                f"the status of {name} is not what this version of poetmon reads (status.{where}: "
                f"{first.get('msg', 'invalid')}); use -o json, or upgrade poetmon"
            ) from None
        finally:
            session.api.close()
    except UserCommandError as exc:
        print(f"error: {exc}", file=term.err)
        return 1
    term.out.write(text)
    term.out.flush()
    return 0


def _run(
    command: str,
    session: Session,
    name: str,
    output: str | None,
    versions: tuple[str, str] | None,
    term: Terminal,
    now: datetime,
) -> str:
    as_json = output == "json"
    obj = read_monitor(session, name)
    if command == "status":
        if as_json:
            return _json(render.status_json(obj))
        return render.render_status(obj, now, color=term.color, width=term.width)
    if command == "history":
        if as_json:
            return _json(render.history_json(obj))
        return render.render_history(obj, now, color=term.color, width=term.width)
    if command == "diff":
        if versions is None:
            raise UserCommandError("diff needs two versions, e.g.: kubectl poet diff NAME 2 3")
        a = read_version(session, obj, resolve_version(versions[0], obj))
        b = read_version(session, obj, resolve_version(versions[1], obj))
        if as_json:
            return _json(render.diff_json(name, a, b))
        return render.render_diff(name, a, b, color=term.color, width=term.width)
    if command in manual.MANUAL_COMMANDS:
        patch = manual.annotation_patch(command, now)  # type: ignore[arg-type]
        patched = patch_monitor(session, name, patch)
        if as_json:
            return _json(
                {
                    "name": name,
                    "namespace": session.namespace,
                    "patch": patch,
                    "annotations": (patched.get("metadata") or {}).get("annotations") or {},
                }
            )
        return manual.request_message(command, obj) + "\n"  # type: ignore[arg-type]
    raise UserCommandError(f"unknown command {command!r}")


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


__all__ = [
    "NotFoundError",
    "Session",
    "Terminal",
    "UserCommandError",
    "connect",
    "explain_api_error",
    "kept_versions",
    "patch_monitor",
    "read_monitor",
    "read_version",
    "resolve_version",
    "user_command",
]
