"""``rauta observe`` without BPF: option parsing, the one-line refusal, the event lines."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner

from rauta.observe import command
from rauta.observe.events import ConnectEvent, Endpoint, HttpEvent
from rauta.observe.output import event_json


def test_parse_watch() -> None:
    assert command.parse_watch("10.0.0.2:8080") == (Endpoint("10.0.0.2", 8080), "")
    assert command.parse_watch("[fd00::2]:80=ns/web") == (Endpoint("fd00::2", 80), "ns/web")
    for bad in ("10.0.0.2", "10.0.0.2:0", "10.0.0.2:70000", "host:80", ":80", "[fd00::2]"):
        with pytest.raises(ValueError):
            command.parse_watch(bad)


def test_a_bad_watch_is_a_usage_error() -> None:
    r = CliRunner().invoke(command.observe_cmd, ["--iface", "lo", "--watch", "nope"])
    assert r.exit_code == 2 and "IP:PORT" in r.output


def test_no_bpf_is_one_line_and_exit_3(monkeypatch: pytest.MonkeyPatch) -> None:
    from rauta.observe import kernel

    monkeypatch.setattr(kernel, "bpf_available", lambda: "not root (test)")
    r = CliRunner().invoke(command.observe_cmd, ["--iface", "lo", "--duration", "1"])
    assert r.exit_code == 3, r.output
    assert r.output == "rauta: observe: BPF unavailable: not root (test)\n"


def test_event_lines() -> None:
    h = HttpEvent("xdp", "upstream", Endpoint("10.0.0.1", 41000), Endpoint("10.0.0.2", 80),
                  "GET", "/a?b", 123, False, 404, 1_000_000_000, 1_002_500_000, tcp_seq=7,
                  host="x.example", service="ns/web")
    d = json.loads(event_json(h))
    assert list(d)[:3] == ["type", "source", "leg"]
    assert (d["type"], d["method"], d["path"], d["status"], d["client_port"], d["server_ip"],
            d["latency"], d["start"], d["tcp_seq"], d["host"], d["service"]) == (
        "http", "GET", "/a?b", 404, 41000, "10.0.0.2", 0.0025, 1.0, 7, "x.example", "ns/web")
    c = ConnectEvent(Endpoint("10.0.0.1", 41001), Endpoint("10.0.0.2", 81), "refused",
                     2_000_000_000, 2_000_224_000)
    d = json.loads(event_json(c))
    assert (d["type"], d["outcome"], d["server_port"], d["duration"]) == (
        "connect", "refused", 81, 0.000224)
    buf = io.StringIO()
    from rauta.observe.output import JsonLines

    JsonLines(buf).write_events([h, c])
    assert [json.loads(x)["type"] for x in buf.getvalue().splitlines()] == ["http", "connect"]
