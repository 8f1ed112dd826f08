"""Two ``rauta controller`` processes on one Lease, against the lab's real API server.

Both serve traffic from their own watches (each on its own 127.0.0.x); exactly one holds
the Lease and writes status. After SIGKILL of the leader the other takes the Lease over
within about one lease duration and writes the statuses of changes made meanwhile.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e import test_controller as tc
from tests.e2e.ctlproc import ControllerProcess, logs_on_failure
from tests.e2e.netns import BackendNet, http_get
from tests.e2e.test_controller import (
    Env,
    backend,
    brief,
    endpoint_slice,
    free_ports,
    gateway,
    listener,
    loopback_address,
    route,
    rule,
    service,
    wait_until,
)

# The per-test world and the netns backends, as test_controller.py defines them.
env = tc.env
backends = tc.backends

pytestmark = pytest.mark.timeout(120, func_only=True)

LEASE_S = 4.0
RETRY_S = max(0.2, LEASE_S / 7.5)  # rauta.controller: the elector's retry period


def test_one_leader_writes_and_a_successor_takes_over(env: Env, backends: BackendNet) -> None:
    api, ns = env.api, env.ns
    echo = backends.start_echo("echo")
    host_a, host_b = loopback_address(), loopback_address()
    port = free_ports(host_a, 1)[0]
    assert free_ports(host_b, 1)  # both addresses are usable
    lease = f"lease-{env.id}"

    api.create(service(ns, "echo"))
    api.create(endpoint_slice(ns, "echo", echo.address))
    api.create(gateway(ns, "gw", env.gc, [listener("http", port)]))
    api.create(route(ns, "one", [{"name": "gw"}], [rule(backend("echo"), path="/one")]))

    a = env.controller(identity=f"a-{env.id}", listen_host=host_a, lease=lease,
                       lease_duration=LEASE_S, ready=False)
    b = env.controller(identity=f"b-{env.id}", listen_host=host_b, lease=lease,
                       lease_duration=LEASE_S, ready=False)
    procs = (a, b)

    def answer(p: ControllerProcess, path: str) -> tuple[int, str | None]:
        try:
            status, headers, _ = http_get(p.listen_host, port, path, timeout=3)
        except OSError:
            return 0, None
        return status, headers.get("x-backend")

    def leaders() -> list[ControllerProcess]:
        return [p for p in procs if p.alive and p.is_leader()]

    def lease_holder() -> Any:
        obj = api.get("Lease", ns, lease)
        return (obj or {}).get("spec", {}).get("holderIdentity")

    with logs_on_failure(*procs):
        a.wait_ready(30)
        b.wait_ready(30)
        [leader] = wait_until(lambda: (ls := leaders()) and len(ls) == 1 and ls, 15,
                              "exactly one leader", procs)
        follower = b if leader is a else a
        # ... and it stays that way for a few renewals.
        for _ in range(8):
            assert [p.identity for p in leaders()] == [leader.identity]
            time.sleep(RETRY_S / 2)
        assert lease_holder() == leader.identity

        # Both serve traffic from their own watches.
        for p in procs:
            wait_until(lambda p=p: answer(p, "/one") == (200, "echo"), 20,
                       f"traffic through {p.identity}", procs)
        c = wait_until(lambda: env.route_conds("one"), 20, "status of route one", procs)
        assert brief(c["Accepted"]) == ("True", "Accepted")
        assert brief(c["ResolvedRefs"]) == ("True", "ResolvedRefs")
        wait_until(lambda: env.listeners(env.gw("gw")).get("http", {}).get("attachedRoutes")
                   == 1, 20, "attachedRoutes 1", procs)
        # Only the leader wrote.
        assert env.written(leader) >= 3  # GatewayClass, Gateway, HTTPRoute
        assert env.written(follower) == 0

        # Kill the leader; change things before the follower can have taken over.
        leader.kill()
        killed_at = time.monotonic()
        api.create(route(ns, "two", [{"name": "gw"}], [rule(backend("echo"), path="/two")]))
        api.patch("HTTPRoute", ns, "one", {"spec": {"rules": [
            rule(backend("gone"), path="/one")]}})

        follower.wait(lambda: follower.is_leader(), LEASE_S + 4 * RETRY_S + 3,
                      "the follower to take the Lease over")
        took = time.monotonic() - killed_at
        assert took <= LEASE_S + 4 * RETRY_S + 1.5, took
        assert lease_holder() == follower.identity

        # The changes made while there was no leader get their statuses (convergence).
        c2 = wait_until(lambda: env.route_conds("two"), 15, "status of route two", (follower,))
        assert brief(c2["Accepted"]) == ("True", "Accepted")
        assert c2["Accepted"]["observedGeneration"] == 1
        c1 = wait_until(lambda: (x := env.route_conds("one"))["ResolvedRefs"]["reason"]
                        == "BackendNotFound" and x, 15, "route one BackendNotFound",
                        (follower,))
        assert c1["ResolvedRefs"]["observedGeneration"] == 2
        wait_until(lambda: env.listeners(env.gw("gw"))["http"]["attachedRoutes"] == 2, 15,
                   "attachedRoutes 2", (follower,))
        assert answer(follower, "/two") == (200, "echo")
        assert answer(follower, "/one")[0] == 500  # the only backend is not found

        # A change after the takeover is written directly.
        api.delete("HTTPRoute", ns, "two")
        wait_until(lambda: env.listeners(env.gw("gw"))["http"]["attachedRoutes"] == 1, 15,
                   "attachedRoutes back to 1", (follower,))
        assert env.written(follower) >= 3
        assert answer(follower, "/two") == (404, None)
