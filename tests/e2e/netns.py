"""Backends in Linux network namespaces, for end-to-end tests against the real API server.

The API server rejects loopback addresses in Pod IPs and EndpointSlices, so a backend
needs an address that is not 127.0.0.0/8. Each :class:`BackendNet` is one network namespace
``rauta-<id>`` joined to the host by a veth pair: the namespace end gets
``10.244.X.2/24`` (plus ``.3``, ``.4`` ... for more backends), the host end ``10.244.X.1/24``,
with ``X`` a /24 nobody on the host uses yet. The addresses exist only on this veth pair,
so traffic to them never leaves the machine. Echo servers (``python -m tests.e2e.netns``)
run *inside* the namespace and answer every request with their name in the ``x-backend``
header and in the JSON body.

Needs root (``ip netns add``); :func:`netns_unavailable` says why not when it cannot work,
so that tests can skip with that reason. Everything is removed in :meth:`BackendNet.close`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.e2e.lab import _die_with_parent

REPO = Path(__file__).resolve().parents[2]



def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=20)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()}")
    return proc


_PROBED: list[str | None] = []  # the one cached answer of netns_unavailable()


def netns_unavailable() -> str | None:
    """None when network namespaces and veth pairs can be made here, else the reason."""
    if _PROBED:
        return _PROBED[0]
    reason: str | None = None
    if shutil.which("ip") is None:
        reason = "the 'ip' command (iproute2) is not installed"
    elif os.geteuid() != 0:
        reason = "network namespaces need root"
    else:
        probe = f"rauta-probe-{uuid.uuid4().hex[:6]}"
        host = f"rp{uuid.uuid4().hex[:8]}"
        try:
            add = _ip("netns", "add", probe, check=False)
            if add.returncode != 0:
                reason = f"'ip netns add' is not permitted: {add.stderr.strip()}"
            else:
                veth = _ip("link", "add", host, "type", "veth", "peer", "name", host + "n",
                           check=False)
                if veth.returncode != 0:
                    reason = f"cannot create a veth pair: {veth.stderr.strip()}"
        finally:
            _ip("link", "del", host, check=False)
            _ip("netns", "del", probe, check=False)
    _PROBED.append(reason)
    return reason


def _used_slash24s() -> set[int]:
    """Third octets of 10.244.X.0/24 already present on the host (addresses or routes)."""
    text = _ip("-4", "-o", "addr", "show").stdout + _ip("-4", "route", "show").stdout
    used: set[int] = set()
    for word in text.split():
        if word.startswith("10.244."):
            parts = word.split("/")[0].split(".")
            if len(parts) == 4 and parts[2].isdigit():
                used.add(int(parts[2]))
    return used


@dataclass
class Echo:
    """One echo server process inside the namespace."""

    name: str
    address: str
    port: int
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class BackendNet:
    """A network namespace with a veth to the host and echo servers inside it."""

    ns: str = ""
    octet: int = 0
    host_if: str = ""
    ns_if: str = ""
    backends: list[Echo] = field(default_factory=list)
    _next_host: int = 2
    _logdir: Path | None = None

    @property
    def host_address(self) -> str:
        return f"10.244.{self.octet}.1"

    def create(self) -> BackendNet:
        ident = uuid.uuid4().hex[:8]
        self.ns = f"rauta-{ident}"
        self.host_if, self.ns_if = f"rv{ident}h", f"rv{ident}n"
        self._logdir = Path(tempfile.mkdtemp(prefix=f"{self.ns}-"))
        try:
            _ip("netns", "add", self.ns)
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.ns)
            free = sorted(set(range(100, 250)) - _used_slash24s())
            if not free:
                raise RuntimeError("no free 10.244.X.0/24 left on this host")
            self.octet = random.choice(free)
            _ip("addr", "add", f"{self.host_address}/24", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("-n", self.ns, "link", "set", "lo", "up")
            _ip("-n", self.ns, "link", "set", self.ns_if, "up")
        except BaseException:
            self.close()
            raise
        return self

    def add_address(self) -> str:
        """A new address inside the namespace (10.244.X.2, .3, ...)."""
        addr = f"10.244.{self.octet}.{self._next_host}"
        self._next_host += 1
        _ip("-n", self.ns, "addr", "add", f"{addr}/24", "dev", self.ns_if)
        return addr

    def start_echo(self, name: str, port: int = 8080, address: str | None = None,
                   timeout: float = 15.0) -> Echo:
        """Start an echo server named ``name`` in the namespace; wait until it answers."""
        assert self._logdir is not None
        addr = address or self.add_address()
        log = self._logdir / f"echo-{name}.log"
        fh = open(log, "ab")  # noqa: SIM115 - handed to the child
        try:
            popen = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, sys.executable, "-m", "tests.e2e.netns",
                 "--name", name, "--host", addr, "--port", str(port)],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent, start_new_session=True)  # noqa: PLW1509
        finally:
            fh.close()
        echo = Echo(name, addr, port, popen, log)
        self.backends.append(echo)
        deadline = time.monotonic() + timeout
        while True:
            if popen.poll() is not None:
                raise RuntimeError(f"echo {name} exited with {popen.returncode}:\n{echo.tail()}")
            try:
                status, headers, _ = http_get(addr, port, "/", timeout=1.0)
                if status == 200 and headers.get("x-backend") == name:
                    return echo
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"echo {name} on {addr}:{port} did not answer in "
                                   f"{timeout}s:\n{echo.tail()}")
            time.sleep(0.1)

    def close(self) -> None:
        for echo in self.backends:
            if echo.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(echo.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                echo.popen.wait(timeout=5)
        self.backends.clear()
        if self.ns:
            _ip("netns", "del", self.ns, check=False)  # takes its veth end (and the pair)
        if self.host_if:
            _ip("link", "del", self.host_if, check=False)
        if self._logdir is not None:
            shutil.rmtree(self._logdir, ignore_errors=True)

    def __enter__(self) -> BackendNet:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.close()


def http_get(host: str, port: int, path: str = "/", *, host_header: str | None = None,
             timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP/1.1 GET; (status, lower-cased headers, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host_header or f"{host}:{port}",
                                           "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


# ---------------------------------------------------------------- the echo server


def serve_echo(name: str, host: str, port: int) -> None:  # pragma: no cover - in the netns
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = json.dumps({"backend": name, "method": self.command, "path": self.path,
                               "host": self.headers.get("Host"),
                               "address": host}).encode()
            self.send_response(200)
            self.send_header("x-backend", name)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer((host, port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"echo {name} on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser(description="echo server for rauta's netns backends")
    p.add_argument("--name", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    serve_echo(a.name, a.host, a.port)
