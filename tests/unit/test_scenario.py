"""The scenario format and ``rauta replay``: placeholders, one-line errors, exit codes,
and a failing expectation really failing."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from click.testing import CliRunner

from rauta.cli import main
from rauta.replay import replay_text
from rauta.scenario import Placeholders, ScenarioError, load_scenario

pytestmark = pytest.mark.timeout(30)

SCENARIO = """\
name: teapot
backends:
  - name: v1
steps:
  - name: route to v1
    events:
      - type: ADDED
        object:
          kind: GatewayClass
          metadata: {name: rauta}
          spec: {controllerName: rauta.io/gateway-controller}
      - type: ADDED
        object:
          kind: Gateway
          metadata: {name: gw, namespace: default}
          spec:
            gatewayClassName: rauta
            listeners: [{name: http, port: ${port:web}, protocol: HTTP}]
      - type: ADDED
        object:
          kind: Service
          metadata: {name: v1, namespace: default}
          spec: {ports: [{name: http, port: 80}]}
      - type: ADDED
        object:
          kind: EndpointSlice
          metadata: {name: v1-1, namespace: default, labels: {kubernetes.io/service-name: v1}}
          addressType: IPv4
          ports: [{name: http, port: ${port:backends}}]
          endpoints: [{addresses: ["${addr:v1}"], conditions: {ready: true}}]
      - type: ADDED
        object:
          kind: HTTPRoute
          metadata: {name: web, namespace: default}
          spec:
            parentRefs: [{name: gw}]
            rules: [{backendRefs: [{name: v1, port: 80}]}]
    probes:
      - request: {port: web, path: /}
        count: 2
        expect: {status: EXPECTED, backend: v1}
    statuses:
      - {kind: HTTPRoute, namespace: default, name: web, conditions: {Accepted: "True"}}
"""


def scenario(expected_status: int) -> str:
    return SCENARIO.replace("EXPECTED", str(expected_status))


# ---------------------------------------------------------------------- placeholders


def test_placeholders_same_name_same_value_distinct_addrs() -> None:
    counter = itertools.count(20000)
    ph = Placeholders(port_alloc=lambda: next(counter))
    text = ph.expand("${port:a} ${port:b} ${port:a} ${addr:x} ${addr:y} ${addr:x} ${other}")
    assert text == "20000 20001 20000 127.0.0.2 127.0.0.3 127.0.0.2 ${other}"
    assert ph.ports == {"a": 20000, "b": 20001}
    assert ph.addrs == {"x": "127.0.0.2", "y": "127.0.0.3"}


def test_placeholders_default_allocator_gives_free_distinct_ports() -> None:
    ph = Placeholders()
    a, b = ph.port("a"), ph.port("b")
    assert a != b and 0 < a < 65536 and ph.port("a") == a


def test_load_scenario_expands_before_parsing() -> None:
    ph = Placeholders()
    s = load_scenario(scenario(200), ph, "t.yaml")
    gw = s.steps[0].events[1].object
    assert gw["spec"]["listeners"][0]["port"] == ph.port("web")
    eps = s.steps[0].events[3].object
    assert eps["endpoints"][0]["addresses"] == ["127.0.0.2"]
    assert s.steps[0].probes[0].request.port == "web"


# ---------------------------------------------------------------------- errors


def test_bad_yaml_is_one_line_with_file_line_col() -> None:
    text = "name: x\nsteps:\n  - name: [unclosed\n"
    with pytest.raises(ScenarioError) as exc:
        load_scenario(text, Placeholders(), "bad.yaml")
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("bad.yaml:4:1: invalid YAML:") or msg.startswith("bad.yaml:3:"), msg


@pytest.mark.parametrize("text, where", [
    ("name: x\nsteps: [{name: s, events: [{type: CREATED, object: {}}]}]\n",
     "x.yaml: steps.0.events.0.type:"),
    ("name: x\nsteps: [{name: s, bogus: 1}]\n", "x.yaml: steps.0.bogus:"),
    ("name: x\n", "x.yaml: steps:"),
    ("name: x\nsteps: [{name: s, probes: [{request: {port: web}, count: many}]}]\n",
     "x.yaml: steps.0.probes.0.count:"),
])
def test_schema_error_names_the_field_path(text: str, where: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        load_scenario(text, Placeholders(), "x.yaml")
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(where), msg


@pytest.mark.parametrize("text", [
    "name: x\nsteps:\n  - name: [unclosed\n",
    "name: x\nsteps: [{name: s, events: [{type: CREATED, object: {}}]}]\n",
    "- just\n- a list\n",
    "",
])
def test_replay_cli_malformed_scenario_exits_2_with_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["replay", str(path)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"rauta: {path}")
    assert "Traceback" not in result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(result.exception,
                                                                     SystemExit)


def test_replay_cli_unknown_backend_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nsteps: [{name: s, start: [ghost]}]\n")
    result = CliRunner().invoke(main, ["replay", str(path)])
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and "ghost" in result.stderr


def test_replay_cli_undecodable_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"name: \xff\xfe\nsteps: []\n")
    result = CliRunner().invoke(main, ["replay", str(path)])
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and str(path) in result.stderr


# ---------------------------------------------------------------------- replay outcome


def test_failing_expectation_is_reported() -> None:
    lines: list[str] = []
    report = asyncio.run(replay_text(scenario(418), "teapot.yaml", out=lines.append))
    assert report.failed == 1  # status 418 expected, 200 got; backend and status pass
    assert report.passed == 2
    fail = [line for line in lines if line.startswith("FAIL")]
    assert any("status 418" in line and "got [200]" in line for line in fail), lines
    assert lines[-1].startswith("FAIL [teapot]")


def test_passing_scenario_and_cli_exit_codes(tmp_path: Path) -> None:
    lines: list[str] = []
    report = asyncio.run(replay_text(scenario(200), "ok.yaml", out=lines.append))
    assert report.failed == 0 and report.passed == 3, lines
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(scenario(200))
    bad.write_text(scenario(418))
    assert CliRunner().invoke(main, ["replay", str(good)]).exit_code == 0
    result = CliRunner().invoke(main, ["replay", str(good), str(bad)])
    assert result.exit_code == 1
    assert "FAIL [teapot] 2 passed, 1 failed" in result.stdout
