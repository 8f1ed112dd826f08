"""Exchange without sockets: a fake Downstream and a scripted upstream connection.

The Exchange only talks to its two sides through ``Downstream`` and the upstream
connection's small API, so every rule of its module doc is checked here by recording the
calls each side receives.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from rauta.model.config import Backend, Endpoint, Header, HeaderModifier, Timeouts
from rauta.model.routing import Decision, RequestView
from rauta.proxy.exchange import Exchange

pytestmark = pytest.mark.asyncio


class FakeDownstream:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start_response(self, status, reason, headers, framing, length) -> None:
        self.calls.append(("start", status, list(headers), framing, length))

    def send_body(self, data: bytes) -> None:
        self.calls.append(("body", data))

    def end_response(self) -> None:
        self.calls.append(("end",))

    def flush(self) -> None:
        self.calls.append(("flush",))

    def fail(self, status: int, text: str) -> None:
        self.calls.append(("fail", status))

    def pause_upload(self) -> None:
        self.calls.append(("pause_upload",))

    def resume_upload(self) -> None:
        self.calls.append(("resume_upload",))

    def kinds(self) -> list[str]:
        return [c[0] for c in self.calls]


class ScriptedUpstream:
    """Stands in for UpstreamConnection: records what the exchange writes and ends with."""

    def __init__(self, *, reused: bool = False) -> None:
        self.reused = reused
        self.write_paused = False
        self.closed = False
        self.sent = bytearray()
        self.ended: str | None = None  # "release", "close" or "abort"
        self.paused = False

    def begin(self, sink, head: bytes, *, head_only: bool = False) -> None:
        assert not self.closed, "a request written to a closed connection"
        self.sink = sink
        self.sent += head

    def write(self, data: bytes) -> None:
        self.sent += data

    def writelines(self, parts) -> None:
        for p in parts:
            self.sent += p

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def release(self) -> None:
        self.ended = "release"

    def close(self) -> None:
        self.ended = "close"

    def abort(self) -> None:
        self.ended = "abort"


class FakePool:
    def __init__(self, *conns: ScriptedUpstream, connect_error: BaseException | None = None):
        self.idle = list(conns)
        self.fresh: list[ScriptedUpstream] = []
        self.connect_error = connect_error

    def acquire(self, key):
        return self.idle.pop(0) if self.idle else None

    async def connect(self, key, backend=""):
        if self.connect_error is not None:
            raise self.connect_error
        conn = ScriptedUpstream()
        self.fresh.append(conn)
        return conn


class FakeMirrors:
    def start(self, *a, **kw):  # pragma: no cover - no mirrors in these decisions
        raise AssertionError("no mirror expected")


@dataclass
class Rt:
    pool: FakePool
    mirrors: FakeMirrors = field(default_factory=FakeMirrors)
    trusted_hops: int = 0
    response_head_timeout: float = 60.0
    observer: object = None


@dataclass
class Req:
    method: str = "GET"
    headers: list = field(default_factory=list)
    length: int | None = None
    chunked: bool = False
    has_body: bool = False
    t0: float = 0.0


def decision(**kw) -> Decision:
    ep = Endpoint(address="10.0.0.1", port=8080)
    base = dict(kind="forward", backend=Backend(name="default/svc:80", weight=1, endpoints=(ep,)),
                endpoint=ep, upstream_path="/p?q=1", upstream_host="h.test")
    base.update(kw)
    return Decision(**base)


def view() -> RequestView:
    return RequestView(method="GET", host="h.test", path="/p", query="q=1", headers=(),
                       port=80, client_ip="192.0.2.1")


def make(req: Req, pool: FakePool, **dkw) -> tuple[Exchange, FakeDownstream]:
    down = FakeDownstream()
    req.t0 = asyncio.get_running_loop().time()
    ex = Exchange(down, Rt(pool), req, decision(**dkw), view(), client_ip="192.0.2.1",
                  scheme="http")
    return ex, down


async def test_framing_comes_from_the_parser_after_every_header_transformation() -> None:
    up = ScriptedUpstream()
    req = Req(method="POST", length=37, has_body=True,
              headers=[("Connection", "content-length, host"), ("Content-Length", "00037"),
                       ("X-A", "1")])
    mod = HeaderModifier(set=(Header(name="Content-Length", value="0"),))
    ex, _ = make(req, FakePool(up), request_headers=(mod,))
    ex.start()
    head = bytes(up.sent).decode()
    lines = head.split("\r\n")
    assert lines[0] == "POST /p?q=1 HTTP/1.1"
    assert lines[1] == "Host: h.test"
    assert [x for x in lines if x.lower().startswith("content-length")] == ["Content-Length: 37"]
    assert lines[-3] == "Content-Length: 37"  # emitted last, after the modifiers
    assert "connection" not in head.lower()


async def test_chunked_body_is_rechunked_and_the_connection_released() -> None:
    up = ScriptedUpstream()
    ex, down = make(Req(method="POST", chunked=True, has_body=True), FakePool(up))
    ex.start()
    ex.request_body(b"hello")
    ex.request_end()
    assert bytes(up.sent).endswith(b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    ex.upstream_head(200, "OK", [("Content-Length", "2"), ("Connection", "content-length")],
                     "length", 2)
    ex.upstream_body(b"ok")
    ex.upstream_done(True)
    start = down.calls[0]
    assert start[:2] == ("start", 200) and start[3:] == ("length", 2)
    assert all(n.lower() not in ("content-length", "connection") for n, _ in start[2])
    assert down.kinds() == ["start", "body", "end"]
    assert up.ended == "release"


async def test_not_released_before_the_whole_request_went_up() -> None:
    up = ScriptedUpstream()
    ex, down = make(Req(method="POST", length=10, has_body=True), FakePool(up))
    ex.start()
    ex.request_body(b"12345")
    ex.upstream_head(200, "OK", [], "length", 0)
    ex.upstream_done(True)
    assert up.ended == "close"
    assert down.kinds()[-1] == "end"


async def test_body_waits_while_connecting_with_the_upload_paused() -> None:
    pool = FakePool()
    ex, down = make(Req(method="POST", length=3, has_body=True), pool)
    ex.start()
    assert down.kinds() == ["pause_upload"]
    ex.request_body(b"abc")
    ex.request_end()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    (conn,) = pool.fresh
    assert bytes(conn.sent).endswith(b"\r\n\r\nabc")
    assert "resume_upload" in down.kinds()


async def test_a_stale_reused_connection_is_retried_once_for_idempotent_requests() -> None:
    stale = ScriptedUpstream(reused=True)
    pool = FakePool(stale)
    ex, down = make(Req(), pool)
    ex.start()
    ex.request_end()
    ex.upstream_failed(ConnectionResetError(), False)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(pool.fresh) == 1 and "fail" not in down.kinds()
    ex.upstream_failed(ConnectionResetError(), False)  # the fresh one fails too: no 2nd retry
    assert down.calls[-1] == ("fail", 502)


@pytest.mark.parametrize("got_bytes,method", [(True, "GET"), (False, "POST")])
async def test_no_retry_after_response_bytes_or_for_non_idempotent(got_bytes, method) -> None:
    pool = FakePool(ScriptedUpstream(reused=True))
    ex, down = make(Req(method=method), pool)
    ex.start()
    ex.upstream_failed(ConnectionResetError(), got_bytes)
    assert down.calls[-1] == ("fail", 502) and pool.fresh == []


async def test_connect_errors_map_to_502_and_504() -> None:
    for exc, status in ((ConnectionRefusedError(), 502), (TimeoutError(), 504)):
        ex, down = make(Req(), FakePool(connect_error=exc))
        ex.start()
        for _ in range(3):
            await asyncio.sleep(0)
        assert down.calls[-1] == ("fail", status)


async def test_a_new_connection_closed_before_the_request_is_a_502() -> None:
    """Seen at 256 connections: the backend closed a fresh connection before the
    exchange could write to it, and the write raised in a loop callback instead."""

    class ClosingPool(FakePool):
        closing = 2

        async def connect(self, key, backend=""):
            conn = await super().connect(key, backend)
            if self.closing:
                self.closing -= 1
                conn.closed = True
            return conn

    pool = ClosingPool()
    pool.closing = 1  # the first one closes: replaced once, and the request goes out
    ex, down = make(Req(method="POST", length=2, has_body=True), pool)
    ex.start()
    ex.request_body(b"hi")
    ex.request_end()
    for _ in range(6):
        await asyncio.sleep(0)
    first, second = pool.fresh
    assert not first.sent and bytes(second.sent).endswith(b"\r\n\r\nhi")
    assert "fail" not in down.kinds()

    pool = ClosingPool()  # both close: a 502, nothing written anywhere
    ex, down = make(Req(), pool)
    ex.start()
    for _ in range(6):
        await asyncio.sleep(0)
    assert down.calls[-1] == ("fail", 502)
    assert not any(c.sent for c in pool.fresh)


async def test_default_head_timer_starts_when_the_body_ends() -> None:
    """Point 17: without route timeouts, no timer runs while the body is still uploading."""
    up = ScriptedUpstream()
    ex, down = make(Req(method="PUT", length=100, has_body=True), FakePool(up))
    ex.start()
    ex.request_body(b"x" * 50)
    assert ex.head_deadline == 0.0  # a long upload is not cut off by the head timer
    ex.check_deadline(ex.loop.time() + 3600)
    ex.request_body(b"x" * 50)
    ex.request_end()
    assert ex.head_deadline > 0.0 and ex.timer is None  # the sweep enforces it
    ex.upstream_head(200, "OK", [], "none", None)
    assert ex.head_deadline == 0.0  # only the wait for the head is bounded
    ex.check_deadline(ex.loop.time() + 3600)
    assert down.kinds() == ["start"]


async def test_the_sweep_answers_504_when_the_head_deadline_passed() -> None:
    up = ScriptedUpstream()
    ex, down = make(Req(), FakePool(up))
    ex.start()
    ex.request_end()
    ex.check_deadline(ex.head_deadline - 1)
    assert down.calls == []
    ex.check_deadline(ex.head_deadline)
    assert down.calls[-1] == ("fail", 504) and up.ended == "abort"


async def test_route_timeout_counts_from_the_headers_and_fails_with_504() -> None:
    up = ScriptedUpstream()
    ex, down = make(Req(), FakePool(up), timeouts=Timeouts(request_ms=50_000))
    ex.start()
    assert ex.timer is not None
    ex._timeout()
    assert down.calls[-1] == ("fail", 504) and up.ended == "abort"


async def test_protocol_switch_from_a_backend_is_a_502() -> None:
    up = ScriptedUpstream()
    ex, down = make(Req(), FakePool(up))
    ex.start()
    ex.upstream_head(101, "Switching Protocols", [], "none", None)
    assert down.calls[-1] == ("fail", 502)


async def test_cancel_silences_the_exchange() -> None:
    up = ScriptedUpstream()
    ex, down = make(Req(), FakePool(up))
    ex.start()
    ex.cancel()
    assert up.ended == "abort"
    ex.upstream_failed(ConnectionResetError(), True)
    assert down.calls == []


async def test_download_pause_reaches_a_connection_attached_later() -> None:
    pool = FakePool()
    ex, _ = make(Req(), pool)
    ex.start()
    ex.pause_download()
    for _ in range(3):
        await asyncio.sleep(0)
    assert pool.fresh[0].paused
    ex.resume_download()
    assert not pool.fresh[0].paused
