"""Forwarding over real sockets: GET/POST, keep-alive reuse, headers, rewrites, redirects."""

from __future__ import annotations

import asyncio
import json

import pytest

from rauta.model.config import (
    Filters,
    Header,
    HeaderModifier,
    PathModifier,
    Redirect,
    Rewrite,
)
from rauta.proxy import Proxy

from .conftest import Client, EchoBackend, backend, config, free_port, get, port_config, rule

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


async def simple(proxy: Proxy, *backends, **rule_kw) -> int:
    port = free_port()
    applied = await proxy.apply(config(port_config(port, rule(*backends, **rule_kw))))
    assert applied.ports == (port,) and applied.failed == ()
    return port


def seen_headers(resp) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n, v in json.loads(resp.body)["headers"]:
        out.setdefault(n.lower(), []).append(v)
    return out


async def test_get_and_post_forwarded(proxy: Proxy, echo: EchoBackend) -> None:
    port = await simple(proxy, backend(echo.port))
    resp = await get(port, "/a/b?x=1&y=%2F")
    assert resp.status == 200 and resp.complete
    data = json.loads(resp.body)
    assert data["path"] == "/a/b?x=1&y=%2F" and data["method"] == "GET"
    client = await Client.open(port)
    body = b"x" * 100_000
    resp = await client.request("POST", "/upload", body=body)
    assert resp.status == 200 and json.loads(resp.body)["body_len"] == len(body)
    await client.close()
