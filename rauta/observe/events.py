"""The observer's event types: what capture produces and what analysis consumes.

Role: the one contract between the capture side (the XDP program and tracepoints in
``bpf/observer.c``, decoded by ``rauta.observe.kernel``; and the rauta proxy itself,
through ``rauta.observe.proxyhook``) and the pure analysis side (attribution,
detectors, output). Every processor works on these types only, so it runs the same with
``--observe=proxy``, ``xdp`` or ``both``, and without eBPF at all.

Rules:
- Types are frozen; attribution returns a new value (``dataclasses.replace``).
- Times are ``CLOCK_MONOTONIC`` nanoseconds: ``bpf_ktime_get_ns`` in the kernel and
  ``time.monotonic_ns()`` in Python read the same clock, so they subtract directly.
- A 4-tuple is always written in the request's direction: ``client`` sent the request,
  ``server`` answered it. For the upstream leg the client is the proxy.
- ``path`` is what was seen, at most ``PATH_MAX`` bytes (``path_truncated`` says it was
  cut); ``path_hash`` is FNV-1a 32-bit over those same bytes, as the kernel computes it.
- Attribution fields are ``""`` until attributed; nothing here knows about routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PATH_MAX = 256

Source = Literal["xdp", "proxy"]
Leg = Literal["upstream", "downstream"]

# Method ids shared with bpf/observer.c (0 = not a request).
METHODS = ("", "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


def fnv1a32(data: bytes) -> int:
    """FNV-1a, 32 bits: the path hash the XDP program computes."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def status_class(status: int) -> int:
    """1..5 for 1xx..5xx, 0 for anything else."""
    return status // 100 if 100 <= status <= 599 else 0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One side of a TCP connection."""

    ip: str
    port: int


@dataclass(frozen=True, slots=True)
class HttpEvent:
    """One HTTP/1.x request paired with its response's status line.

    ``start_ns`` is when the request was seen (XDP: the request's first packet at the
    server-side veth end; proxy: the request head handed to the upstream), ``end_ns``
    when the response's status line was seen (XDP: at the client-side end; proxy: the
    response head parsed). ``end_ns - start_ns`` is the exchange's latency at that point.
    """

    source: Source
    leg: Leg
    client: Endpoint
    server: Endpoint
    method: str
    path: str
    path_hash: int
    path_truncated: bool
    status: int
    start_ns: int
    end_ns: int
    tcp_seq: int = 0  # the request's first sequence number (XDP), for retransmit dedup
    host: str = ""  # the Host header when it was within the bytes seen ("" otherwise)
    # Filled by attribution (rauta.observe.attribute):
    route: str = ""  # "namespace/name" of the HTTPRoute
    rule: str = ""  # the rule's name, or its index as a string
    backend: str = ""  # the backendRef, "namespace/name:port"
    service: str = ""  # from EndpointSlices: "namespace/name"
    pod: str = ""  # from EndpointSlices: "namespace/name"
    # Proxy timings on the same clock, 0 when unknown:
    connect_ns: int = 0  # TCP connect time for this exchange's upstream connection
    proxy_seen_ns: int = 0  # when the proxy's parser saw the response head

    @property
    def latency_ns(self) -> int:
        return self.end_ns - self.start_ns


ConnectOutcome = Literal["established", "refused", "timeout", "failed"]


@dataclass(frozen=True, slots=True)
class ConnectEvent:
    """A TCP connect to a watched endpoint, from ``sock:inet_sock_set_state``.

    ``established``: SYN_SENT→ESTABLISHED, ``duration_ns`` is the connect time.
    ``refused``: SYN_SENT→CLOSE after a RST (``tcp:tcp_receive_reset``).
    ``timeout``: SYN_SENT→CLOSE with no RST. ``failed``: closed, cause unknown.
    """

    client: Endpoint
    server: Endpoint
    outcome: ConnectOutcome
    start_ns: int
    end_ns: int
    service: str = ""
    pod: str = ""
    source: Source = "xdp"  # "proxy": the proxy's own connect (ProxyHook)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


Event = HttpEvent | ConnectEvent
