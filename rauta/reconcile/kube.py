"""Kubernetes access for the controller: a thin REST client and kopf-style watches.

Role: turn the API server into the same ``Event`` stream the file source and scenario
replay produce. ``kubernetes_asyncio`` provides configuration (kubeconfig or in-cluster)
and the authenticated HTTP transport; the list/watch protocol is handled here explicitly
so that its rules are visible and tested.

Rules (kopf's, made explicit):
- List, then watch from the list's ``resourceVersion`` with ``allowWatchBookmarks``.
- A bookmark only advances the resourceVersion. A watch that ends normally resumes from
  the last resourceVersion seen, without a re-list.
- 410 Gone (as a status or an ERROR event) means the resourceVersion is too old: re-list
  and hand the full listing to ``on_relist``, which applies only the real differences.
- Other errors back off exponentially with full jitter (capped), honouring Retry-After.
- ``connected`` tells whether the last list/watch round-trip succeeded (for /readyz).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig

from rauta.reconcile.store import Event

log = logging.getLogger("rauta.kube")


@dataclass(frozen=True)
class Kind:
    kind: str
    api_version: str  # "v1", "gateway.networking.k8s.io/v1", ...
    plural: str
    namespaced: bool = True
    field_selector: str | None = None

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        ns = f"/namespaces/{namespace}" if namespace and self.namespaced else ""
        tail = f"/{name}" if name else ""
        sub = f"/{subresource}" if subresource else ""
        return f"{base}{ns}/{self.plural}{tail}{sub}"


GW = "gateway.networking.k8s.io"
KINDS: dict[str, Kind] = {
    "GatewayClass": Kind("GatewayClass", f"{GW}/v1", "gatewayclasses", namespaced=False),
    "Gateway": Kind("Gateway", f"{GW}/v1", "gateways"),
    "HTTPRoute": Kind("HTTPRoute", f"{GW}/v1", "httproutes"),
    "ReferenceGrant": Kind("ReferenceGrant", f"{GW}/v1beta1", "referencegrants"),
    "Service": Kind("Service", "v1", "services"),
    "EndpointSlice": Kind("EndpointSlice", "discovery.k8s.io/v1", "endpointslices"),
    "Namespace": Kind("Namespace", "v1", "namespaces", namespaced=False),
    "Secret": Kind("Secret", "v1", "secrets", field_selector="type=kubernetes.io/tls"),
}


class ApiError(Exception):
    def __init__(self, status: int, body: Any, retry_after: float | None = None) -> None:
        self.status, self.body, self.retry_after = status, body, retry_after
        message = body.get("message") if isinstance(body, Mapping) else str(body)[:200]
        super().__init__(f"HTTP {status}: {message}")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class KubeClient:
    """Authenticated JSON requests and line-delimited watch streams."""

    def __init__(self, api: kclient.ApiClient) -> None:
        self.api = api

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, context: str | None = None
                      ) -> KubeClient:
        conf = kclient.Configuration()
        if kubeconfig is None:
            try:
                kconfig.load_incluster_config(client_configuration=conf)
            except kconfig.ConfigException:
                await kconfig.load_kube_config(context=context, client_configuration=conf)
        else:
            await kconfig.load_kube_config(config_file=kubeconfig, context=context,
                                           client_configuration=conf)
        return cls(kclient.ApiClient(conf))

    async def close(self) -> None:
        await self.api.close()

    async def _call(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
                    body: Any = None, timeout: float | None = 30.0,
                    content_type: str = "application/json") -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        return await self.api.call_api(
            path, method, query_params=query or [], header_params=headers, body=body,
            auth_settings=["BearerToken"], _preload_content=False,
            _request_timeout=timeout)

    async def request(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
                      body: Any = None, timeout: float = 30.0,
                      content_type: str = "application/json") -> Any:
        resp = await self._call(method, path, query=query, body=body, timeout=timeout,
                                content_type=content_type)
        try:
            text = await resp.text()
        finally:
            resp.release()
        data = json.loads(text) if text else None
        if not 200 <= resp.status <= 299:
            raise ApiError(resp.status, data if data is not None else text,
                           _retry_after(resp.headers))
        return data

    async def stream(self, path: str, query: list[tuple[str, str]], timeout: float,
                     on_open: Callable[[], None] | None = None
                     ) -> AsyncIterator[dict[str, Any]]:
        """Watch events, one JSON object per line; ``on_open`` runs once the server has
        accepted the watch (HTTP 2xx), before any event arrives."""
        resp = await self._call("GET", path, query=query, timeout=timeout)
        try:
            if not 200 <= resp.status <= 299:
                text = await resp.text()
                try:
                    body: Any = json.loads(text)
                except ValueError:
                    body = text
                raise ApiError(resp.status, body, _retry_after(resp.headers))
            if on_open is not None:
                on_open()
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            resp.release()


@dataclass
class Backoff:
    base: float = 0.2
    cap: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self, retry_after: float | None = None) -> float:
        """Full-jitter exponential backoff; Retry-After is a floor."""
        self.attempt += 1
        delay = self.rng.uniform(0, min(self.cap, self.base * 2 ** self.attempt))
        return max(delay, retry_after or 0.0)

    def reset(self) -> None:
        self.attempt = 0


def _with_kind(item: dict[str, Any], kind: Kind) -> dict[str, Any]:
    item.setdefault("kind", kind.kind)
    item.setdefault("apiVersion", kind.api_version)
    return item


class Watcher:
    """One list+watch loop for one kind, feeding ``on_event`` and ``on_relist``."""

    def __init__(self, client: KubeClient, kind: Kind, *,
                 on_event: Callable[[Event], None],
                 on_relist: Callable[[list[dict[str, Any]]], None],
                 namespace: str | None = None, watch_timeout: int = 290,
                 page_size: int = 500) -> None:
        self.client, self.kind = client, kind
        self.on_event, self.on_relist = on_event, on_relist
        self.namespace = namespace
        self.watch_timeout, self.page_size = watch_timeout, page_size
        self.resource_version: str | None = None
        self.connected = False
        self.relists = 0
        self.events = 0
        self.backoff = Backoff()

    def _query(self) -> list[tuple[str, str]]:
        q: list[tuple[str, str]] = []
        if self.kind.field_selector:
            q.append(("fieldSelector", self.kind.field_selector))
        return q

    async def list(self) -> tuple[list[dict[str, Any]], str]:
        items: list[dict[str, Any]] = []
        cont: str | None = None
        while True:
            q = self._query() + [("limit", str(self.page_size))]
            if cont:
                q.append(("continue", cont))
            data = await self.client.request("GET", self.kind.path(self.namespace), query=q)
            items.extend(_with_kind(i, self.kind) for i in data.get("items") or ())
            meta = data.get("metadata") or {}
            cont = meta.get("continue")
            if not cont:
                return items, str(meta.get("resourceVersion", ""))

    async def relist(self) -> None:
        items, rv = await self.list()
        self.relists += 1
        self.resource_version = rv
        self.on_relist(items)

    async def watch_once(self) -> None:
        """One watch request from ``resource_version``; returns when the server ends it."""
        q = self._query() + [("watch", "1"), ("allowWatchBookmarks", "true"),
                             ("resourceVersion", self.resource_version or ""),
                             ("timeoutSeconds", str(self.watch_timeout))]
        async for ev in self.client.stream(self.kind.path(self.namespace), q,
                                           timeout=self.watch_timeout + 30,
                                           on_open=self._opened):
            etype, obj = ev.get("type"), ev.get("object") or {}
            if etype == "ERROR":
                raise ApiError(int(obj.get("code") or 500), obj)
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv:
                self.resource_version = rv
            self.connected = True
            self.backoff.reset()
            if etype == "BOOKMARK":
                continue
            if etype in ("ADDED", "MODIFIED", "DELETED"):
                self.events += 1
                self.on_event(Event(etype, _with_kind(obj, self.kind)))

    def _opened(self) -> None:
        """A (re)started watch was accepted: connected again, without waiting for events."""
        self.connected = True
        self.backoff.reset()

    async def run(self) -> None:
        """List and watch forever (cancel to stop)."""
        need_list = True
        while True:
            try:
                if need_list:
                    await self.relist()
                    need_list = False
                    self.connected = True
                    self.backoff.reset()
                await self.watch_once()
            except ApiError as exc:
                if exc.status == 410:
                    log.info("%s: resourceVersion too old (410 Gone), re-listing",
                             self.kind.kind)
                    need_list = True
                    continue
                self.connected = False
                delay = self.backoff.next(exc.retry_after)
                log.warning("%s: %s; retrying in %.2fs", self.kind.kind, exc, delay)
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network errors, timeouts, bad JSON
                self.connected = False
                delay = self.backoff.next()
                log.warning("%s: watch failed (%s: %s); retrying in %.2fs", self.kind.kind,
                            type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
