"""RouterConfig: frozen, hashable, equal by value, strict about fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rauta.model.config import (
    EMPTY,
    Backend,
    Endpoint,
    ListenerRoutes,
    Match,
    PathMatch,
    PortConfig,
    RouterConfig,
    Rule,
)


def make(port: int = 8080, path: str = "/", addr: str = "10.0.0.1") -> RouterConfig:
    rule = Rule(route="default/web", rule_index=0, match_index=0, hostname="",
                match=Match(path=PathMatch(type="PathPrefix", value=path)),
                backends=(Backend(name="default/svc:80", weight=1,
                                  endpoints=(Endpoint(address=addr, port=8000),)),))
    lr = ListenerRoutes(gateway="default/gw", listener="http", hostname="", rules=(rule,))
    return RouterConfig(ports=(PortConfig(port=port, protocol="HTTP", listeners=(lr,)),))


def test_equal_by_value_and_hashable() -> None:
    a, b = make(), make()
    assert a == b and a is not b
    assert hash(a) == hash(b)
    assert len({a, b, make(path="/x")}) == 2
    assert make(addr="10.0.0.2") != a
    assert RouterConfig() == EMPTY and hash(RouterConfig()) == hash(EMPTY)


def test_frozen() -> None:
    cfg = make()
    with pytest.raises(ValidationError):
        cfg.ports = ()  # type: ignore[misc]
    with pytest.raises(ValidationError):
        cfg.ports[0].port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Endpoint(address="10.0.0.1", port=80).port = 81  # type: ignore[misc]


def test_serialises_identically() -> None:
    assert make().model_dump_json() == make().model_dump_json()


@pytest.mark.parametrize("address, key", [
    ("10.0.0.1", "10.0.0.1:80"),
    ("::1", "[::1]:80"),
    ("fd00::a:1", "[fd00::a:1]:80"),
])
def test_endpoint_key(address: str, key: str) -> None:
    assert Endpoint(address=address, port=80).key == key


def test_port_lookup() -> None:
    cfg = RouterConfig(ports=(make(80).ports[0], make(443).ports[0]))
    found = cfg.port(443)
    assert found is not None and found.port == 443
    assert cfg.port(80) is cfg.ports[0]
    assert cfg.port(8080) is None
    assert EMPTY.port(80) is None


@pytest.mark.parametrize("cls, kwargs", [
    (Endpoint, {"address": "10.0.0.1", "port": 80, "weight": 1}),
    (RouterConfig, {"ports": (), "version": 2}),
    (PathMatch, {"type": "Exact", "value": "/", "ignore_case": True}),
])
def test_extra_fields_are_forbidden(cls: type, kwargs: dict) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        cls(**kwargs)


def test_literals_are_checked() -> None:
    with pytest.raises(ValidationError):
        PortConfig(port=80, protocol="TCP")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        PathMatch(type="Prefix", value="/")  # type: ignore[arg-type]
