"""``rauta controller``'s options reach the runtime: ``--gateway-services`` (with
``--internal-ports``, ``--address-fallback``, ``--service-selector``), ``--strict`` and
``--access-log`` (same meaning as on ``serve``: the same store field check and the same
proxy access log), and bad values are one-line usage errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rauta import cli
from rauta.model.services import ServiceMode
from rauta.reconcile.store import Event


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """run_controller's keyword arguments (nothing is started)."""
    seen: dict[str, Any] = {}

    async def fake_run_controller(**kwargs: Any) -> int:
        seen.update(kwargs)
        return 0

    import rauta.controller
    monkeypatch.setattr(rauta.controller, "run_controller", fake_run_controller)
    monkeypatch.setattr(cli, "tune_gc", lambda: None)
    return seen


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli.main, ["controller", *args])


def test_defaults_pass_no_mode(captured: dict[str, Any]) -> None:
    res = invoke()
    assert res.exit_code == 0, res.output
    assert captured["gateway_services"] is None
    assert captured["strict"] is False and captured["settings"].access_log is None


def test_gateway_services_options(captured: dict[str, Any]) -> None:
    res = invoke("--gateway-services", "--internal-ports", "20000-20010",
                 "--address-fallback", "192.0.2.5", "--address-fallback", "lb.example.net",
                 "--service-selector", "app.kubernetes.io/name=rauta",
                 "--service-selector", "tier=edge")
    assert res.exit_code == 0, res.output
    assert captured["gateway_services"] == ServiceMode(
        port_range=(20000, 20010),
        fallback=(("IPAddress", "192.0.2.5"), ("Hostname", "lb.example.net")),
        selector=(("app.kubernetes.io/name", "rauta"), ("tier", "edge")))


def test_strict_and_access_log_are_passed(captured: dict[str, Any], tmp_path: Path) -> None:
    log = str(tmp_path / "access.log")
    res = invoke("--strict", "--access-log", log)
    assert res.exit_code == 0, res.output
    assert captured["strict"] is True and captured["settings"].access_log == log


@pytest.mark.parametrize("args, needle", [
    (("--gateway-services", "--internal-ports", "9-1"), "--internal-ports"),
    (("--gateway-services", "--service-selector", "novalue"), "--service-selector"),
    (("--gateway-services", "--address-fallback", " "), "--address-fallback"),
    (("--address-pool", "banana"), "--address-pool"),
])
def test_bad_values_are_one_line_usage_errors(captured: dict[str, Any], args: tuple[str, ...],
                                              needle: str) -> None:
    res = invoke(*args)
    assert res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rauta: ") and needle in lines[0]
    assert not captured


def test_gateway_address_and_gateway_services_exclude_each_other(
        captured: dict[str, Any]) -> None:
    res = invoke("--gateway-services", "--gateway-address", "192.0.2.1")
    assert res.exit_code == 2 and "exclude each other" in res.output


class NoClient:
    """The Controller is only built here, never run: no request may be made."""

    async def request(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("no API call expected")


async def test_controller_hands_strict_and_access_log_to_the_runtime(tmp_path: Path) -> None:
    from rauta.controller import Controller
    from rauta.settings import ProxySettings

    log = tmp_path / "access.log"
    proxy = ProxySettings(access_log=str(log)).build()
    ctl = Controller(NoClient(), strict=True, proxy=proxy,  # type: ignore[arg-type]
                     gateway_services=ServiceMode())
    try:
        # --strict: the store refuses an object with an unknown field (serve's rule)
        gw = {"kind": "Gateway", "metadata": {"name": "g", "namespace": "default"},
              "spec": {"gatewayClassName": "rauta", "listenerz": [],
                       "listeners": [{"name": "h", "port": 80, "protocol": "HTTP"}]}}
        assert ctl.reconciler.submit([Event("ADDED", gw)]) == 0
        assert "--strict" in ctl.reconciler.store.errors[("Gateway", "default", "g")]
        # --access-log: the proxy's own access log, the one serve uses
        assert ctl.proxy is proxy and ctl.proxy.access_log is not None
        assert ctl.services is not None and ctl.reconciler.service_sink is ctl.services
    finally:
        await ctl.proxy.close(0.1)


async def test_controller_without_strict_keeps_the_object_and_warns() -> None:
    from rauta.controller import Controller

    ctl = Controller(NoClient())  # type: ignore[arg-type]
    try:
        gw = {"kind": "Gateway", "metadata": {"name": "g", "namespace": "default"},
              "spec": {"gatewayClassName": "rauta", "listenerz": [],
                       "listeners": [{"name": "h", "port": 80, "protocol": "HTTP"}]}}
        assert ctl.reconciler.submit([Event("ADDED", gw)]) == 1
        assert ctl.reconciler.store.warnings[("Gateway", "default", "g")] == (
            'Gateway default/g: unknown field "spec.listenerz"',)
        assert ctl.proxy.access_log is None and ctl.services is None
    finally:
        await ctl.proxy.close(0.1)
