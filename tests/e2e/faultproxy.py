"""An HTTPS fault-injecting proxy between a Kubernetes client and the API server.

The proxy terminates TLS with its own certificate (a throwaway CA made with the
``openssl`` CLI), forwards every request to the real API server with an aiohttp
``ClientSession`` (verifying the API server against its CA), and streams watch responses
line by line as they arrive. It writes a kubeconfig that points a client at the proxy
with the proxy's CA and the given bearer token.

It runs on its own event loop in a daemon thread, so tests may block (``time.sleep``,
synchronous HTTP) without stalling it. Every control method is thread-safe and
synchronous:

- ``cut_watches``: end the open watch streams now, abruptly (TCP abort, buffered bytes
  dropped) or cleanly (end of the chunked body, as an API server timeout does);
- ``stall_watches`` / ``unstall``: stop forwarding watch bytes (existing and new streams)
  for N seconds or until ``unstall``, keeping the connections open;
- ``reject``: answer the next N requests (or every request for D seconds) that match a
  predicate with an HTTP status and a ``Status`` body (500, 429 with Retry-After, 409 on
  ``PUT .../status``, 410 on watches), or, for watches, with a 200 whose first line is an
  ``ERROR`` event;
- ``inject_watch_error``: write an ``{"type":"ERROR",...}`` event into the open watch
  streams (ahead of anything stalled) and end them, as the API server does;
- ``down`` / ``up``: close the listening socket and abort every open connection, then
  listen again on the same port;
- ``count`` / ``records``: every request seen, classified (list, watch, get, status, ...)
  with its resource, the answer's status, and whether it was injected; watch ``ERROR``
  events that came from the real API server are kept in ``upstream_watch_errors``.

Every socket binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length",
})
REASONS = {400: "BadRequest", 404: "NotFound", 409: "Conflict", 410: "Expired",
           429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
           504: "Timeout"}

_CUT = object()  # abort the downstream connection now
_END = object()  # end the chunked body cleanly


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- certificates


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def make_tls(d: Path, cn: str = "rauta-faultproxy") -> tuple[Path, Path, Path]:
    """A throwaway CA and a serving certificate for 127.0.0.1: (ca.crt, tls.crt, tls.key)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl CLI is needed for the fault proxy's certificate")
    d.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", f"/CN={cn}-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=d)
    _openssl("req", "-new", *ec, "-keyout", "tls.key", "-out", "tls.csr",
             "-subj", f"/CN={cn}", cwd=d)
    (d / "tls.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "tls.crt", "-days", "2", "-extfile", "tls.ext", cwd=d)
    for key in ("ca.key", "tls.key"):
        (d / key).chmod(0o600)
    return d / "ca.crt", d / "tls.crt", d / "tls.key"


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str) -> Path:
    cfg = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server,
                                               "certificate-authority": str(ca_file)}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class RequestInfo:
    """A Kubernetes API request, classified."""

    method: str
    path: str
    query: str
    verb: str  # list, watch, get, create, update, status, patch, delete, other
    resource: str  # plural ("httproutes"), "" for non-resource paths
    namespace: str = ""
    name: str = ""
    subresource: str = ""

    @classmethod
    def parse(cls, method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
        segs = [s for s in path.split("/") if s]
        rest: list[str] = []
        if segs[:2] == ["api", "v1"]:
            rest = segs[2:]
        elif segs[:1] == ["apis"] and len(segs) >= 3:
            rest = segs[3:]
        ns = ""
        if len(rest) == 3 and rest[0] == "namespaces" and rest[2] in ("status", "finalize"):
            pass  # a Namespace's own subresource, not a resource in that namespace
        elif len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        resource = rest[0] if rest else ""
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        watch = query.get("watch", "").lower() in ("1", "true")
        if not resource:
            verb = "other"
        elif method == "GET":
            verb = "watch" if watch else ("get" if name else "list")
        elif method == "PUT":
            verb = "status" if sub == "status" else "update"
        else:
            verb = {"POST": "create", "PATCH": "patch", "DELETE": "delete"}.get(method, "other")
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return cls(method, path, qs, verb, resource, ns, name, sub)


Predicate = Callable[[RequestInfo], bool]


def match(verb: str | Iterable[str] | None = None, resource: str | Iterable[str] | None = None,
          name: str | None = None) -> Predicate:
    """A predicate on the verb(s), resource(s) and object name."""
    verbs = {verb} if isinstance(verb, str) else set(verb) if verb is not None else None
    res = ({resource} if isinstance(resource, str) else set(resource)
           if resource is not None else None)

    def pred(info: RequestInfo) -> bool:
        return ((verbs is None or info.verb in verbs)
                and (res is None or info.resource in res)
                and (name is None or info.name == name))

    return pred


@dataclass
class Rule:
    """Answer matching requests with ``status`` (or a watch ERROR event) instead of forwarding."""

    predicate: Predicate
    status: int
    count: int | None = 1  # None: unlimited (within ``until``)
    until: float | None = None  # monotonic deadline
    retry_after: float | None = None
    as_watch_event: bool = False  # 200 + {"type":"ERROR","object":Status}
    message: str = "injected by the fault proxy"
    hits: list[float] = field(default_factory=list)

    def active(self, now: float) -> bool:
        return (self.count is None or self.count > 0) and (self.until is None or now < self.until)


@dataclass
class Record:
    t: float
    info: RequestInfo
    status: int = 0
    injected: bool = False


def status_body(code: int, message: str, retry_after: float | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": message,
                            "reason": REASONS.get(code, "Unknown"), "code": code}
    if retry_after is not None:
        body["details"] = {"retryAfterSeconds": int(retry_after)}
    return body


def error_event_line(code: int = 410, message: str = "too old resource version (injected)"
                     ) -> bytes:
    return json.dumps({"type": "ERROR", "object": status_body(code, message)},
                      separators=(",", ":")).encode() + b"\n"


class _Stream:
    """One open watch stream: lines read from upstream, and injected items ahead of them."""

    def __init__(self, info: RequestInfo, transport: asyncio.BaseTransport | None) -> None:
        self.info = info
        self.transport = transport
        self.lines: collections.deque[Any] = collections.deque()
        self.injected: collections.deque[Any] = collections.deque()
        self.wake = asyncio.Event()
        self.forwarded = 0

    def push_front(self, *items: Any) -> None:
        self.injected.extend(items)
        self.wake.set()


# ---------------------------------------------------------------- the proxy


class FaultProxy:
    def __init__(self, upstream: str, upstream_ca: Path | str, token: str,
                 workdir: Path | None = None, host: str = "127.0.0.1") -> None:
        self.upstream = upstream.rstrip("/")
        self.upstream_ca = Path(upstream_ca)
        self.token = token
        self.host = host
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="faultproxy-"))
        self._own_workdir = workdir is None
        self.port = 0
        self.kubeconfig = self.workdir / "kubeconfig"
        self.ca_file = self.workdir / "ca.crt"
        self.records: list[Record] = []
        self.upstream_watch_errors: list[tuple[float, str, int]] = []  # (t, resource, code)
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._streams: set[_Stream] = set()
        self._stall_until: float | None = None  # monotonic; inf: until unstall()
        self._stall_resources: set[str] | None = None
        self._is_up = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy",
                                        daemon=True)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None

    # -- lifecycle

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self) -> FaultProxy:
        _, crt, key = make_tls(self.workdir)
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(crt, key)
        self.port = free_port(self.host)
        write_kubeconfig(self.kubeconfig, self.url, self.ca_file, self.token)
        self._thread.start()
        self._run(self._start())
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._run(self._stop(), timeout=15)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _call(self, fn: Callable[[], Any]) -> Any:
        async def wrap() -> Any:
            return fn()
        return self._run(wrap())

    async def _start(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self.upstream_ca))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False, skip_auto_headers=("Accept-Encoding", "User-Agent"))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl,
                                 reuse_address=True)
        await self._site.start()
        self._is_up = True

    async def _stop(self) -> None:
        await self._down()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- controls (thread-safe)

    def cut_watches(self, resource: str | None = None, *, clean: bool = False,
                    unstall: bool = False) -> int:
        """End the open watch streams (of ``resource``) now; returns how many.

        Abrupt by default: the connection is aborted and whatever was stalled is dropped.
        ``clean`` ends the chunked body instead (what an API server timeout looks like).
        ``unstall`` also lifts a stall, atomically, so that nothing stalled gets through.
        """
        def do() -> int:
            n = 0
            for st in list(self._streams):
                if resource is None or st.info.resource == resource:
                    st.push_front(_END if clean else _CUT)
                    n += 1
            if unstall:
                self._unstall_now()
            return n
        return int(self._call(do))

    def stall_watches(self, seconds: float | None = None,
                      resources: Iterable[str] | None = None) -> None:
        """Forward no watch bytes (existing and new streams) for ``seconds`` or until unstall."""
        def do() -> None:
            self._stall_until = (time.monotonic() + seconds) if seconds is not None \
                else float("inf")
            self._stall_resources = set(resources) if resources is not None else None
            self._wake_all()
        self._call(do)

    def unstall(self) -> None:
        self._call(self._unstall_now)

    def _unstall_now(self) -> None:
        self._stall_until = None
        self._stall_resources = None
        self._wake_all()

    def inject_watch_error(self, resource: str | None = None, code: int = 410, *,
                           unstall: bool = False) -> int:
        """Write an ERROR event into the open watch streams (ahead of stalled data), end them."""
        def do() -> int:
            n = 0
            for st in list(self._streams):
                if resource is None or st.info.resource == resource:
                    st.push_front(error_event_line(code), _END)
                    n += 1
            if unstall:
                self._unstall_now()
            return n
        return int(self._call(do))

    def reject(self, predicate: Predicate, status: int, *, count: int | None = None,
               duration: float | None = None, retry_after: float | None = None,
               as_watch_event: bool = False) -> Rule:
        """Answer matching requests with ``status``: the next ``count`` of them, or all of
        them for ``duration`` seconds (both: whichever ends first; neither: the next one).
        ``as_watch_event``: a 200 whose only line is an ERROR event with that code."""
        if count is None and duration is None:
            count = 1
        rule = Rule(predicate, status, count=count,
                    until=time.monotonic() + duration if duration is not None else None,
                    retry_after=retry_after, as_watch_event=as_watch_event)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def down(self) -> None:
        """Stop listening (connections are refused) and abort every open connection."""
        self._run(self._down())

    def up(self) -> None:
        self._run(self._listen())

    @property
    def is_up(self) -> bool:
        return self._is_up

    def open_watches(self, resource: str | None = None) -> int:
        return int(self._call(lambda: sum(1 for st in self._streams
                                          if resource is None or st.info.resource == resource)))

    def count(self, verb: str | None = None, resource: str | None = None, *,
              since: float = 0.0, injected: bool | None = None,
              status: int | None = None) -> int:
        with self._lock:
            recs = list(self.records)
        return sum(1 for r in recs
                   if r.t >= since and (verb is None or r.info.verb == verb)
                   and (resource is None or r.info.resource == resource)
                   and (injected is None or r.injected == injected)
                   and (status is None or r.status == status))

    def counts(self, since: float = 0.0) -> collections.Counter[tuple[str, str]]:
        with self._lock:
            return collections.Counter((r.info.verb, r.info.resource) for r in self.records
                                       if r.t >= since)

    def select(self, predicate: Predicate, since: float = 0.0) -> list[Record]:
        with self._lock:
            return [r for r in self.records if r.t >= since and predicate(r.info)]

    # -- internals (loop thread)

    def _wake_all(self) -> None:
        for st in self._streams:
            st.wake.set()

    def _stall_remaining(self, st: _Stream) -> float | None:
        """0 when not stalled, inf when stalled until unstall, else seconds left."""
        if self._stall_until is None:
            return 0.0
        if self._stall_resources is not None and st.info.resource not in self._stall_resources:
            return 0.0
        left = self._stall_until - time.monotonic()
        if left <= 0:
            self._stall_until = None
            return 0.0
        return left

    async def _down(self) -> None:
        self._is_up = False
        if self._site is not None:
            await self._site.stop()
            self._site = None
        for st in list(self._streams):
            st.push_front(_CUT)
        await asyncio.sleep(0)
        if self._runner is not None and self._runner.server is not None:
            for handler in self._runner.server.connections:
                transport = handler.transport
                if transport is not None:
                    transport.abort()

    def _take_rule(self, info: RequestInfo) -> Rule | None:
        now = time.monotonic()
        with self._lock:
            self._rules = [r for r in self._rules if r.active(now)]
            for rule in self._rules:
                if rule.predicate(info):
                    if rule.count is not None:
                        rule.count -= 1
                    rule.hits.append(now)
                    return rule
        return None

    def _record(self, info: RequestInfo, injected: bool) -> Record:
        rec = Record(time.monotonic(), info, injected=injected)
        with self._lock:
            self.records.append(rec)
        return rec

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        info = RequestInfo.parse(request.method, request.path, dict(request.query))
        rule = self._take_rule(info)
        rec = self._record(info, rule is not None)
        if rule is not None:
            await request.read()
            if rule.as_watch_event:
                rec.status = 200
                return web.Response(status=200, body=error_event_line(rule.status, rule.message),
                                    content_type="application/json")
            rec.status = rule.status
            headers = {}
            if rule.retry_after is not None:
                headers["Retry-After"] = str(int(rule.retry_after) if float(
                    rule.retry_after).is_integer() else rule.retry_after)
            return web.json_response(status_body(rule.status, rule.message, rule.retry_after),
                                     status=rule.status, headers=headers)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        assert self._session is not None
        try:
            upstream = await self._session.request(
                request.method, self.upstream + request.path_qs, headers=headers,
                data=body if body else None, allow_redirects=False)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            rec.status = 502
            return web.Response(status=502, text=f"fault proxy: upstream failed: {exc}\n")
        rec.status = upstream.status
        out_headers = {k: v for k, v in upstream.headers.items()
                       if k.lower() not in HOP_BY_HOP}
        if info.verb == "watch" and upstream.status == 200:
            return await self._stream(request, upstream, info, out_headers)
        try:
            data = await upstream.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            rec.status = 502
            return web.Response(status=502, text=f"fault proxy: upstream failed: {exc}\n")
        finally:
            upstream.release()
        return web.Response(status=upstream.status, body=data, headers=out_headers)

    async def _read_lines(self, upstream: aiohttp.ClientResponse, st: _Stream) -> None:
        buf = b""
        end: object = _END
        try:
            async for chunk in upstream.content.iter_any():
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.startswith(b'{"type":"ERROR"'):
                        with contextlib.suppress(ValueError, AttributeError):
                            code = int(json.loads(line)["object"].get("code") or 0)
                            self.upstream_watch_errors.append(
                                (time.monotonic(), st.info.resource, code))
                    st.lines.append(line + b"\n")
                if lines:
                    st.wake.set()
            if buf:
                st.lines.append(buf)
        except asyncio.CancelledError:
            raise
        except Exception:  # upstream broke: break the downstream too
            end = _CUT
        st.lines.append(end)
        st.wake.set()

    async def _next(self, st: _Stream) -> Any:
        while True:
            if st.injected:
                return st.injected.popleft()
            stall = self._stall_remaining(st)
            if st.lines and stall == 0:
                return st.lines.popleft()
            st.wake.clear()
            timeout = None if stall in (0.0, float("inf")) else stall
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(st.wake.wait(), timeout)

    async def _stream(self, request: web.Request, upstream: aiohttp.ClientResponse,
                      info: RequestInfo, headers: dict[str, str]) -> web.StreamResponse:
        resp = web.StreamResponse(status=upstream.status, headers=headers)
        resp.enable_chunked_encoding()
        st = _Stream(info, request.transport)
        self._streams.add(st)
        reader = asyncio.create_task(self._read_lines(upstream, st))
        try:
            await resp.prepare(request)
            while True:
                item = await self._next(st)
                if item is _END:
                    await resp.write_eof()
                    break
                if item is _CUT:
                    if request.transport is not None:
                        request.transport.abort()
                    break
                await resp.write(item)
                st.forwarded += 1
        except (ConnectionError, aiohttp.ClientError, RuntimeError, OSError):
            pass  # the client went away
        finally:
            self._streams.discard(st)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            upstream.close()
        return resp


def wait_until(cond: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.1) -> Any:
    """Poll ``cond`` until truthy (returned), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = cond()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")
        time.sleep(interval)


__all__ = ["FaultProxy", "RequestInfo", "Rule", "error_event_line", "free_port", "make_tls",
           "match", "status_body", "wait_until", "write_kubeconfig"]
