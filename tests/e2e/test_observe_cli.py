"""e2e: ``rauta observe`` on a namespace's interface prints events for curl traffic.

Two namespaces joined by a veth pair (``xdpnet.VethPair``); a tiny HTTP server (Python's
``http.server``, run by this test) in the server namespace; the real ``rauta observe``
CLI as a subprocess, attached by naming only the server-side end (the command must find
the client-side peer itself, or responses would never pair); real ``curl`` in the client
namespace. Each printed line is checked field by field against what curl did: method,
path, status, both endpoints, Host, the watched Service name, a positive latency within
the run, and one ``connect`` line per curl connection (``refused`` for a closed port).
Then SIGINT: the process exits 0 and no XDP program is left on either end. ``--count``
stops it by itself.

The harness reads only the process's stdout/stderr; from rauta it takes only the BPF
skip reason. Needs root, BPF and curl; skips only where they are really absent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import xdpnet

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]
PORT, CLOSED = 8088, 8089

SERVER = """
import http.server as h, sys
class H(h.BaseHTTPRequestHandler):
    def reply(self, code, body):
        self.send_response(code); self.send_header('content-length', str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        self.reply(404 if self.path.startswith('/missing') else 200, b'hello')
    def do_POST(self):
        n = int(self.headers.get('content-length', 0)); self.rfile.read(n); self.reply(201, b'made')
    def log_message(self, *a): pass
h.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""


def _skip_reason() -> str | None:
    r = xdpnet.unavailable()
    if r:
        return r
    if shutil.which("curl") is None:
        return "curl missing"
    from rauta.observe.kernel import bpf_available

    return bpf_available()


class Observe:
    """A running ``rauta observe``: stdout JSON lines and stderr lines, collected."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rauta.cli", "observe", *args], cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        self.lines: list[dict[str, Any]] = []
        self.err: list[str] = []
        self._t = [threading.Thread(target=self._read_out, daemon=True),
                   threading.Thread(target=self._read_err, daemon=True)]
        for t in self._t:
            t.start()

    def _read_out(self) -> None:
        for raw in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.append(json.loads(raw))

    def _read_err(self) -> None:
        for raw in self.proc.stderr:  # type: ignore[union-attr]
            self.err.append(raw.rstrip("\n"))

    def wait(self, pred: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if self.proc.poll() is not None and not pred():
                time.sleep(0.2)  # let the readers finish
                if pred():
                    return
                raise AssertionError(f"rauta observe exited {self.proc.returncode} before "
                                     f"{what}: {self.err[-5:]}; lines {self.lines}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s: {what}; stderr "
                                     f"{self.err[-5:]}; lines {self.lines[-5:]}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(10)
        for t in self._t:
            t.join(5)
        return rc


@pytest.fixture
def net() -> Iterator[xdpnet.VethPair]:
    reason = _skip_reason()
    if reason:
        print(f"\n[observe-cli] skipping: {reason}", file=sys.stderr)
        pytest.skip(reason)
    with xdpnet.VethPair.create() as n:
        srv = subprocess.Popen(["ip", "netns", "exec", n.server_ns, sys.executable, "-c", SERVER,
                                n.server_v4, str(PORT)])
        try:
            yield n
        finally:
            srv.kill()
            srv.wait(10)


def curl(n: xdpnet.VethPair, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", n.client_ns, "curl", "-s", "-o", "/dev/null",
                           "-w", "%{http_code} %{local_port}", "--max-time", "5", *args],
                          capture_output=True, text=True, timeout=20)


def wait_server(n: xdpnet.VethPair) -> None:
    deadline = time.monotonic() + 10
    while curl(n, f"http://{n.server_v4}:{PORT}/").stdout.split()[:1] != ["200"]:
        assert time.monotonic() < deadline, "the test's HTTP server did not come up"
        time.sleep(0.1)


def test_rauta_observe_prints_curl_exchanges_and_connects(net: xdpnet.VethPair) -> None:
    n = net
    wait_server(n)  # before the observer: its connects must not be in the run
    base = f"http://{n.server_v4}:{PORT}"
    obs = Observe("--iface", n.server_if, "--netns", n.server_ns, "--window", "1",
                  "--duration", "60", "--watch", f"{n.server_v4}:{PORT}=demo/web",
                  "--watch", f"{n.server_v4}:{CLOSED}=demo/gone")
    try:
        obs.wait(lambda: any("attached" in e for e in obs.err), 30, "the attach line")
        att = next(e for e in obs.err if "attached" in e)
        assert n.server_if in att and n.client_if in att, att  # the peer was found
        assert n.xdp_attached(n.server_ns, n.server_if)
        assert n.xdp_attached(n.client_ns, n.client_if)
        t0 = time.monotonic()
        done = []
        for args, want in (([f"{base}/hello?x=1"], "200"), ([f"{base}/missing/page"], "404"),
                           (["-X", "POST", "-d", "abc", f"{base}/items"], "201")):
            r = curl(n, *args)
            code, port = r.stdout.split()
            assert code == want, r
            done.append((args, int(code), int(port)))
        r = curl(n, f"http://{n.server_v4}:{CLOSED}/")
        assert r.stdout.split()[0] == "000", r  # refused
        t1 = time.monotonic()
        def ours(kind: str) -> list[dict[str, Any]]:
            # Tracepoints are global: a connect to the same address in some other
            # namespace would match the watch too. Ours come from the client namespace.
            return [x for x in obs.lines if x["type"] == kind and x["client_ip"] == n.client_v4]

        obs.wait(lambda: len(ours("http")) >= 3 and len(ours("connect")) >= 4, 10,
                 "3 http lines and 4 connect lines")
        time.sleep(0.5)
        http = ours("http")
        assert len(http) == 3, http
        by_port = {x["client_port"]: x for x in http}
        for (_args, code, port), (method, path) in zip(
                done, (("GET", "/hello?x=1"), ("GET", "/missing/page"), ("POST", "/items")),
                strict=True):
            x = by_port[port]
            assert (x["method"], x["path"], x["status"]) == (method, path, code), x
            assert (x["client_ip"], x["server_ip"], x["server_port"]) == (
                n.client_v4, n.server_v4, PORT), x
            assert x["host"] == f"{n.server_v4}:{PORT}", x
            assert x["source"] == "xdp" and x["leg"] == "upstream", x
            assert x["service"] == "demo/web" and not x["path_truncated"], x
            assert 0 < x["latency"] < t1 - t0 + 1 and x["end"] > x["start"], x
            assert x["tcp_seq"] > 0, x
        conns = ours("connect")
        ok = [x for x in conns if x["outcome"] == "established"]
        assert sorted(x["client_port"] for x in ok) == sorted(p for _, _, p in done), conns
        for x in ok:
            assert (x["client_ip"], x["server_ip"], x["server_port"], x["service"]) == (
                n.client_v4, n.server_v4, PORT, "demo/web"), x
            assert 0 < x["duration"] < 1, x
        refused = [x for x in conns if x["outcome"] != "established"]
        assert [(x["outcome"], x["server_port"], x["service"]) for x in refused] == [
            ("refused", CLOSED, "demo/gone")], conns
        # The refused connect is also an anomaly line, naming the Service and endpoint.
        obs.wait(lambda: any(x["type"] == "connect_failure" for x in obs.lines), 5,
                 "a connect_failure line")
        cfs = [x for x in obs.lines if x["type"] == "connect_failure"]
        assert len(cfs) == 1, obs.lines
        (cf,) = cfs
        assert (cf["condition"], cf["service"], cf["endpoint"]) == (
            "refused", "demo/gone", f"{n.server_v4}:{CLOSED}"), cf
    finally:
        rc = obs.stop()  # SIGINT
    assert rc == 0, obs.err[-10:]
    last = json.loads(obs.err[-1])
    assert last["printed"] >= 7 and last["counters"]["paired"] == 3, last
    assert not n.xdp_attached(n.server_ns, n.server_if)
    assert not n.xdp_attached(n.client_ns, n.client_if)


def test_rauta_observe_watches_every_endpoint_by_default(net: xdpnet.VethPair) -> None:
    n = net
    wait_server(n)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        mport = s.getsockname()[1]
    obs = Observe("--iface", n.server_if, "--netns", n.server_ns, "--duration", "60",
                  "--metrics", f"127.0.0.1:{mport}")

    def ours() -> list[dict[str, Any]]:  # connect tracepoints are global: others' too
        return [x for x in obs.lines if x.get("server_ip") == n.server_v4]

    try:
        obs.wait(lambda: any("attached" in e for e in obs.err), 30, "the attach line")
        assert any("every endpoint" in e for e in obs.err), obs.err
        r = curl(n, f"http://{n.server_v4}:{PORT}/any")
        code, port = r.stdout.split()
        assert code == "200", r
        obs.wait(lambda: len(ours()) >= 2, 10, "the exchange and its connect")
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
            text = r.read().decode()
        paired = [ln for ln in text.splitlines()
                  if ln.startswith('rauta_observer_kernel_total{counter="paired"}')]
        assert paired and float(paired[0].rsplit(" ", 1)[1]) >= 1, paired
        assert 'rauta_observer_events_total{source="xdp"}' in text
    finally:
        rc = obs.stop()  # SIGINT
    assert rc == 0, obs.err[-10:]
    assert not n.xdp_attached(n.server_ns, n.server_if)
    assert not n.xdp_attached(n.client_ns, n.client_if)
    got = sorted((x["type"], x.get("method"), x.get("path"), x.get("status"), x.get("outcome"),
                  x["client_port"], x["server_port"]) for x in ours())
    assert got == [("connect", None, None, None, "established", int(port), PORT),
                   ("http", "GET", "/any", 200, None, int(port), PORT)], ours()
    assert all(x["service"] == "" for x in ours())  # nothing named the endpoint


def test_rauta_observe_count_stops_it(net: xdpnet.VethPair) -> None:
    n = net
    wait_server(n)
    obs = Observe("--iface", n.server_if, "--netns", n.server_ns, "--count", "2",
                  "--duration", "60", "--watch", f"{n.server_v4}:{PORT}")
    try:
        obs.wait(lambda: any("attached" in e for e in obs.err), 30, "the attach line")
        assert curl(n, f"http://{n.server_v4}:{PORT}/one").stdout.split()[0] == "200"
        assert obs.proc.wait(10) == 0  # a connect and an exchange: it stops by itself
    finally:
        obs.stop()
    assert len(obs.lines) == 2 and json.loads(obs.err[-1])["printed"] == 2, obs.lines
    assert not n.xdp_attached(n.server_ns, n.server_if)


def test_rauta_observe_bad_interface_is_one_line() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    r = subprocess.run([sys.executable, "-m", "rauta.cli", "observe", "--iface", "nosuch0",
                        "--duration", "1"], cwd=REPO, capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "nosuch0" in r.stderr, r.stderr
