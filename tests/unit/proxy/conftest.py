"""Fixtures for the data-plane tests: ports, backends, configs and a raw HTTP client.

Everything listens on 127.0.0.1 on ports chosen free just before use. Backends are tiny
aiohttp apps (or raw asyncio servers for misbehaving ones) started inside the test.

Every async test here runs twice, on asyncio's own loop and on uvloop (the loop the
``rauta`` commands run on, ``rauta.runloop``), through pytest-asyncio's
``pytest_asyncio_loop_factories`` hook; ``RAUTA_TEST_LOOP=asyncio`` or ``=uvloop`` runs
only one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from aiohttp import web
from prometheus_client import CollectorRegistry

from rauta.model.config import (
    Backend,
    Endpoint,
    Filters,
    ListenerRoutes,
    Match,
    PathMatch,
    PortConfig,
    RouterConfig,
    Rule,
    Timeouts,
)
from rauta.proxy import Proxy


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item
                                  ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop}
    try:
        import uvloop
    except ImportError:  # not a Linux wheel platform: asyncio only
        pass
    else:
        factories["uvloop"] = uvloop.new_event_loop
    only = os.environ.get("RAUTA_TEST_LOOP", "")
    return {only: factories[only]} if only in factories else factories


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------- config builders


def backend(*ports: int, name: str = "default/svc:80", weight: int = 1, **kw) -> Backend:
    eps = tuple(Endpoint(address="127.0.0.1", port=p) for p in sorted(ports))
    return Backend(name=name, weight=weight, endpoints=eps, **kw)


def rule(*backends: Backend, path: str = "/", ptype: str = "PathPrefix", route: str = "default/r",
         hostname: str = "", filters: Filters | None = None, timeouts: Timeouts | None = None,
         index: int = 0) -> Rule:
    return Rule(route=route, rule_index=index, match_index=0, hostname=hostname,
                match=Match(path=PathMatch(type=ptype, value=path)),  # type: ignore[arg-type]
                filters=filters or Filters(), backends=backends,
                timeouts=timeouts or Timeouts())


def port_config(port: int, *rules: Rule, hostname: str = "", protocol: str = "HTTP",
                listeners: tuple[ListenerRoutes, ...] | None = None, **kw) -> PortConfig:
    if listeners is None:
        listeners = (ListenerRoutes(gateway="default/gw", listener="l", hostname=hostname,
                                    rules=rules),)
    return PortConfig(port=port, protocol=protocol, listeners=listeners, **kw)  # type: ignore[arg-type]


def config(*ports: PortConfig) -> RouterConfig:
    return RouterConfig(ports=tuple(sorted(ports, key=lambda p: p.port)))


# ---------------------------------------------------------------------- raw client


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


class Client:
    """A keep-alive HTTP/1.1 client over one raw connection (reads one response at a time)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.body_size = 0

    @classmethod
    async def open(cls, port: int, **kw) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20, **kw)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(self, method: str = "GET", path: str = "/", *, host: str = "example.com",
                      headers: list[tuple[str, str]] | None = None, body: bytes | None = None,
                      head_only: bool = False) -> Response:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
        lines += [f"{n}: {v}" for n, v in headers or []]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        return await self.read_response(head_only=head_only or method == "HEAD")

    async def read_response(self, *, head_only: bool = False, keep_body: bool = True) -> Response:
        """One response; ``complete`` is False when the body was cut off (or no head came)."""
        resp = Response()
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return resp
        first, *lines = head.decode("latin-1").split("\r\n")
        resp.status = int(first.split(" ")[1])
        resp.headers = [(n.strip(), v.strip()) for n, _, v in
                        (line.partition(":") for line in lines if line)]
        parts: list[bytes] = []
        self.body_size = 0

        def take(data: bytes) -> None:
            self.body_size += len(data)
            if keep_body:
                parts.append(data)

        try:
            if head_only or resp.status in (204, 304) or resp.status < 200:
                pass
            elif "chunked" in (resp.header("Transfer-Encoding") or "").lower():
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        await self.reader.readuntil(b"\r\n")
                        break
                    take(await self.reader.readexactly(size))
                    await self.reader.readexactly(2)
            elif resp.header("Content-Length") is not None:
                left = int(resp.header("Content-Length") or 0)
                while left:
                    data = await self.reader.read(min(left, 1 << 20))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", left)
                    take(data)
                    left -= len(data)
            else:
                while data := await self.reader.read(1 << 20):
                    take(data)
            resp.complete = True
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        resp.body = b"".join(parts)
        return resp

    async def closed(self, timeout: float = 5.0) -> bool:
        """Does the server close the connection (EOF or reset) within ``timeout``?
        The client is closed afterwards either way."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self.reader.read(1 << 16)
                    if not data:
                        return True
        except (ConnectionError, OSError):
            return True
        except TimeoutError:
            return False
        finally:
            await self.close()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def get(port: int, path: str = "/", **kw) -> Response:
    client = await Client.open(port)
    try:
        return await client.request("GET", path, **kw)
    finally:
        await client.close()


# ---------------------------------------------------------------------- backends


class EchoBackend:
    """An aiohttp backend answering with what it saw; counts connections and requests."""

    def __init__(self, name: str = "b") -> None:
        self.name = name
        self.port = free_port()
        self.peers: set[tuple[str, int]] = set()
        self.requests: list[web.Request] = []
        self.seen: list[dict] = []
        self.runner: web.AppRunner | None = None
        self.handler: Callable | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peers.add(tuple(peer[:2]))
        if self.handler is not None:
            return await self.handler(request)
        body = await request.read()
        self.seen.append({"method": request.method, "path_qs": request.raw_path,
                          "headers": list(request.raw_headers), "body_len": len(body)})
        return web.json_response({
            "backend": self.name, "method": request.method, "path": request.raw_path,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
            "body_len": len(body),
        }, headers={"X-Backend": self.name})

    async def start(self) -> EchoBackend:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def raw_backend(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], object]
                      ) -> tuple[asyncio.Server, int]:
    """A raw asyncio backend for misbehaving-server cases; returns (server, port)."""

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)  # type: ignore[misc]
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    port = free_port()
    server = await asyncio.start_server(wrapped, "127.0.0.1", port)
    return server, port


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


# ---------------------------------------------------------------------- fixtures


@pytest_asyncio.fixture
async def echo() -> AsyncIterator[EchoBackend]:
    b = await EchoBackend("b1").start()
    yield b
    await b.stop()


@pytest_asyncio.fixture
async def echo2() -> AsyncIterator[EchoBackend]:
    b = await EchoBackend("b2").start()
    yield b
    await b.stop()


@pytest_asyncio.fixture
async def proxy() -> AsyncIterator[Proxy]:
    p = Proxy(registry=CollectorRegistry(), drain_seconds=2.0)
    yield p
    await p.close(0.0)
