"""The ``rauta`` command line (rauta.cli.main), driven through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from rauta.cli import main

QUICK = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: rauta}
spec: {controllerName: rauta.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: rauta
  listeners:
  - {name: http, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules:
  - backendRefs: [{name: web, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{name: http, port: 80, targetPort: 8000}]}
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _file(tmp_path: Path, text: str, name: str = "in.yaml") -> str:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_translate_prints_yaml_document(runner: CliRunner, tmp_path: Path) -> None:
    res = runner.invoke(main, ["translate", _file(tmp_path, QUICK)])
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load(res.stdout)
    assert list(doc) == ["config", "status"]
    (port,) = doc["config"]["ports"]
    assert port["port"] == 8080
    assert port["listeners"][0]["rules"][0]["route"] == "default/web"
    assert doc["status"]["httpRoutes"][0]["parents"][0]["controllerName"] == (
        "rauta.io/gateway-controller")
    assert res.stderr == ""


def test_translate_json_output_parses_and_equals_yaml(runner: CliRunner, tmp_path: Path) -> None:
    f = _file(tmp_path, QUICK)
    as_json = runner.invoke(main, ["translate", "--json", f])
    as_yaml = runner.invoke(main, ["translate", f])
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == yaml.safe_load(as_yaml.stdout)


def test_translate_output_is_stable_across_runs(runner: CliRunner, tmp_path: Path) -> None:
    f = _file(tmp_path, QUICK)
    outs = {runner.invoke(main, ["translate", f]).stdout for _ in range(3)}
    assert len(outs) == 1


def test_translate_controller_name_option(runner: CliRunner, tmp_path: Path) -> None:
    f = _file(tmp_path, QUICK)
    res = runner.invoke(main, ["translate", "--controller-name", "example.com/other", f])
    assert res.exit_code == 0
    doc = yaml.safe_load(res.stdout)
    assert doc["status"]["gateways"] == [] and doc["status"]["httpRoutes"] == []


def test_translate_accepts_a_directory(runner: CliRunner, tmp_path: Path) -> None:
    _file(tmp_path, QUICK, "a.yaml")
    res = runner.invoke(main, ["translate", str(tmp_path)])
    assert res.exit_code == 0
    assert yaml.safe_load(res.stdout)["config"]["ports"][0]["port"] == 8080


def _assert_clean_failure(res, *needles: str) -> None:  # noqa: ANN001
    assert res.exit_code == 2, (res.stdout, res.stderr)
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("rauta: ")
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in lines[0]


def test_malformed_yaml_exits_2_with_one_stderr_line(runner: CliRunner, tmp_path: Path) -> None:
    f = _file(tmp_path, "kind: Service\nmetadata: {name: s\n", "broken.yaml")
    _assert_clean_failure(runner.invoke(main, ["translate", f]), "broken.yaml:", "invalid YAML")


def test_missing_field_exits_2_naming_object_and_field(runner: CliRunner, tmp_path: Path) -> None:
    f = _file(tmp_path, "kind: Gateway\nmetadata: {name: gw, namespace: infra}\n"
                        "spec: {listeners: [{name: http, port: 80, protocol: HTTP}]}\n")
    _assert_clean_failure(runner.invoke(main, ["translate", f]),
                          "Gateway infra/gw", "spec.gatewayClassName")


def test_duplicate_objects_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    _file(tmp_path, QUICK, "a.yaml")
    _file(tmp_path, QUICK, "b.yaml")
    _assert_clean_failure(runner.invoke(main, ["translate", str(tmp_path)]),
                          "a.yaml", "b.yaml")


def test_translate_address_pool_gives_the_gateway_its_own_address(
        runner: CliRunner, tmp_path: Path) -> None:
    res = runner.invoke(main, ["translate", "--address-pool", "127.0.1.0/24",
                               _file(tmp_path, QUICK)])
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load(res.stdout)
    assert [(p["address"], p["port"]) for p in doc["config"]["ports"]] == [("127.0.1.1", 8080)]
    assert doc["status"]["gateways"][0]["addresses"] == [
        {"type": "IPAddress", "value": "127.0.1.1"}]


@pytest.mark.parametrize("pool", ["127.0.1.1/24", "banana", "10.0.0.0/33"])
def test_bad_address_pool_is_one_line_and_exit_2(runner: CliRunner, tmp_path: Path,
                                                  pool: str) -> None:
    _assert_clean_failure(runner.invoke(main, ["translate", "--address-pool", pool,
                                               _file(tmp_path, QUICK)]),
                          "--address-pool", pool)


def test_missing_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    _assert_clean_failure(runner.invoke(main, ["translate", str(tmp_path / "nope.yaml")]),
                          "nope.yaml")


def test_translate_requires_at_least_one_file(runner: CliRunner) -> None:
    res = runner.invoke(main, ["translate"])
    assert res.exit_code == 2
    assert "Traceback" not in res.output


def _serve_proxy_kwargs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        args: list[str]) -> dict:
    """The Proxy keyword arguments ``rauta serve ARGS`` builds (serve itself faked)."""
    import rauta.serve

    seen: dict = {}

    async def fake_serve(paths: list[str], **kw: object) -> int:
        seen.update(kw)
        return 0

    monkeypatch.setattr(rauta.serve, "serve", fake_serve)
    monkeypatch.setattr("rauta.cli.tune_gc", lambda: None)
    f = tmp_path / "c.yaml"
    f.write_text(QUICK)
    result = CliRunner().invoke(main, ["serve", "--config", str(f), *args])
    assert result.exit_code == 0, result.output
    return dict(seen["settings"].proxy_kwargs())

@pytest.mark.parametrize("args,expected", [
    ([], {"trusted_hops": 0, "underscores_in_headers": False, "allow_trace": False,
          "max_connections": 10000}),
    (["--trusted-hops", "2", "--underscores-in-headers", "--allow-trace",
      "--max-connections", "50"],
     {"trusted_hops": 2, "underscores_in_headers": True, "allow_trace": True,
      "max_connections": 50}),
])
def test_serve_passes_the_hardening_settings_to_the_proxy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], expected: dict) -> None:
    got = _serve_proxy_kwargs(tmp_path, monkeypatch, args)
    assert {k: got[k] for k in expected} == expected


def test_bad_trusted_hops_is_one_line_and_exit_2(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(QUICK)
    result = CliRunner().invoke(main, ["serve", "--config", str(f), "--trusted-hops", "-1"])
    assert result.exit_code == 2 and "trusted-hops" in result.output


# Proxy keywords that are not the data plane's limits, timeouts or hardening (each has an
# option of its own: --listen-host, --hash-on, --access-log, --grace) or are not settings.
_NOT_PROXY_OPTIONS = {"host", "registry", "hash_on", "access_log", "drain_seconds",
                      "reuse_port"}


def _proxy_keywords() -> list[str]:
    import inspect

    from rauta.proxy.manager import Proxy

    return [n for n in inspect.signature(Proxy.__init__).parameters
            if n != "self" and n not in _NOT_PROXY_OPTIONS]


@pytest.mark.parametrize("command", ["serve", "controller"])
def test_every_proxy_limit_and_timeout_has_an_option(command: str) -> None:
    """Every setting of the Proxy reaches the command line, on serve and controller alike
    (one decorator), with the Proxy's own default."""
    import inspect

    from rauta.proxy.manager import Proxy

    cmd = main.commands[command]
    params = {p.name: p for p in cmd.params if isinstance(p, click.Option)}
    defaults = inspect.signature(Proxy.__init__).parameters
    missing = [k for k in _proxy_keywords() if k not in params]
    assert missing == [], f"rauta {command} lacks options for {missing}"
    for k in _proxy_keywords():
        assert params[k].default == defaults[k].default, k
    assert "grace" in params and params["grace"].default == 10.0


