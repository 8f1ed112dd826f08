"""bench/floor: the reference forwarders really forward, so their figures mean something.

Each runs as its own process (it never imports rauta) in front of a recording asyncio
backend; two keep-alive requests go through one client connection. The lean one must
have done its per-request work: hop-by-hop and ``_`` headers gone, X-Forwarded-* added,
the backend's ``Connection`` header not passed back.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

FLOOR = Path(__file__).resolve().parents[2] / "bench" / "floor"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n"
            b"Keep-Alive: timeout=5\r\nX-Backend: yes\r\n\r\nok")
REQUEST = (b"GET /a?b=1 HTTP/1.1\r\nHost: shop.example\r\nX_Bad: 1\r\nTE: trailers\r\n"
           b"Connection: TE\r\nUser-Agent: t\r\n\r\n")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _run(script: str) -> tuple[list[bytes], list[bytes]]:
    heads: list[bytes] = []

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                heads.append(await reader.readuntil(b"\r\n\r\n"))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            writer.write(RESPONSE)

    server = await asyncio.start_server(backend, "127.0.0.1", 0)
    up = server.sockets[0].getsockname()[1]
    port = _port()
    proc = subprocess.Popen([sys.executable, str(FLOOR / script), "--serve-proxy", str(port),
                             "--upstreams", str(up)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                await asyncio.sleep(0.05)
        answers = []
        for _ in range(2):
            writer.write(REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            answers.append(head + await asyncio.wait_for(reader.readexactly(2), 10))
        writer.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        server.close()
    assert b"Traceback" not in err, err.decode()
    return heads, answers


@pytest.mark.parametrize("script", ["bare.py", "lean.py"])
def test_floor_forwarder_serves_keep_alive_requests(script: str) -> None:
    heads, answers = asyncio.run(_run(script))
    assert len(heads) == 2 and all(a.endswith(b"ok") for a in answers)
    if script == "bare.py":
        assert heads == [REQUEST, REQUEST] and answers == [RESPONSE, RESPONSE]
        return
    head = heads[0].lower()
    assert head.startswith(b"get /a?b=1 http/1.1\r\nhost: shop.example\r\n")
    for gone in (b"x_bad", b"\r\nte:", b"connection:"):
        assert gone not in head
    for added in (b"x-forwarded-for: 127.0.0.1", b"x-forwarded-proto: http",
                  b"x-forwarded-host: shop.example", b"user-agent: t"):
        assert added in head
    answer = answers[1].lower()
    assert b"x-backend: yes" in answer and b"connection:" not in answer
    assert b"keep-alive:" not in answer
