"""What the proxy tells an operator (issue 11): a warning line for every 5xx it makes
itself naming route, rule and backend; a warning when a port cannot be bound; metrics
that label rules by their ``name``; ``rauta_build_info``; the JSON access log."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from rauta.proxy import Proxy
from rauta.proxy.accesslog import AccessLog

from .conftest import EchoBackend, backend, config, free_port, get, port_config, rule

pytestmark = pytest.mark.timeout(20)


def named_rule(r: object, name: str) -> object:
    return r.model_copy(update={"rule_name": name})  # type: ignore[attr-defined]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_a_proxy_made_5xx_is_one_warning_naming_route_and_backend(
        proxy: Proxy, caplog: pytest.LogCaptureFixture) -> None:
    port, dead = free_port(), free_port()  # nothing listens on ``dead``
    named = named_rule(rule(backend(dead, name="shop/api:8080"), route="shop/web"), "checkout")
    await proxy.apply(config(port_config(port, named)))
    caplog.set_level(logging.WARNING)
    assert (await get(port, "/")).status == 502
    lines = [w for w in warnings(caplog) if "502" in w]
    assert len(lines) == 1, warnings(caplog)
    assert "shop/web" in lines[0] and "shop/api:8080" in lines[0] and "checkout" in lines[0]
    assert f"port {port}" in lines[0]


async def test_no_endpoints_503_is_logged_too(proxy: Proxy,
                                              caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    await proxy.apply(config(port_config(port, rule(backend(name="shop/empty:80"),
                                                    route="shop/web"))))
    caplog.set_level(logging.WARNING)
    status = (await get(port, "/")).status
    assert status >= 500
    assert any(str(status) in w and "shop/empty:80" in w for w in warnings(caplog))


async def test_a_bind_failure_is_a_warning_once(proxy: Proxy, echo: EchoBackend,
                                                caplog: pytest.LogCaptureFixture) -> None:
    busy = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", busy))
    holder.listen()
    try:
        cfg = config(port_config(busy, rule(backend(echo.port))))
        await proxy.apply(cfg)
        await proxy.apply(cfg)  # retried: the same error is not repeated
        lines = [w for w in warnings(caplog) if f"127.0.0.1:{busy}" in w]
        assert len(lines) == 1, lines
        assert "cannot listen" in lines[0]
    finally:
        holder.close()


async def test_metrics_label_rules_by_name(proxy: Proxy, echo: EchoBackend) -> None:
    port = free_port()
    named = named_rule(rule(backend(echo.port), route="default/r", index=1), "checkout")
    plain = rule(backend(echo.port), route="default/r", path="/plain", index=0)
    await proxy.apply(config(port_config(port, plain, named)))
    assert (await get(port, "/x")).status == 200
    assert (await get(port, "/plain")).status == 200
    reg = proxy.metrics.registry
    base = {"port": str(port), "route": "default/r", "backend": "default/svc:80", "code": "2xx"}
    assert reg.get_sample_value("rauta_requests_total", {**base, "rule": "checkout"}) == 1
    assert reg.get_sample_value("rauta_requests_total", {**base, "rule": "0"}) == 1


def test_build_info_is_exported() -> None:
    import platform

    reg = CollectorRegistry()
    Proxy(registry=reg)
    samples = [s for m in reg.collect() for s in m.samples if s.name == "rauta_build_info"]
    assert len(samples) == 1 and samples[0].value == 1
    assert samples[0].labels["python"] == platform.python_version()
    assert samples[0].labels["version"]


# ---------------------------------------------------------------------- access log


async def test_access_log_writes_one_json_line_per_request(tmp_path: Path,
                                                           echo: EchoBackend) -> None:
    out = tmp_path / "access.log"
    proxy = Proxy(registry=CollectorRegistry(), access_log=str(out))
    port = free_port()
    named = named_rule(rule(backend(echo.port), route="default/r"), "main")
    try:
        await proxy.apply(config(port_config(port, named)))
        for i in range(3):
            assert (await get(port, f"/p{i}?q=1")).status == 200
    finally:
        await proxy.close(0.0)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["path"] for d in lines] == ["/p0?q=1", "/p1?q=1", "/p2?q=1"]
    first = lines[0]
    assert first["status"] == 200 and first["method"] == "GET" and first["port"] == port
    assert first["route"] == "default/r" and first["rule"] == "main"
    assert first["backend"] == "default/svc:80" and first["client"] == "127.0.0.1"
    assert first["duration_ms"] >= 0 and first["ts"].endswith("Z")


def test_two_access_logs_on_one_file_never_split_each_others_lines(tmp_path: Path) -> None:
    """The workers of ``--workers N`` share one file: each appends whole batches (large
    ones here: 3,000 lines with 200-byte paths), so every line stays whole."""
    out = tmp_path / "shared.log"
    logs = [AccessLog(str(out), max_pending=10_000, flush_every=0.01) for _ in range(2)]
    for rnd in range(4):
        for n, alog in enumerate(logs):
            for i in range(3000):
                alog.add("10.0.0.1", "GET", b"/" + b"x" * 200 + f"/{n}/{rnd}/{i}".encode(),
                         "h", "1.1", 200, 80, "", "", "", 0.001)
        time.sleep(0.05)  # both writers drain at once
    for alog in logs:
        alog.close()
    lines = out.read_text().splitlines()
    paths = {json.loads(line)["path"] for line in lines}
    assert len(lines) == len(paths) == 2 * 4 * 3000


def test_access_log_is_bounded_and_flushed_on_close(tmp_path: Path) -> None:
    out = tmp_path / "a.log"
    alog = AccessLog(str(out), max_pending=5, flush_every=60.0)  # the writer sleeps
    for i in range(8):
        alog.add("10.0.0.1", "GET", f"/{i}".encode(), "h", "1.1", 200, 80, "", "", "", 0.001)
    assert alog.dropped == 3
    alog.close()
    assert len(out.read_text().splitlines()) == 5 and alog.written == 5


async def test_without_an_access_log_nothing_is_queued(proxy: Proxy, echo: EchoBackend) -> None:
    port = free_port()
    await proxy.apply(config(port_config(port, rule(backend(echo.port)))))
    assert (await get(port, "/")).status == 200
    assert proxy.access_log is None and proxy.listener(port).access_log is None
    await asyncio.sleep(0)


@pytest.mark.parametrize("path", [b"/plain", b'/q"uote\\back', b"/ctl\x00\x1f\x7f", b"/\xe9\xff"])
def test_access_log_lines_are_json_whatever_the_path(path: bytes) -> None:
    alog = AccessLog.__new__(AccessLog)  # the formatter only: no file, no thread
    entry = (1_700_000_000.25, "::1", "GET", path, None, "1.1", 502, 8443, "ns/r", "main",
             "", 0.0015)
    doc = json.loads(alog.format(entry))
    assert doc == {"ts": "2023-11-14T22:13:20.250Z", "client": "::1", "method": "GET",
                   "path": path.decode("latin-1"), "host": "", "version": "1.1",
                   "status": 502, "port": 8443, "route": "ns/r", "rule": "main",
                   "backend": "", "duration_ms": 1.5}
