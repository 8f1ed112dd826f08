"""One client request as both protocols see it, and the rules they share before routing.

Role: ``Request`` is the parsed head of one downstream request and what is known of its
body; ``server.ClientConnection`` (HTTP/1.x) and ``h2.H2Connection`` (HTTP/2) fill it in,
and the ``Exchange`` reads it (``exchange.RequestHead``). ``decide`` is the one pure
step from a parsed request to a ``Decision``: validate the target and the host, apply
the 421 rule, build the ``RequestView`` and call ``rauta.model.routing.route``. Both
protocols call it, so a request is judged the same way whichever protocol carried it.

Rules:
- Target (``headers.parse_target``): origin-form, ``*``, or (HTTP/1 only) absolute-form,
  whose authority wins over ``Host`` (RFC 9112 §3.2.2). HTTP/2 carries the authority in
  ``:authority``, so an absolute-form ``:path`` is refused (``origin_only``). Anything
  else → 400 "bad request target".
- Host: more than one → 400; a value that ``headers.parse_host`` refuses → 400; none →
  400 except for HTTP/1.0 (host ``""``).
- 421 (``misdirected``) when the connection has a TLS SNI name and that name and the host
  select different listeners of the port: each picks the first listener, in the port's
  most-specific-first order, whose hostname matches it; ports, trailing dots and case are
  ignored. A port without a PortConfig never answers 421 (routing answers 404).
- Methods (``method_refusal``): ``CONNECT`` → 400 (never tunnelled); ``TRACE`` → 405
  unless ``allow_trace``, with an ``Allow`` header.
- Refusals are returned as ``Decision(kind="error")``, so the caller answers every
  refusal the way it answers routing's own errors (and records it with the same labels).
- An HTTP/2 request (``h2_request``) is refused before routing when its fields exceed
  ``max_head_bytes`` or ``max_headers`` (431), its method is refused, or ``:scheme`` is
  not http/https (400). Its body is framed upstream with the client's Content-Length,
  else ``known_length`` (the whole body was seen with the head), else chunked; an empty
  body has no framing except ``Content-Length: 0`` for POST, PUT and PATCH.
- ``record``: every answered request is counted once, by listener port, route, rule,
  backend and status, with its time since the head (``metrics.observe_request``), and,
  with an access log, handed to it as one tuple (``AccessLog.add``). Both protocols call
  it when a request is answered, so the metrics and the JSON lines are the same for both.
- ``log_5xx``: every 5xx the proxy makes itself (not 505) is one warning line naming the
  listener port, route, rule (``rule_label``) and backend; both protocols call it.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

from rauta.model.config import EMPTY, RouterConfig
from rauta.model.hostnames import matches as host_matches
from rauta.model.hostnames import strip_port
from rauta.model.routing import Decision, RequestView, route
from rauta.model.rule_index import port_index
from rauta.proxy import headers as hdr
from rauta.proxy.runtime import Runtime

if TYPE_CHECKING:
    from rauta.proxy.accesslog import AccessLog

log = logging.getLogger("rauta.proxy.server")  # the logger the 5xx lines always used

ALLOW = [("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")]
MISDIRECTED = "misdirected request: Host does not match the TLS server name"

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # an empty body is sent as length 0

__all__ = ["ALLOW", "MISDIRECTED", "Request", "decide", "h2_request", "log_5xx",
           "method_refusal", "misdirected", "record", "rule_label"]


class Request:
    """One parsed request head and what is known of its body."""

    __slots__ = ("url", "headers", "host", "hosts", "bad", "method", "version", "keep_alive",
                 "config", "headers_done", "complete", "body", "has_body", "chunked", "length",
                 "te", "expect", "t0")

    def __init__(self) -> None:
        self.url = b""
        self.headers: hdr.Headers = []
        self.host: str | None = None
        self.hosts = 0
        self.bad: tuple[int, str] | None = None  # answered with this; framing unknown: close
        self.method = "GET"
        self.version = "1.1"  # "1.0", "1.1" or "2"
        self.keep_alive = True
        self.config: RouterConfig = EMPTY
        self.headers_done = False
        self.complete = False
        self.body: list[bytes] = []
        self.has_body = False
        self.chunked = False
        self.length: int | None = None
        self.te: list[str] | None = None
        self.expect = False
        self.t0 = 0.0


def method_refusal(method: str, allow_trace: bool) -> tuple[int, str] | None:
    """``(status, text)`` when ``method`` is refused before routing, else None."""
    if method == "CONNECT":
        return 400, "CONNECT is not supported"
    if method == "TRACE" and not allow_trace:
        return 405, "TRACE is not allowed"
    return None


def misdirected(config: RouterConfig, port: int, address: str, sni: str, host: str) -> bool:
    """Do the SNI name and ``host`` select different listeners of the port? (421)"""
    pc = port_index(config).get((address, port))
    if pc is None:
        return False
    name = strip_port(host)  # lower-cased, without port and trailing dot
    sni = sni.lower().rstrip(".")
    by_sni = next((lr for lr in pc.listeners if host_matches(lr.hostname, sni)), None)
    by_host = next((lr for lr in pc.listeners if host_matches(lr.hostname, name)), None)
    return by_host is not by_sni


def _refuse(status: int, text: str) -> tuple[Decision, None]:
    return Decision(kind="error", status=status, reason=text), None


def decide(rt: Runtime, req: Request, *, port: int, address: str, scheme: str,
           sni: str | None, client_ip: str, client_port: int,
           origin_only: bool = False) -> tuple[Decision, RequestView | None]:
    """The Decision for ``req`` (a refusal or routing's), and the view it was routed with."""
    target = hdr.parse_target(req.url.decode("latin-1"))
    if target is None or (origin_only and target[0] is not None):
        return _refuse(400, "bad request target")
    authority, path, query = target
    if req.hosts > 1:
        return _refuse(400, "more than one Host header")
    if req.host is not None and hdr.parse_host(req.host) is None:
        return _refuse(400, "invalid Host header")
    if authority is not None:
        host = authority  # RFC 9112 §3.2.2: the target's authority wins over Host
    elif req.host is not None:
        host = req.host
    elif req.version == "1.0":
        host = ""
    else:
        return _refuse(400, "missing Host header")
    if sni is not None and misdirected(req.config, port, address, sni, host):
        return _refuse(421, MISDIRECTED)
    view = RequestView(method=req.method, host=host, path=path, query=query,
                       headers=tuple(req.headers), port=port, scheme=scheme,
                       client_ip=client_ip, client_port=client_port, address=address)
    decision = route(req.config, view, choice=random.getrandbits(32), hash_on=rt.hash_on)
    return decision, view


def h2_request(rt: Runtime, fields: list[tuple[bytes, bytes]], *, ended: bool,
               known_length: int | None, t0: float) -> tuple[Request, tuple[int, str] | None]:
    """The Request of an HTTP/2 field block, and why it is refused before routing, if so.

    ``ended``: END_STREAM came with the head; ``known_length``: the body's length when
    its end was seen in the same read, else None. Syntax was checked by the h2 library.
    """
    pseudo, headers, size, count = hdr.h2_request_headers(
        fields, underscores=rt.underscores_in_headers)
    req = Request()
    req.version = "2"
    req.method = pseudo.get(":method", "GET")
    req.url = pseudo.get(":path", "").encode("latin-1")
    req.headers = headers
    req.host = pseudo.get(":authority")
    if req.host is None:
        req.host = hdr.get(headers, "host")
    req.hosts = 0 if req.host is None else 1
    req.config = rt.config
    req.t0 = t0
    req.headers_done = True
    req.expect = (hdr.get(headers, "expect") or "").strip().lower() == "100-continue"
    length = hdr.content_length(headers)
    if length is None:
        length = 0 if ended else known_length
        req.chunked = length is None
        if length == 0 and req.method not in _BODY_METHODS:
            length = None  # a GET without a body has no framing upstream either
    req.length = length
    req.has_body = req.chunked or bool(length)
    if size > rt.max_head_bytes or count > rt.max_headers:
        return req, (431, "request header fields too large")
    bad = method_refusal(req.method, rt.allow_trace)
    if bad is None and pseudo.get(":scheme", "https").lower() not in ("http", "https"):
        bad = 400, "bad request scheme"
    return req, bad


def rule_label(decision: Decision | None) -> str:
    """The rule as logs and metrics name it: its ``name`` when it has one, else its index."""
    rule = decision.rule if decision is not None else None
    if rule is None:
        return ""
    return rule.rule_name or str(rule.rule_index)


def record(rt: Runtime, port: int, decision: Decision | None, status: int, seconds: float,
           *, access_log: AccessLog | None = None, req: Request | None = None,
           client_ip: str = "") -> None:
    """Count one answered request in the metrics and the access log (see the module doc)."""
    rule = decision.rule if decision is not None else None
    backend = decision.backend if decision is not None else None
    route = rule.route if rule else ""
    name = backend.name if backend else ""
    rt.metrics.observe_request(port, route, rule.rule_index if rule else -1, name, status,
                               seconds)
    if access_log is not None and req is not None:
        access_log.add(client_ip, req.method, req.url, req.host, req.version, status, port,
                       route, rule_label(decision), name, seconds)


def log_5xx(port: int, decision: Decision | None, status: int, text: str, *,
            after: str = "") -> None:
    """The one warning line of a proxy-made answer ``status`` (see the module doc): none
    below 500 or for 505 (the client's version). ``after``: what became of a response
    whose head had left (``connection dropped``, ``stream reset``)."""
    if status < 500 or status == 505:
        return
    if after:
        text = f"{text} after the response head ({after})"
    rule = decision.rule if decision is not None else None
    backend = decision.backend if decision is not None else None
    log.warning("port %d: %d %s (route %s, rule %s, backend %s)", port, status, text,
                (rule.route if rule else "") or "-", rule_label(decision) or "-",
                (backend.name if backend else "") or "-")
