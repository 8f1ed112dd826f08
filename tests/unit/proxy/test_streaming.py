"""Large bodies stream through with flat memory, both ways, with flow control."""

from __future__ import annotations

import asyncio
import os
import re

import pytest

from rauta.proxy import Proxy

from .conftest import backend, config, free_port, port_config, raw_backend, read_head, rule

pytestmark = [pytest.mark.asyncio]

BLOCK = b"z" * (1 << 20)


def rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def stream_backend() -> tuple[asyncio.Server, int]:
    """GET /down/N streams N bytes with Content-Length (or chunked for /chunked/N);
    any other request body is counted and the count returned."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await read_head(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            target = head.split(b" ")[1].decode()
            m = re.search(rb"(?i)content-length: (\d+)", head)
            got = 0
            if m:
                left = int(m.group(1))
                while left:
                    data = await reader.read(min(left, 1 << 20))
                    if not data:
                        return
                    left -= len(data)
                    got += len(data)
            elif b"transfer-encoding: chunked" in head.lower():
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        await reader.readuntil(b"\r\n")
                        break
                    got += len(await reader.readexactly(size))
                    await reader.readexactly(2)
            if target.startswith(("/down/", "/chunked/")):
                size = int(target.rsplit("/", 1)[1])
                chunked = target.startswith("/chunked/")
                writer.write(b"HTTP/1.1 200 OK\r\n" + (
                    b"Transfer-Encoding: chunked\r\n\r\n" if chunked
                    else b"Content-Length: %d\r\n\r\n" % size))
                left = size
                while left:
                    n = min(left, len(BLOCK))
                    writer.write(b"%x\r\n%s\r\n" % (n, BLOCK[:n]) if chunked else BLOCK[:n])
                    left -= n
                    await writer.drain()
                if chunked:
                    writer.write(b"0\r\n\r\n")
            else:
                body = str(got).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
            await writer.drain()

    return await raw_backend(handler)


async def download(port: int, path: str, *, slow: bool = False) -> tuple[int, bool]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await read_head(reader)
    got = 0
    chunked = b"transfer-encoding: chunked" in head.lower()
    m = re.search(rb"(?i)content-length: (\d+)", head)
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            got += len(await reader.readexactly(size))
            await reader.readexactly(2)
            if slow:
                await asyncio.sleep(0)
    else:
        assert m is not None
        left = int(m.group(1))
        while left:
            data = await reader.read(min(left, 1 << 18))
            assert data
            got += len(data)
            left -= len(data)
            if slow and got % (4 << 20) < (1 << 18):
                await asyncio.sleep(0.01)  # a slow reader: the proxy must apply backpressure
    writer.close()
    return got, True


async def upload(port: int, size: int, *, chunked: bool) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
    writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n\r\n")
    left = size
    while left:
        n = min(left, len(BLOCK))
        writer.write(b"%x\r\n%s\r\n" % (n, BLOCK[:n]) if chunked else BLOCK[:n])
        left -= n
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
    head = await read_head(reader)
    m = re.search(rb"(?i)content-length: (\d+)", head)
    assert m is not None
    count = int(await reader.readexactly(int(m.group(1))))
    writer.close()
    return count


async def _run(proxy: Proxy, size: int, slow: bool) -> float:
    server, bport = await stream_backend()
    port = free_port()
    await proxy.apply(config(port_config(port, rule(backend(bport)))))
    await download(port, "/down/1024")  # warm up the pool and parsers
    before = rss_mib()
    assert await download(port, f"/down/{size}", slow=slow) == (size, True)
    assert await download(port, f"/chunked/{size}") == (size, True)
    assert await upload(port, size, chunked=False) == size
    assert await upload(port, size, chunked=True) == size
    server.close()
    return rss_mib() - before


@pytest.mark.timeout(120)
async def test_64mib_both_ways_with_flat_memory(proxy: Proxy) -> None:
    growth = await _run(proxy, 64 << 20, slow=True)
    print(f"RSS growth {growth:.1f} MiB")
    assert growth < 24, f"RSS grew by {growth:.1f} MiB while streaming 4 x 64 MiB"


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("RAUTA_SLOW_TESTS"),
                    reason="opt-in: set RAUTA_SLOW_TESTS=1 (or run bench --stream-mib 1024)")
@pytest.mark.timeout(900)
async def test_1gib_both_ways_with_flat_memory(proxy: Proxy) -> None:
    growth = await _run(proxy, 1 << 30, slow=False)
    assert growth < 32, f"RSS grew by {growth:.1f} MiB while streaming 4 x 1 GiB"


@pytest.mark.timeout(60)
async def test_stalled_reader_pauses_the_backend(proxy: Proxy) -> None:
    server, bport = await stream_backend()
    port = free_port()
    await proxy.apply(config(port_config(port, rule(backend(bport)))))
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16)
    size = 256 << 20
    writer.write(f"GET /down/{size} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await read_head(reader)
    before = rss_mib()
    await asyncio.sleep(0.5)  # read nothing: buffers fill up and everyone must pause
    stalled = rss_mib() - before
    assert stalled < 16, f"RSS grew by {stalled:.1f} MiB while the client did not read"
    got = 0
    while got < size:
        data = await reader.read(1 << 20)
        assert data
        got += len(data)
    writer.close()
    server.close()