def test_serve_passes_every_proxy_setting_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--connect-timeout", "1.5", "--client-idle-timeout", "9", "--max-head-bytes",
            "8192", "--max-headers", "20", "--lingering-time", "3", "--send-timeout", "7"]
    got = _serve_proxy_kwargs(tmp_path, monkeypatch, args)
    assert (got["connect_timeout"], got["client_idle_timeout"], got["max_head_bytes"],
            got["max_headers"], got["lingering_time"], got["send_timeout"]) == (
        1.5, 9.0, 8192, 20, 3.0, 7.0)


@pytest.mark.parametrize("command", ["serve", "controller"])
def test_workers_reach_the_settings_and_exclude_observe_and_access_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    import rauta.controller
    import rauta.serve

    seen: dict = {}

    async def fake(*_: object, **kw: object) -> int:
        seen.update(kw)
        return 0

    monkeypatch.setattr(rauta.serve, "serve", fake)
    monkeypatch.setattr(rauta.controller, "run_controller", fake)
    monkeypatch.setattr("rauta.cli.tune_gc", lambda: None)
    f = tmp_path / "c.yaml"
    f.write_text(QUICK)
    base = [command, *(["--config", str(f)] if command == "serve" else [])]
    result = CliRunner().invoke(main, [*base, "--workers", "3"])
    assert result.exit_code == 0, result.output
    assert seen["settings"].workers == 3 and seen["settings"].proxy_kwargs()["reuse_port"]
    for extra in (["--observe", "proxy"], ["--access-log", "-"]):
        result = CliRunner().invoke(main, [*base, "--workers", "2", *extra])
        assert result.exit_code == 2 and "not available with --workers 2" in result.output
    log = str(tmp_path / "access.log")  # a file: every worker appends to it
    result = CliRunner().invoke(main, [*base, "--workers", "2", "--access-log", log])
    assert result.exit_code == 0 and seen["settings"].access_log == log
