"""The settings and shared objects of one Proxy, as every connection and exchange sees them.

Role: a plain holder, built once by ``rauta.proxy.manager.Proxy`` and read by
``server`` (client connections) and ``exchange`` (forwarded requests). Only the manager
writes ``config`` (one reference assignment per apply); everything else is fixed for the
Proxy's life.

Rules (the defaults follow nginx where nginx has the same knob):
- ``max_head_bytes`` / ``max_headers``: request and response heads larger than this are
  refused (431 downstream, 502 for a backend's response); raw head bytes are counted as
  they arrive, before the parser buffers them.
- ``underscores_in_headers`` (off): request header names containing ``_`` are dropped, as
  nginx's ``underscores_in_headers off`` does (some backends read ``_`` as ``-``).
- ``allow_trace`` (off): ``TRACE`` is answered 405.
- ``trusted_hops`` (0): how many proxies in front of rauta are trusted to have set
  ``X-Forwarded-For``/``Forwarded``; 0 treats rauta as the edge and replaces them.
- Timers, all checked by one coarse sweep per listener (no timer handle per request):
  ``idle_timeout`` (keep-alive with nothing in flight), ``head_timeout`` (a request head
  still incomplete), ``body_timeout`` (no byte of an active request's body for this long:
  408 if nothing was answered yet, else the connection is dropped), ``send_timeout`` (the
  client has not taken any response bytes for this long while the proxy waits to write),
  ``lingering_timeout``/``lingering_time`` (after a proxy-made answer to a request whose
  body was not read, the rest is read and discarded until the client is quiet for
  ``lingering_timeout`` or ``lingering_time`` has passed, then the connection closes).
- ``response_head_timeout``: a route without timeouts still answers 504 when no response
  head arrives this long after the request body ended (checked by the same sweep, so it
  fires up to a third of the shortest timer late).
- ``max_connections``: client connections above this many (all listeners together) are
  closed as soon as they are accepted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rauta.model.config import EMPTY, RouterConfig

if TYPE_CHECKING:
    from rauta.proxy.metrics import ProxyMetrics
    from rauta.proxy.mirror import Mirrorer
    from rauta.proxy.upstream import Connections


class Runtime:
    """State shared by every listener, connection and exchange of one Proxy."""

    def __init__(self, *, metrics: ProxyMetrics, pool: Connections, mirrors: Mirrorer,
                 hash_on: str = "flow", max_head_bytes: int = 64 * 1024,
                 max_headers: int = 100, max_discard: int = 1 << 20,
                 idle_timeout: float = 75.0, head_timeout: float = 30.0,
                 response_head_timeout: float = 60.0, body_timeout: float = 60.0,
                 send_timeout: float = 60.0, lingering_timeout: float = 5.0,
                 lingering_time: float = 30.0, max_connections: int = 10000,
                 underscores_in_headers: bool = False, allow_trace: bool = False,
                 trusted_hops: int = 0) -> None:
        self.config: RouterConfig = EMPTY
        self.metrics = metrics
        self.pool = pool  # typed by what is used of it (tests pass fakes)
        self.mirrors = mirrors
        self.hash_on = hash_on
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self.max_discard = max_discard
        self.idle_timeout = idle_timeout
        self.head_timeout = head_timeout
        self.response_head_timeout = response_head_timeout
        self.body_timeout = body_timeout
        self.send_timeout = send_timeout
        self.lingering_timeout = lingering_timeout
        self.lingering_time = lingering_time
        self.max_connections = max_connections
        self.underscores_in_headers = underscores_in_headers
        self.allow_trace = allow_trace
        self.trusted_hops = trusted_hops
        self.observer: Any = None  # rauta.observe.proxyhook.ProxyHook when observing
        self.connections = 0  # client connections open now, over every listener

    @property
    def sweep_every(self) -> float:
        """How often a listener checks its connections' timers (a third of the shortest)."""
        shortest = min(self.idle_timeout, self.head_timeout, self.body_timeout,
                       self.send_timeout, self.lingering_timeout,
                       self.response_head_timeout or self.idle_timeout)
        return max(0.01, shortest / 3)
