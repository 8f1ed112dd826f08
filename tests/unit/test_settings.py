"""``rauta.settings``: the grouped data-plane settings cover every Proxy keyword, come
from the command line's flat values, and build a Proxy with exactly those values."""

from __future__ import annotations

import inspect
import pickle
from dataclasses import fields

import pytest

from rauta.proxy.manager import Proxy
from rauta.settings import GROUPS, Limits, ProxySettings, Timeouts

# Proxy keywords that are fields of ProxySettings itself, not of a group.
_TOP = {"host", "hash_on", "access_log", "drain_seconds", "reuse_port", "registry"}


def test_the_groups_cover_every_proxy_keyword_with_its_default() -> None:
    params = {n: p for n, p in inspect.signature(Proxy.__init__).parameters.items()
              if n != "self"}
    grouped = {f.name: f.default for g in GROUPS for f in fields(g)}
    assert sorted(set(params) - _TOP - set(grouped)) == [], "Proxy keywords in no group"
    assert sorted(set(grouped) - set(params)) == [], "group fields the Proxy lacks"
    for name, default in grouped.items():
        assert params[name].default == default, name


def test_from_flat_groups_the_values_and_refuses_unknown_names() -> None:
    s = ProxySettings.from_flat({"max_headers": 7, "connect_timeout": 1.5,
                                 "trusted_hops": 2}, host="0.0.0.0", drain=3.0)
    assert s.limits == Limits(max_headers=7)
    assert s.timeouts == Timeouts(connect_timeout=1.5)
    assert s.hardening.trusted_hops == 2 and s.host == "0.0.0.0" and s.drain == 3.0
    with pytest.raises(TypeError, match="max_hedaers"):
        ProxySettings.from_flat({"max_hedaers": 7})


async def test_build_gives_the_proxy_these_values() -> None:
    s = ProxySettings.from_flat({"max_headers": 7, "client_idle_timeout": 9.0,
                                 "max_idle_per_endpoint": 3}, drain=2.5, hash_on="client-ip")
    proxy = s.build()
    try:
        rt = proxy._rt
        assert (rt.max_headers, rt.idle_timeout, rt.hash_on) == (7, 9.0, "client-ip")
        assert proxy.drain_seconds == 2.5 and proxy.pool.max_idle == 3
    finally:
        await proxy.close()


def test_settings_pickle_whole() -> None:
    s = ProxySettings.from_flat({"max_headers": 7}, workers=2)
    assert pickle.loads(pickle.dumps(s)) == s
