"""``rauta serve --access-log`` as a real process, HTTP/2 on an HTTPS listener (issue 11):
HTTP/2 streams get the JSON access-log records and the one-line warning for a proxy-made
5xx (naming route and backend) that HTTP/1 requests get.

The config is a directory of YAML files (Gateway with an HTTPS listener, a kubernetes.io/tls
Secret made by openssl, Services, EndpointSlices, an HTTPRoute); the client is the h2
library over TLS with ALPN h2. Bounded: a handful of requests, every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import h2.config
import h2.connection
import h2.events
import pytest

from rauta.echo import EchoBackend
from rauta.scenario import free_port

from .test_serve import REPO, until, write

pytestmark = pytest.mark.timeout(90)

BACKEND_ADDR, DEAD_ADDR = "127.0.0.2", "127.0.0.5"  # nothing listens on DEAD_ADDR


def _tls_secret(tmp: Path) -> dict[str, Any]:
    cert, key = tmp / "c.crt", tmp / "c.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=h2.test", "-addext", "subjectAltName=DNS:h2.test",
         "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "cert", "namespace": "default"},
            "data": {"tls.crt": base64.b64encode(cert.read_bytes()).decode(),
                     "tls.key": base64.b64encode(key.read_bytes()).decode()}}


def _objects(listen: int, backend_port: int, secret: dict[str, Any]) -> list[dict[str, Any]]:
    gw = "gateway.networking.k8s.io/v1"
    objs: list[dict[str, Any]] = [
        {"apiVersion": gw, "kind": "GatewayClass", "metadata": {"name": "rauta"},
         "spec": {"controllerName": "rauta.io/gateway-controller"}},
        {"apiVersion": gw, "kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "rauta", "listeners": [
             {"name": "https", "port": listen, "protocol": "HTTPS",
              "tls": {"mode": "Terminate", "certificateRefs": [{"name": "cert"}]}}]}},
        secret,
        {"apiVersion": gw, "kind": "HTTPRoute", "metadata": {"name": "web", "namespace": "default"},
         "spec": {"parentRefs": [{"name": "gw"}], "rules": [
             {"matches": [{"path": {"type": "PathPrefix", "value": "/dead"}}],
              "backendRefs": [{"name": "dead", "port": 80}]},
             {"backendRefs": [{"name": "v1", "port": 80}]}]}},
    ]
    for name, addr in (("v1", BACKEND_ADDR), ("dead", DEAD_ADDR)):
        objs.append({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": name, "namespace": "default"},
                     "spec": {"ports": [{"name": "http", "port": 80}]}})
        objs.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": f"{name}-1", "namespace": "default",
                                  "labels": {"kubernetes.io/service-name": name}},
                     "addressType": "IPv4", "ports": [{"name": "http", "port": backend_port}],
                     "endpoints": [{"addresses": [addr], "conditions": {"ready": True}}]})
    return objs


async def _h2_requests(port: int, paths: list[str]) -> list[int]:
    """GET each path as one stream of a single HTTP/2 connection; their statuses."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                   server_hostname="h2.test")
    assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    statuses: dict[int, int] = {}
    done: set[int] = set()
    try:
        for path in paths:
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"),
                                    (":authority", "h2.test"), (":path", path)],
                              end_stream=True)
            writer.write(conn.data_to_send())
            async with asyncio.timeout(10):
                while sid not in done:
                    data = await reader.read(1 << 16)
                    assert data, "the proxy closed the connection"
                    for ev in conn.receive_data(data):
                        if isinstance(ev, h2.events.ResponseReceived):
                            statuses[ev.stream_id] = int(dict(ev.headers)[b":status"])
                        elif isinstance(ev, h2.events.DataReceived):
                            conn.acknowledge_received_data(ev.flow_controlled_length,
                                                           ev.stream_id)
                        elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                            done.add(ev.stream_id)
                    writer.write(conn.data_to_send())
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return [statuses.get(s, 0) for s in sorted(statuses)]


async def test_h2_streams_are_access_logged_and_their_5xx_are_warnings(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    backend_port, listen, admin = free_port(), free_port(), free_port()
    echo = EchoBackend("v1", BACKEND_ADDR, backend_port)
    await echo.start()
    config = tmp_path / "config"
    config.mkdir()
    write(config / "gw.yaml", *_objects(listen, backend_port, _tls_secret(tmp_path)))
    access = tmp_path / "access.log"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rauta.cli", "serve", "--config", str(config),
        "--admin", f"127.0.0.1:{admin}", "--access-log", str(access), "--grace", "1",
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    stderr: list[str] = []

    async def read() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            stderr.append(raw.decode(errors="replace").rstrip("\n"))

    reader = asyncio.create_task(read())
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def ready() -> bool:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"http://127.0.0.1:{admin}/readyz") as r:
                return r.status == 200
        return False

    def lines() -> list[dict[str, Any]]:
        text = access.read_text() if access.exists() else ""
        return [json.loads(x) for x in text.splitlines()]

    try:
        await until(ready, "/readyz", 20)
        statuses = await _h2_requests(listen, ["/a", "/b?q=1", "/dead/x"])
        assert statuses == [200, 200, 502], (statuses, "\n".join(stderr[-20:]))

        async def logged() -> bool:
            return len(lines()) >= 3

        await until(logged, "three access-log lines", 10)
        docs = lines()
        assert [(d["path"], d["status"], d["version"]) for d in docs] == [
            ("/a", 200, "2"), ("/b?q=1", 200, "2"), ("/dead/x", 502, "2")]
        assert docs[0]["route"] == "default/web" and docs[0]["host"] == "h2.test"
        assert docs[2]["backend"].startswith("default/dead")
        warned = [x for x in stderr if " WARNING " in x and " 502 " in x]
        assert len(warned) == 1, "\n".join(stderr)
        assert "default/web" in warned[0] and "default/dead" in warned[0]
        assert f"port {listen}" in warned[0]
        assert not any("Traceback" in x for x in stderr), "\n".join(stderr)
    finally:
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader, 5)
        await session.close()
        await echo.stop()
