"""Throughput floor, part 1: a bare HTTP/1.1 forwarder (reference only, never rauta).

Role: show what asyncio Protocols + httptools on uvloop cost per request when they do
nothing an HTTP proxy must do. Request bytes go as received to a pooled keep-alive
upstream connection, response bytes come back as received; llhttp only finds where
each message ends.

Rules: no routing, no header work, no limits, no timers, no metrics: it is not a proxy
anyone should run, only the bottom line of ``bench/bench_proxy.py --floor``. It never
imports ``rauta``. Binds 127.0.0.1; stops on SIGTERM.

Usage: ``python bench/floor/bare.py --serve-proxy PORT --upstreams P1,P2``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal

import httptools
import uvloop


class Up(asyncio.Protocol):
    def __init__(self, pool: list[Up]) -> None:
        self.pool = pool
        self.t: asyncio.Transport | None = None
        self.down: Down | None = None

    def connection_made(self, t: asyncio.BaseTransport) -> None:
        self.t = t  # type: ignore[assignment]
        self.p = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        d = self.down
        if d is None or d.t.is_closing():
            self.t.close()  # type: ignore[union-attr]
            return
        d.t.write(data)
        self.p.feed_data(data)

    def on_message_complete(self) -> None:
        self.down = None
        self.pool.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool:
            self.pool.remove(self)


class Down(asyncio.Protocol):
    def __init__(self, pool: list[Up], ups: list[int]) -> None:
        self.pool, self.ups, self.i = pool, ups, 0

    def connection_made(self, t: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = t  # type: ignore[assignment]
        self.p = httptools.HttpRequestParser(self)
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            self.p.feed_data(data)
        except httptools.HttpParserError:
            self.t.close()

    def on_message_complete(self) -> None:
        req, self.buf = self.buf, b""
        if self.pool:
            up = self.pool.pop()
            up.down = self
            up.t.write(req)  # type: ignore[union-attr]
        else:
            asyncio.ensure_future(self.connect(req))

    async def connect(self, req: bytes) -> None:
        self.i += 1
        port = self.ups[self.i % len(self.ups)]
        _, up = await asyncio.get_running_loop().create_connection(
            lambda: Up(self.pool), "127.0.0.1", port)
        up.down = self
        up.t.write(req)  # type: ignore[union-attr]


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
    ap = argparse.ArgumentParser(description="bare forwarder (throughput floor)")
    ap.add_argument("--serve-proxy", type=int, required=True)
    ap.add_argument("--upstreams", required=True)
    a = ap.parse_args()
    uvloop.run(main(a.serve_proxy, [int(p) for p in a.upstreams.split(",")]))
