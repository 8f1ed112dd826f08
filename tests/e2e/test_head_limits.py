"""Head limits and lingering close of ``rauta serve`` as a real process.

- Point 15: a header value that never ends (``X-A: `` then 1 MiB pieces without CRLF, up
  to 100 MiB) is answered 431 and the connection closed early: the proxy stops reading
  after about its 64 KiB head limit plus one read, so its peak RSS (VmHWM in
  /proc/<pid>/status) grows by less than 20 MiB. The growth is printed. A head with 200
  headers is answered 431 too.
- Point 16: ``Content-Length: 10000000`` to a path without a route, body never sent: 404,
  then the connection reaches EOF within the proxy's lingering deadline (read with a
  generous timeout; no timing assertion). The same with ``Connection: close``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import hostile as hz

REPO = str(Path(__file__).resolve().parents[2])
MiB = 1 << 20

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[hz.RautaServe]:
    a, b = hz.RecordingBackend("A").start(), hz.RecordingBackend("B").start()
    s = hz.RautaServe(REPO, str(tmp_path_factory.mktemp("limits")), a.port, b.port)
    try:
        yield s.start()
    finally:
        s.stop()
        a.stop()
        b.stop()


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class Reader(threading.Thread):
    """Reads what the server sends until EOF/reset (or 60 s of silence)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock, self.data, self.eof = sock, bytearray(), False
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while chunk := self.sock.recv(1 << 16):
                self.data += chunk
            self.eof = True
        except TimeoutError:
            pass
        except OSError:
            self.eof = True
        finally:
            self.done.set()


def status_of(data: bytes) -> int:
    first = bytes(data).split(b"\r\n", 1)[0].split(b" ")
    return int(first[1]) if len(first) > 1 and first[1].isdigit() else 0


def test_15_endless_header_value_431_and_flat_memory(serve: hz.RautaServe) -> None:
    assert serve.proc is not None
    pid = serve.proc.pid
    for _ in range(20):  # warm the proxy's paths up before taking the baseline
        hz.exchange(serve.port, b"GET /public/w HTTP/1.1\r\nHost: h.test\r\n\r\n", quiet=0.05)
    before = status_kib(pid, "VmHWM")
    sock = socket.create_connection(("127.0.0.1", serve.port))
    sock.settimeout(60)
    reader = Reader(sock)
    reader.start()
    sent, piece = 0, b"a" * MiB
    try:
        sock.sendall(b"GET /public/x HTTP/1.1\r\nHost: h.test\r\nX-A: ")
        while sent < 100 * MiB and not reader.done.is_set():
            sock.settimeout(10)  # a peer that neither reads nor closes stops us too
            sock.sendall(piece)
            sent += len(piece)
    except OSError:
        pass  # reset or broken pipe: the proxy closed, as it should
    reader.join(60)
    with contextlib.suppress(OSError):
        sock.close()
    peak = status_kib(pid, "VmHWM")
    growth = (peak - before) / 1024
    print(f"\n[head-limits] endless header: sent {sent / MiB:.0f} MiB before the close; "
          f"rauta VmHWM {before / 1024:.1f} -> {peak / 1024:.1f} MiB (growth {growth:.1f} MiB); "
          f"answer {bytes(reader.data[:60])!r}")
    assert status_of(reader.data) == 431, bytes(reader.data[:300])
    assert reader.eof, "the connection was not closed"
    assert sent < 100 * MiB, "the proxy read all 100 MiB of one header value"
    assert growth < 20, f"peak RSS grew by {growth:.1f} MiB"


def test_15_two_hundred_headers_431(serve: hz.RautaServe) -> None:
    raw = (b"GET /public/x HTTP/1.1\r\nHost: h.test\r\n"
           + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n")
    data, closed = hz.exchange(serve.port, raw, quiet=5.0, limit=30)
    assert status_of(data) == 431, data[:300]
    assert closed


@pytest.mark.parametrize("extra", [b"", b"Connection: close\r\n"], ids=["keep-alive", "close"])
def test_16_unrouted_large_body_404_then_eof(serve: hz.RautaServe, extra: bytes) -> None:
    raw = (b"POST /nothing HTTP/1.1\r\nHost: h.test\r\nContent-Length: 10000000\r\n" + extra
           + b"\r\n")
    sock = socket.create_connection(("127.0.0.1", serve.port))
    sock.settimeout(120)  # generous: the lingering deadline ends it, not this
    reader = Reader(sock)
    reader.start()
    sock.sendall(raw)
    reader.join(130)
    sock.close()
    assert status_of(reader.data) == 404, bytes(reader.data[:300])
    assert reader.eof, f"no EOF; got {bytes(reader.data[:300])!r}"
