"""The proxy as an event producer: upstream exchanges and connects as observer events.

Role: ``ProxyHook`` is what ``Runtime.observer`` holds when observing is on (it is
``None`` otherwise: the Exchange then pays one attribute test per step). The Exchange
calls ``connecting`` (it opens a connection), ``sent`` (the request head went upstream
on a connection), ``head`` (the response head was parsed) and ``connect_failed``. The
hook turns those into ``HttpEvent(source='proxy', leg='upstream')`` and ``ConnectEvent``
values on a bounded queue, keeps the join table (upstream 4-tuple → route, rule, backend,
request start) that attributes kernel events, and tells the kernel a connection's route
id through ``set_flow_route`` when it changes for that connection.

Rules:
- Hot-path cheap: the 4-tuple is read from the transport once per connection and cached
  on the connection object; nothing allocates beyond one small record per request.
- Times are ``time.monotonic_ns()`` (CLOCK_MONOTONIC, the kernel's clock).
- The queue is bounded (``maxlen``); what does not fit is counted in ``lost``.
- The hot path queues plain tuples; ``drain`` (called by the pipeline, off the
  per-request path) builds the frozen event values and path hashes from them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rauta.model.routing import Decision
from rauta.observe.attribute import FlowRecord, JoinTable, RouteIds, rule_name
from rauta.observe.events import ConnectEvent, Endpoint, Event, HttpEvent, fnv1a32

_NO_FLOW = (Endpoint("", 0), Endpoint("", 0))
SetFlowRoute = Callable[[Endpoint, Endpoint, int], None]


def _endpoint(addr: Any) -> Endpoint:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return Endpoint(str(addr[0]), int(addr[1]))
    return Endpoint("", 0)


class _Pending:
    __slots__ = ("flow", "dec", "path", "method", "start", "connect_ns", "host")

    def __init__(self, flow: tuple[Endpoint, Endpoint], dec: Decision, method: str,
                 path: str, host: str, start: int, connect_ns: int) -> None:
        self.flow, self.dec, self.method, self.path = flow, dec, method, path
        self.host, self.start, self.connect_ns = host, start, connect_ns


class ProxyHook:
    """Collects the proxy's upstream events (see the module doc)."""

    def __init__(self, *, maxlen: int = 65536, table: JoinTable | None = None,
                 ids: RouteIds | None = None, set_flow_route: SetFlowRoute | None = None
                 ) -> None:
        self.queue: deque[Any] = deque()  # Event values and _build tuples
        self.maxlen = maxlen
        self.lost = 0
        # "is None", not "or": an empty JoinTable is falsy (it has __len__), and the
        # pipeline's table must be the one shared, not a private copy.
        self.table = table if table is not None else JoinTable()
        self.ids = ids if ids is not None else RouteIds()
        self.set_flow_route = set_flow_route

    def _push(self, item: Any) -> None:
        if len(self.queue) >= self.maxlen:
            self.lost += 1
        else:
            self.queue.append(item)

    def drain(self) -> list[Event]:
        """The queued events, oldest first, as event values; empties the queue."""
        q = self.queue
        items = list(q)
        q.clear()
        return [_build(it) if isinstance(it, tuple) else it for it in items]

    # ------------------------------------------------------------ Exchange calls

    def connecting(self) -> int:
        return time.monotonic_ns()

    def sent(self, dec: Decision, conn: Any, method: str, path: str, host: str,
             connect_t0: int | None) -> _Pending:
        now = time.monotonic_ns()
        flow = getattr(conn, "_obs_flow", None)
        if flow is None:
            t = conn.transport
            flow = (_endpoint(t.get_extra_info("sockname")),
                    _endpoint(t.get_extra_info("peername"))) if t is not None else _NO_FLOW
            conn._obs_flow = flow
            conn._obs_route = 0
        connect_ns = 0
        if isinstance(connect_t0, int):
            connect_ns = now - connect_t0
            self._push(ConnectEvent(flow[0], flow[1], "established", connect_t0, now,
                                    service=_service(dec), source="proxy"))
        rule = dec.rule
        rname = rule.route if rule is not None else ""
        rl = rule_name(rule) if rule is not None else ""
        backend = dec.backend.name if dec.backend is not None else ""
        self.table.add(flow, FlowRecord(now, rname, rl, backend, connect_ns))
        if self.set_flow_route is not None:
            rid = self.ids.id(rname, rl)
            if rid != conn._obs_route:
                conn._obs_route = rid
                self.set_flow_route(flow[0], flow[1], rid)
        return _Pending(flow, dec, method, path, host, now, connect_ns)

    def head(self, p: _Pending, status: int) -> None:
        self._push((p, status, time.monotonic_ns()))

    def connect_failed(self, dec: Decision, key: tuple[str, int], exc: BaseException,
                       connect_t0: int | None) -> None:
        now = time.monotonic_ns()
        if isinstance(exc, TimeoutError):
            outcome = "timeout"
        elif isinstance(exc, ConnectionRefusedError):
            outcome = "refused"
        else:
            outcome = "failed"
        self._push(ConnectEvent(Endpoint("", 0), Endpoint(key[0], key[1]), outcome,  # type: ignore[arg-type]
                                connect_t0 if isinstance(connect_t0, int) else now, now, service=_service(dec),
                                source="proxy"))


def _build(item: tuple[_Pending, int, int]) -> HttpEvent:
    p, status, now = item
    dec = p.dec
    rule = dec.rule
    raw = p.path.encode("latin-1", "replace")[:256]
    return HttpEvent(
        source="proxy", leg="upstream", client=p.flow[0], server=p.flow[1],
        method=p.method, path=p.path[:256], path_hash=fnv1a32(raw),
        path_truncated=len(p.path) > 256, status=status, start_ns=p.start, end_ns=now,
        host=p.host,
        route=rule.route if rule is not None else "",
        rule=rule_name(rule) if rule is not None else "",
        backend=dec.backend.name if dec.backend is not None else "",
        service=_service(dec), connect_ns=p.connect_ns, proxy_seen_ns=now,
    )


def _service(dec: Decision) -> str:
    b = dec.backend
    return (b.name.rpartition(":")[0] or b.name) if b is not None else ""
