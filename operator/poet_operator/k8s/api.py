"""The thin layer that talks to the Kubernetes API: JSON in, JSON out, nothing decided here.

It uses the `kubernetes` client for what it does well (kubeconfig and in-cluster credentials, TLS, token
refresh) and sends plain JSON, so objects stay the dicts the builders produce and the observers read. Calls
are blocking and run on a small thread pool, so the operator's event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import kubernetes.client
import kubernetes.config

from poet_operator import __version__

GROUP = "poet.dev"
VERSION = "v1alpha1"
PLURAL = "modelmonitors"
MERGE_PATCH = "application/merge-patch+json"
# A list of PartialObjectMetadata: names, labels, annotations and owners, without the objects' contents.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
USER_AGENT = f"poet-monitor-operator/{__version__}"


class ApiError(Exception):
    """A refused or failed API call, with the HTTP status and the server's message."""

    def __init__(self, status: int, reason: str, message: str, *, method: str = "", path: str = "") -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.method = method
        self.path = path
        super().__init__(f"{method} {path}: HTTP {status} {reason}: {message}".strip())

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def forbidden(self) -> bool:
        return self.status == 403


@dataclass(frozen=True)
class RawResponse:
    status: int
    body: bytes
    headers: dict[str, str]


def load_client(kubeconfig: str | None = None, context: str | None = None) -> kubernetes.client.ApiClient:
    """A client from a kubeconfig (given, $KUBECONFIG or ~/.kube/config) or the pod's ServiceAccount."""
    if kubeconfig is None:
        try:
            kubernetes.config.load_incluster_config()
            return kubernetes.client.ApiClient()
        except kubernetes.config.ConfigException:
            pass
    return kubernetes.config.new_client_from_config(config_file=kubeconfig, context=context)


def monitor_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}"
    if name is not None:
        path += f"/{quote(name)}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


def core_path(namespace: str, plural: str, name: str | None = None, subresource: str | None = None) -> str:
    path = f"/api/v1/namespaces/{quote(namespace)}/{plural}"
    if name is not None:
        path += f"/{quote(name)}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


def apps_path(namespace: str, plural: str, name: str | None = None) -> str:
    path = f"/apis/apps/v1/namespaces/{quote(namespace)}/{plural}"
    return path + (f"/{quote(name)}" if name is not None else "")


class KubeApi:
    """Blocking JSON calls (`request`) and their asyncio forms (`call`), one shared connection pool."""

    def __init__(
        self,
        client: kubernetes.client.ApiClient,
        *,
        workers: int = 8,
        timeout: float = 30.0,
        user_agent: str = USER_AGENT,
    ) -> None:
        client.user_agent = user_agent
        self.client = client
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube-api")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    # -- the one primitive -----------------------------------------------------------------------------------

    def raw(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        accept: str = "application/json",
        timeout: float | None = None,
    ) -> RawResponse:
        headers = {"Accept": accept}
        payload: Any = body
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
            if isinstance(body, bytes):
                payload = body
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        _, url, header_params, serialized, _ = self.client.param_serialize(
            method=method,
            resource_path=path,
            query_params=params,
            header_params=headers,
            body=payload,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.client.call_api(
                method,
                url,
                header_params=header_params,
                body=serialized,
                _request_timeout=timeout or self.timeout,
            )
            response.read()
            data = response.data or b""
            status = response.status
            response_headers = {k.lower(): v for k, v in (response.getheaders() or {}).items()}
        except kubernetes.client.ApiException as exc:
            data = (exc.body or "").encode() if isinstance(exc.body, str) else (exc.body or b"")
            status = int(exc.status or 0)
            response_headers = {}
        if status >= 400 or status == 0:
            reason, message = "", data.decode("utf-8", "replace")[:500]
            try:
                parsed = json.loads(data)
                if isinstance(parsed, dict):
                    reason, message = str(parsed.get("reason", "")), str(parsed.get("message", message))
            except ValueError:
                pass
            raise ApiError(status, reason, message, method=method, path=path)
        return RawResponse(status, data, response_headers)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.raw(method, path, **kwargs)
        return json.loads(response.body) if response.body else None

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self.request(method, path, **kwargs))

    async def call_raw(self, method: str, path: str, **kwargs: Any) -> RawResponse:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self.raw(method, path, **kwargs))

    # -- conveniences ----------------------------------------------------------------------------------------

    async def get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.call("GET", path)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    async def list_items(
        self, path: str, *, label_selector: str | None = None, metadata_only: bool = False
    ) -> list[dict[str, Any]]:
        """The items of a list; `metadata_only` asks for each item's metadata alone (no data or spec)."""
        accept = METADATA_LIST if metadata_only else "application/json"
        result = await self.call("GET", path, query={"labelSelector": label_selector}, accept=accept)
        return list((result or {}).get("items") or [])

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> Any:
        return await self.call("PATCH", path, body=dict(body), content_type=MERGE_PATCH)

    async def delete(self, path: str) -> bool:
        """Delete; False when it was already gone."""
        try:
            await self.call("DELETE", path, body={"propagationPolicy": "Background"})
            return True
        except ApiError as exc:
            if exc.not_found:
                return False
            raise


def merge_patch_between(old: Any, new: Any) -> Any:
    """The RFC 7386 merge patch that turns `old` into `new` (keys that disappear become null)."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return new
    patch: dict[str, Any] = {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif isinstance(value, Mapping) and isinstance(old[key], Mapping):
            inner = merge_patch_between(old[key], value)
            if inner:
                patch[key] = inner
        elif value != old[key]:
            patch[key] = value
    return patch


__all__ = [
    "GROUP",
    "PLURAL",
    "VERSION",
    "ApiError",
    "KubeApi",
    "apps_path",
    "core_path",
    "load_client",
    "merge_patch_between",
    "monitor_path",
]
