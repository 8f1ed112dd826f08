"""``rauta serve --observe proxy`` as a real process: anomaly JSON lines and metrics.

A route sends ``/gone`` to a Service whose only endpoint is a closed port on loopback,
and everything else to a live echo backend. Each request to ``/gone`` is a refused
connect. The observer must print one ``connect_failure`` line per failed connect, naming
the Service and the endpoint, with reason ``refused``. It must count them in
``rauta_observer_connect_failures_total``, and the live backend must cause no anomaly.
An ``xdp`` mode without ``--observe-iface`` is refused on the command line (one line).

The test reads only the process's stdout and its admin server. From rauta it imports only
a free-port helper.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from rauta.scenario import free_port

REPO = Path(__file__).resolve().parents[2]


def objects(listen: int, live_port: int, dead_port: int) -> list[dict[str, Any]]:
    gw = "gateway.networking.k8s.io/v1"
    objs: list[dict[str, Any]] = [
        {"apiVersion": gw, "kind": "GatewayClass", "metadata": {"name": "rauta"},
         "spec": {"controllerName": "rauta.io/gateway-controller"}},
        {"apiVersion": gw, "kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "rauta",
                  "listeners": [{"name": "http", "port": listen, "protocol": "HTTP"}]}},
        {"apiVersion": gw, "kind": "HTTPRoute", "metadata": {"name": "web", "namespace": "default"},
         "spec": {"parentRefs": [{"name": "gw"}],
                  "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/gone"}}],
                             "backendRefs": [{"name": "gone", "port": 80}]},
                            {"backendRefs": [{"name": "live", "port": 80}]}]}},
    ]
    for name, port in (("live", live_port), ("gone", dead_port)):
        objs.append({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": name, "namespace": "default"},
                     "spec": {"ports": [{"name": "http", "port": 80}]}})
        objs.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": f"{name}-1", "namespace": "default",
                                  "labels": {"kubernetes.io/service-name": name}},
                     "addressType": "IPv4", "ports": [{"name": "http", "port": port}],
                     "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]})
    return objs


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {what}")
        time.sleep(0.05)


def live_backend(port: int) -> subprocess.Popen[bytes]:
    code = ("import http.server as h\n"
            "class H(h.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        self.send_response(200); self.send_header('content-length', '2')\n"
            "        self.end_headers(); self.wfile.write(b'ok')\n"
            "    def log_message(self, *a): pass\n"
            f"h.ThreadingHTTPServer(('127.0.0.1', {port}), H).serve_forever()\n")
    return subprocess.Popen([sys.executable, "-c", code])


def test_serve_observe_proxy_reports_refused_connects(tmp_path: Path) -> None:
    listen, admin, live, dead = free_port(), free_port(), free_port(), free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump_all(objects(listen, live, dead), sort_keys=False))
    backend = live_backend(live)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rauta.cli", "serve", "--config", str(cfg),
         "--admin", f"127.0.0.1:{admin}", "--observe", "proxy", "--observe-window", "1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    lines: list[dict[str, Any]] = []
    reader = threading.Thread(
        target=lambda: [lines.append(json.loads(raw)) for raw in proc.stdout],  # type: ignore[union-attr]
        daemon=True)
    reader.start()
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{admin}/readyz")[0] == 200, 20, "/readyz")
        wait_for(lambda: get(f"http://127.0.0.1:{live}/")[0] == 200, 10, "live backend")
        for _ in range(20):
            assert get(f"http://127.0.0.1:{listen}/")[0] == 200
        failed = 3
        for _ in range(failed):
            assert get(f"http://127.0.0.1:{listen}/gone")[0] == 502
        wait_for(lambda: sum(x.get("type") == "connect_failure" for x in lines) >= failed,
                 5, f"{failed} connect_failure lines (got {lines})")
        time.sleep(1.5)  # a window later: no extra line may follow
        cf = [x for x in lines if x["type"] == "connect_failure"]
        assert len(cf) == failed, lines
        for x in cf:
            assert x["service"] == "default/gone", x
            assert x["endpoint"] == f"127.0.0.1:{dead}", x
            assert x["condition"] == "refused", x
        assert [x for x in lines if x["type"] != "connect_failure"] == [], lines
        _, metrics = get(f"http://127.0.0.1:{admin}/metrics")
        text = metrics.decode()
        assert f'rauta_observer_connect_failures_total{{reason="refused"}} {failed}.0' \
            in text, [ln for ln in text.splitlines() if "rauta_observer" in ln]
    finally:
        proc.terminate()
        backend.terminate()
        try:
            proc.wait(15)
        finally:
            backend.wait(5)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]


def test_serve_observe_xdp_needs_an_interface(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("")
    r = subprocess.run([sys.executable, "-m", "rauta.cli", "serve", "--config", str(cfg),
                        "--observe", "xdp"], cwd=REPO, capture_output=True, text=True,
                       timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "xdp" in r.stderr and "--observe-iface" in r.stderr, r.stderr


def test_controller_takes_the_same_observe_options(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "rauta.cli", "controller", "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0 and "--observe [proxy|xdp|both]" in r.stdout, r.stdout
    bad = tmp_path / "no" / "such" / "dir" / "events.jsonl"
    r = subprocess.run([sys.executable, "-m", "rauta.cli", "controller", "--observe", "proxy",
                        "--observe-out", str(bad)], cwd=REPO, capture_output=True, text=True,
                       timeout=30, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "--observe-out" in r.stderr and "cannot write" in r.stderr, r.stderr
