"""Throughput floor, part 2: the per-request minimum of an HTTP/1.1 proxy (reference only).

Role: show what the least a proxy must do per request costs in Python, written as cheaply
as Python allows, on uvloop with httptools: header callbacks; one Host, else refused;
header names with ``_`` dropped; hop-by-hop headers stripped both ways; X-Forwarded-For,
-Proto and -Host added; a dict lookup of the route by (Host, path); the response head
rebuilt from its parsed headers; one counter per answered status.

Rules: HTTP/1.1 keep-alive GETs without bodies only (anything else closes the connection);
no limits, timers, pipelining, access log, 1xx, chunked re-framing or error answers, so
rauta's cost above it is the price of those. It never imports ``rauta``. Binds
127.0.0.1; stops on SIGTERM.

Usage: ``python bench/floor/lean.py --serve-proxy PORT --upstreams P1,P2``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal

import httptools
import uvloop

HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                 b"transfer-encoding", b"upgrade", b"proxy-authorization"})
COUNTS: dict[int, int] = {}
ROUTES: dict[tuple[bytes, bytes], tuple[int, ...]] = {}


class Refused(Exception):
    pass


class Up(asyncio.Protocol):
    def __init__(self, pool: list[Up]) -> None:
        self.pool = pool
        self.t: asyncio.Transport | None = None
        self.down: Down | None = None
        self.hs: list[bytes] = []
        self.status = 0

    def connection_made(self, t: asyncio.BaseTransport) -> None:
        self.t = t  # type: ignore[assignment]
        self.p = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        if self.down is None:
            self.t.close()  # type: ignore[union-attr]
            return
        self.p.feed_data(data)

    def on_message_begin(self) -> None:
        self.hs = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in HOP:
            self.hs.append(name + b": " + value)

    def on_headers_complete(self) -> None:
        self.status = self.p.get_status_code()
        self.hs.insert(0, b"HTTP/1.1 %d OK" % self.status)
        self.hs.append(b"\r\n")
        self.down.held = b"\r\n".join(self.hs)  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        self.down.send(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        d, self.down = self.down, None
        d.send(b"")  # type: ignore[union-attr]
        if self.p.should_keep_alive():
            self.pool.append(self)
        else:
            self.t.close()  # type: ignore[union-attr]
        COUNTS[self.status] = COUNTS.get(self.status, 0) + 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool:
            self.pool.remove(self)


class Down(asyncio.Protocol):
    def __init__(self, pool: list[Up], ups: list[int]) -> None:
        self.pool, self.ups, self.i = pool, ups, 0
        self.held = b""
        self.hs: list[bytes] = []
        self.host: bytes | None = None
        self.url = b""
        self.up: Up | None = None

    def connection_made(self, t: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = t  # type: ignore[assignment]
        self.p = httptools.HttpRequestParser(self)
        self.ip = t.get_extra_info("peername")[0].encode()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None and self.up.down is self:
            self.up.down = None  # its response has nowhere to go: the upstream closes

    def data_received(self, data: bytes) -> None:
        try:
            self.p.feed_data(data)
        except (httptools.HttpParserError, Refused):
            self.t.close()

    def on_message_begin(self) -> None:
        self.hs, self.host, self.url = [], None, b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if b"_" in name:
            return
        low = name.lower()
        if low in HOP:
            return
        if low == b"host":
            if self.host is not None:
                raise Refused
            self.host = value
            return
        self.hs.append(name + b": " + value)

    def on_headers_complete(self) -> None:
        p = self.p
        if p.get_http_version() != "1.1" or self.host is None or not p.should_keep_alive():
            raise Refused
        url, host = self.url, self.host
        path = url.partition(b"?")[0]
        ups = ROUTES.get((host, path))
        if ups is None:
            ups = ROUTES[(host, path)] = tuple(self.ups)
        hs = self.hs
        hs.insert(0, b"%s %s HTTP/1.1\r\nHost: %s" % (p.get_method(), url, host))
        hs.append(b"X-Forwarded-For: " + self.ip)
        hs.append(b"X-Forwarded-Proto: http\r\nX-Forwarded-Host: " + host)
        hs.append(b"\r\n")
        req = b"\r\n".join(hs)
        if self.pool:
            up = self.pool.pop()
            up.down, self.up = self, up
            up.t.write(req)  # type: ignore[union-attr]
        else:
            asyncio.ensure_future(self.connect(req, ups))

    async def connect(self, req: bytes, ups: tuple[int, ...]) -> None:
        self.i += 1
        _, up = await asyncio.get_running_loop().create_connection(
            lambda: Up(self.pool), "127.0.0.1", ups[self.i % len(ups)])
        up.down, self.up = self, up
        up.t.write(req)  # type: ignore[union-attr]

    def send(self, body: bytes) -> None:
        if self.t.is_closing():
            return
        if self.held:
            self.t.writelines((self.held, body))
            self.held = b""
        elif body:
            self.t.write(body)


async def main(port: int, ups: list[int]) -> None:
    pool: list[Up] = []
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: Down(pool, ups), "127.0.0.1", port, backlog=1024)
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="lean forwarder (throughput floor)")
    ap.add_argument("--serve-proxy", type=int, required=True)
    ap.add_argument("--upstreams", required=True)
    a = ap.parse_args()
    uvloop.run(main(a.serve_proxy, [int(p) for p in a.upstreams.split(",")]))
