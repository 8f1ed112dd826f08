"""The Proxy: programs the data plane from RouterConfigs.

Role: the one object the controller talks to. ``apply`` installs a RouterConfig (and the
PEM material of the Secrets it references): it swaps the routing table, opens listening
sockets for new ports, drains and closes removed ones, updates certificates in place, and
trims the upstream pool; it reports what it managed as ``rauta.model.status.Applied``.

Rules:
- The configuration swap is one reference assignment: every request routes with the
  config that was current when its headers were complete, so requests in flight finish
  on the old config while new ones see the new one. The new config is installed before
  new ports start accepting, so a new port never serves with the previous config.
- Listeners are keyed by ``(address, port)``: a PortConfig with an ``address`` binds that
  address (a Gateway's own), one without binds the proxy's ``host``. ``Applied`` reports
  the first in ``addressed``/``failed_at`` and the second in ``ports``/``failed``.
- Ports are compared by (address, number) and protocol: an unchanged port keeps its socket and its
  connections; a removed port (or one whose protocol changed) stops accepting at once and
  its connections finish the request in flight (answered with ``Connection: close``, or
  after a GOAWAY on HTTP/2) for at most ``drain_seconds`` in the background, then are closed. Idle ones close at once.
- HTTPS ports get their certificates from ``tls`` (keyed "namespace/name", as in
  ``TLSCertificate.secrets``). A new HTTPS port with no usable certificate is not opened
  and is reported failed; an existing one keeps its previous certificates (logged).
- A port that cannot be bound (address in use, permission) is reported in
  ``Applied.failed`` with the error text (``cannot listen on HOST:PORT: ...``), logged as
  a warning once per error, and tried again at the next ``apply``.
- Metrics label a rule by its ``name`` when it has one (else its index): the names of
  the applied config are handed to ``ProxyMetrics`` at each apply.
- ``access_log``: a file ("-": stdout) for the JSON access log (``AccessLog``), closed
  with the proxy.
- Idle upstream connections to endpoints no longer referenced (by any backend or mirror)
  are closed.
- ``reuse_port``: listening sockets set SO_REUSEPORT, so that several processes (the
  data-plane workers of ``rauta.workers``) bind the same ports and the kernel spreads
  new connections among them. Off by default: a port another program holds must stay a
  bind failure, never a silent share.
- ``apply`` calls are serialised; ``generation`` counts successful applies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry

from rauta.model.config import EMPTY, PortConfig, RouterConfig
from rauta.model.routing import endpoint_keys, prepare
from rauta.model.status import Applied
from rauta.proxy.accesslog import AccessLog
from rauta.proxy.metrics import ProxyMetrics
from rauta.proxy.mirror import Mirrorer
from rauta.proxy.runtime import Runtime
from rauta.proxy.server import Listener
from rauta.proxy.tls import PortTLS, check_pair
from rauta.proxy.upstream import Key, UpstreamPool

log = logging.getLogger(__name__)

_NO_TLS: Mapping[str, tuple[bytes, bytes]] = {}


def referenced_endpoints(config: RouterConfig) -> frozenset[Key]:
    """Every ``(address, port)`` a backend or mirror of ``config`` may send to."""
    keys: set[Key] = set()
    for port in config.ports:
        for lr in port.listeners:
            for rule in lr.rules:
                backends = [*rule.backends, *(m.backend for m in rule.filters.mirrors)]
                for backend in backends:
                    keys.update((e.address, e.port) for e in backend.endpoints)
    return frozenset(keys)


def _prepare(config: RouterConfig) -> dict[tuple[str, int], str]:
    """``prepare`` (Maglev tables) plus the rule names of ``config``, for a worker thread."""
    prepare(config)
    return {(r.route, r.rule_index): r.rule_name
            for port in config.ports for lr in port.listeners for r in lr.rules
            if r.rule_name}


class Proxy:
    """The in-process L7 proxy of rauta (see the module doc)."""

    def __init__(self, *, host: str = "127.0.0.1", registry: CollectorRegistry | None = None,
                 hash_on: str = "flow", drain_seconds: float = 10.0,
                 max_idle_per_endpoint: int = 64, connect_timeout: float = 5.0,
                 upstream_idle_timeout: float = 60.0, client_idle_timeout: float = 75.0,
                 max_head_bytes: int = 64 * 1024, max_headers: int = 100,
                 head_timeout: float = 30.0, response_head_timeout: float = 60.0,
                 body_timeout: float = 60.0, send_timeout: float = 60.0,
                 lingering_timeout: float = 5.0, lingering_time: float = 30.0,
                 max_connections: int = 10000, underscores_in_headers: bool = False,
                 allow_trace: bool = False, trusted_hops: int = 0,
                 access_log: str | None = None, reuse_port: bool = False) -> None:
        self.host = host
        self.reuse_port = reuse_port
        self.access_log = AccessLog(access_log) if access_log else None
        self._bind_errors: dict[tuple[str, int], str] = {}
        self.drain_seconds = drain_seconds
        self.metrics = ProxyMetrics(registry)
        self.pool = UpstreamPool(max_idle=max_idle_per_endpoint, idle_timeout=upstream_idle_timeout,
                                 connect_timeout=connect_timeout, metrics=self.metrics,
                                 max_head_bytes=max_head_bytes, max_headers=max_headers)
        self.mirrors = Mirrorer(self.pool, self.metrics)
        self._rt = Runtime(metrics=self.metrics, pool=self.pool, mirrors=self.mirrors,
                           hash_on=hash_on, max_head_bytes=max_head_bytes,
                           max_headers=max_headers, idle_timeout=client_idle_timeout,
                           head_timeout=head_timeout,
                           response_head_timeout=response_head_timeout,
                           body_timeout=body_timeout, send_timeout=send_timeout,
                           lingering_timeout=lingering_timeout, lingering_time=lingering_time,
                           max_connections=max_connections,
                           underscores_in_headers=underscores_in_headers,
                           allow_trace=allow_trace, trusted_hops=trusted_hops)
        self._listeners: dict[tuple[str, int], Listener] = {}  # by (address, port)
        self._drains: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._pem_checked: dict[tuple[bytes, bytes], str | None] = {}
        self.generation = 0
        self._closed = False

    @property
    def config(self) -> RouterConfig:
        """The RouterConfig new requests are routed with."""
        return self._rt.config

    @property
    def observer(self) -> object | None:
        """The observer's proxy hook (``rauta.observe.proxyhook.ProxyHook``), or None."""
        return self._rt.observer

    @observer.setter
    def observer(self, hook: object | None) -> None:
        self._rt.observer = hook

    @property
    def ports(self) -> tuple[int, ...]:
        """The ports listening now on the proxy's own host (address ""), sorted."""
        return tuple(sorted(p for a, p in self._listeners if not a))

    @property
    def addressed(self) -> tuple[tuple[str, int], ...]:
        """The (address, port) pairs listening now on a Gateway's own address, sorted."""
        return tuple(sorted(k for k in self._listeners if k[0]))

    def listener(self, port: int, address: str = "") -> Listener | None:
        return self._listeners.get((address, port))

    async def apply(self, config: RouterConfig,
                    tls: Mapping[str, tuple[bytes, bytes]] = _NO_TLS) -> Applied:
        """Install ``config``; returns the ports listening and the ports that failed."""
        async with self._lock:
            if self._closed:
                raise RuntimeError("proxy is closed")
            started = time.perf_counter()
            # Maglev tables for every endpoint set, built off the event loop.
            names = await asyncio.to_thread(_prepare, config)
            self.metrics.set_rule_names(names)
            wanted = {(pc.address, pc.port): pc for pc in config.ports}
            for key, lst in list(self._listeners.items()):
                pc = wanted.get(key)
                if pc is None or pc.protocol != lst.protocol:
                    del self._listeners[key]
                    self._drain(lst, self.drain_seconds)
            self._rt.config = config
            failed: list[tuple[int, str]] = []
            for pc in config.ports:
                current = self._listeners.get((pc.address, pc.port))
                if current is not None:
                    if current.tls is not None:
                        self._update_tls(current.tls, pc, tls)
                    continue
                error = await self._open(pc, tls)
                if error is not None:
                    failed.append((pc.address, pc.port, error))
            self.pool.retain(endpoint_keys(config))
            self.generation += 1
            self.metrics.generation.set(self.generation)
            self.metrics.apply_duration.observe(time.perf_counter() - started)
            failed.sort()
            return Applied(ports=self.ports, failed=tuple((p, w) for a, p, w in failed if not a),
                           addressed=self.addressed,
                           failed_at=tuple(f for f in failed if f[0]),
                           invalid_certificates=self._bad_certificates(config, tls))

    def _bad_certificates(self, config: RouterConfig,
                          tls: Mapping[str, tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
        """Referenced Secrets whose PEM does not load, checked once per content."""
        bad: dict[str, str] = {}
        for pc in config.ports:
            for cert in pc.certificates:
                for name in cert.secrets:
                    pair = tls.get(name)
                    if pair is None:
                        continue
                    if pair not in self._pem_checked:
                        self._pem_checked[pair] = check_pair(*pair)
                        if len(self._pem_checked) > 4096:
                            self._pem_checked.pop(next(iter(self._pem_checked)))
                    problem = self._pem_checked[pair]
                    if problem is not None:
                        bad[name] = problem
        return tuple(sorted(bad.items()))

    @staticmethod
    def _update_tls(port_tls: PortTLS, pc: PortConfig,
                    tls: Mapping[str, tuple[bytes, bytes]]) -> None:
        try:
            for problem in port_tls.update(pc.certificates, tls):
                log.warning("port %d: %s", pc.port, problem)
        except ValueError as exc:
            log.warning("port %d keeps its certificates: %s", pc.port, exc)

    async def _open(self, pc: PortConfig, tls: Mapping[str, tuple[bytes, bytes]]) -> str | None:
        """Start listening on a new port; the error text when that is not possible."""
        port_tls: PortTLS | None = None
        if pc.protocol == "HTTPS":
            port_tls = PortTLS()
            try:
                for problem in port_tls.update(pc.certificates, tls):
                    log.warning("port %d: %s", pc.port, problem)
            except ValueError as exc:
                return str(exc)
        lst = Listener(self._rt, pc.port, pc.protocol, port_tls, address=pc.address)
        lst.access_log = self.access_log
        host = pc.address or self.host
        key = (pc.address, pc.port)
        try:
            await lst.start(host, reuse_port=self.reuse_port)
        except OSError as exc:
            error = f"cannot listen on {host}:{pc.port}: {exc.strerror or exc}"
            if self._bind_errors.get(key) != error:
                log.warning("%s (retried at the next apply; /readyz answers 503 until then)",
                            error)
                self._bind_errors[key] = error
            return error
        if self._bind_errors.pop(key, None) is not None:
            log.info("listening on %s:%d now", host, pc.port)
        self._listeners[key] = lst
        return None

    def _drain(self, lst: Listener, seconds: float) -> None:
        lst.stop_accepting()  # the port is free again right away
        task = asyncio.get_running_loop().create_task(lst.drain(seconds))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def wait_drained(self) -> None:
        """Wait for every removed port to finish draining."""
        while self._drains:
            await asyncio.gather(*list(self._drains), return_exceptions=True)

    async def close(self, grace: float = 0.0) -> None:
        """Stop every port, let requests in flight finish for ``grace`` s, release all."""
        async with self._lock:
            self._closed = True
            for lst in list(self._listeners.values()):
                self._drain(lst, grace)
            self._listeners.clear()
            self._rt.config = EMPTY
        await self.wait_drained()
        await self.mirrors.close()
        self.pool.close()
        if self.access_log is not None:
            await asyncio.to_thread(self.access_log.close)
