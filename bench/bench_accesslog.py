"""Bounded bench: the cost of the JSON access log (``rauta serve --access-log FILE``).

Role: measure what the access log adds to a request, in one process on loopback: a raw
asyncio backend answering ``200`` with a fixed body, the rauta proxy with and without an
access log (to a file in a temp dir), and keep-alive clients. Phases alternate (off, on,
off, on, ...) for ``--rounds`` rounds of ``--duration`` seconds each; medians are
reported, plus the cost of one ``AccessLog.add`` on the loop and the writer thread's
formatting rate.

Rules: loopback only; bounded (rounds x 2 x duration seconds, plus set-up); no figure is
asserted: this prints numbers for the README (absolute req/s on this machine vary by
about ±25% between runs, so only the same-run ratio means much).

Usage: ``.venv/bin/python bench/bench_accesslog.py [--duration 2] [--rounds 3]
[--connections 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rauta.model.config import (  # noqa: E402
    Backend,
    Endpoint,
    ListenerRoutes,
    Match,
    PathMatch,
    PortConfig,
    RouterConfig,
    Rule,
)
from rauta.proxy import Proxy  # noqa: E402
from rauta.proxy.accesslog import AccessLog  # noqa: E402
from rauta.scenario import free_port  # noqa: E402

BODY = b"hello from the backend\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n"
            % len(BODY)) + BODY
REQUEST = b"GET /bench/path?q=1 HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench\r\n\r\n"


async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def router(port: int, backend_port: int) -> RouterConfig:
    rule = Rule(route="default/bench", rule_index=0, match_index=0, hostname="",
                match=Match(path=PathMatch(type="PathPrefix", value="/")),
                backends=(Backend(name="default/svc:80", weight=1,
                                  endpoints=(Endpoint(address="127.0.0.1", port=backend_port),)),))
    return RouterConfig(ports=(PortConfig(port=port, protocol="HTTP", listeners=(
        ListenerRoutes(gateway="default/gw", listener="http", hostname="", rules=(rule,)),)),))


async def client(port: int, until: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    loop = asyncio.get_running_loop()
    try:
        while loop.time() < until:
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
            n += 1
    finally:
        writer.close()
        counts.append(n)


async def phase(access_log: str | None, backend_port: int, duration: float,
                connections: int) -> tuple[float, int]:
    proxy = Proxy(registry=CollectorRegistry(), access_log=access_log)
    port = free_port()
    await proxy.apply(router(port, backend_port))
    counts: list[int] = []
    loop = asyncio.get_running_loop()
    until = loop.time() + duration
    started = time.perf_counter()
    await asyncio.gather(*(client(port, until, counts) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    written = proxy.access_log.written if proxy.access_log else 0
    await proxy.close(0.0)
    written = proxy.access_log.written if proxy.access_log else written
    return sum(counts) / elapsed, written


def add_cost(n: int = 200_000) -> float:
    """Nanoseconds per ``AccessLog.add`` (the part the event loop pays)."""
    with tempfile.TemporaryDirectory() as d:
        alog = AccessLog(str(Path(d) / "a.log"), max_pending=n + 1, flush_every=3600)
        started = time.perf_counter()
        for _ in range(n):
            alog.add("127.0.0.1", "GET", b"/bench/path?q=1", "bench.test", "1.1", 200, 8080,
                     "default/bench", "0", "default/svc:80", 0.000123)
        ns = (time.perf_counter() - started) / n * 1e9
        fmt_started = time.perf_counter()
        alog.close()
        rate = n / (time.perf_counter() - fmt_started)
    print(f"AccessLog.add: {ns:.0f} ns per request on the loop; "
          f"writer formats and writes {rate:,.0f} lines/s")
    return ns


async def main_async(args: argparse.Namespace) -> None:
    server = await asyncio.start_server(backend, "127.0.0.1", 0)
    backend_port = server.sockets[0].getsockname()[1]
    off: list[float] = []
    on: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.rounds):
            rate, _ = await phase(None, backend_port, args.duration, args.connections)
            off.append(rate)
            path = str(Path(d) / f"access-{i}.log")
            rate, written = await phase(path, backend_port, args.duration, args.connections)
            on.append(rate)
            lines = sum(1 for _ in open(path, encoding="utf-8"))
            print(f"round {i + 1}: off {off[-1]:,.0f} req/s, on {on[-1]:,.0f} req/s "
                  f"({lines:,} lines written)")
    server.close()
    m_off, m_on = statistics.median(off), statistics.median(on)
    per_req_us = (1 / m_on - 1 / m_off) * 1e6
    print(f"median: off {m_off:,.0f} req/s, on {m_on:,.0f} req/s "
          f"({(m_on / m_off - 1) * 100:+.1f}%, {per_req_us:+.1f} us per request)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per phase")
    ap.add_argument("--rounds", type=int, default=3, help="off/on rounds (medians)")
    ap.add_argument("--connections", type=int, default=8, help="keep-alive clients")
    args = ap.parse_args()
    add_cost()
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(main_async(args))


if __name__ == "__main__":
    main()
