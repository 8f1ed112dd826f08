"""``rauta controller --gateway-services`` against the lab's real API server (issue 11, "In
a cluster, each Gateway gets its own address").

One controller process, two Gateways with the same listener port 80 and different routes:
- each Gateway gets a LoadBalancer Service ``<gateway>-rauta`` carrying the gateway-name
  label, the Gateway's spec.infrastructure labels and annotations, an ownerReference to
  the Gateway and one port per listener port, mapped to an internal port of its own;
- traffic on each Gateway's internal port (read from its Service's targetPort) sees only
  that Gateway's routes (the routes redirect, so no backend is needed: a redirect also
  shows the listener port 80 is kept, not the internal one);
- the Service follows the Gateway: a listener added and removed, an infrastructure label
  changed; it is deleted with its Gateway;
- status.addresses: with no load-balancer ingress, the configured fallback (Programmed
  True saying so); the test then sets the Service's status.loadBalancer.ingress itself, as
  a load-balancer controller would, and the Gateway's addresses follow (and go back to
  the fallback when the ingress is cleared).

The lab has no load-balancer controller, so nothing else writes those statuses. Helpers
and the per-test world (namespaces, GatewayClass, controller processes) come from
``test_controller``. Skips only without the lab (conftest), printing why.
"""

from __future__ import annotations

import http.client
import time
from typing import Any

import pytest

from tests.e2e import test_controller
from tests.e2e.ctlproc import logs_on_failure
from tests.e2e.test_controller import (
    Env,
    brief,
    conds,
    gateway,
    listener,
    loopback_address,
    route,
    wait_until,
)

pytestmark = pytest.mark.timeout(180, func_only=True)
env = test_controller.env  # the per-test world fixture (namespaces, GatewayClass, processes)

LABEL = "gateway.networking.k8s.io/gateway-name"
PORTS = (21000, 21019)
FALLBACK = "192.0.2.77"
LB_IP = "203.0.113.7"


def redirect_rule(path: str, host: str) -> dict[str, Any]:
    return {"matches": [{"path": {"type": "PathPrefix", "value": path}}],
            "filters": [{"type": "RequestRedirect",
                         "requestRedirect": {"hostname": host, "statusCode": 302}}]}


def get(host: str, port: int, path: str) -> tuple[int, str]:
    """(status, Location) of one GET."""
    conn = http.client.HTTPConnection(host, port, timeout=3)
    try:
        conn.request("GET", path, headers={"Host": "www.example.com", "Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Location") or ""
    finally:
        conn.close()


def service_of(env: Env, gw: str) -> dict[str, Any] | None:
    return env.api.get("Service", env.ns, f"{gw}-rauta")


def ports_of(svc: dict[str, Any] | None) -> dict[int, int]:
    """Listener port → internal (target) port of a generated Service."""
    return {p["port"]: p["targetPort"] for p in ((svc or {}).get("spec") or {}).get("ports")
            or ()}


def addresses(env: Env, gw: str) -> list[str]:
    return [a["value"] for a in (env.gw(gw).get("status") or {}).get("addresses") or ()]


def test_per_gateway_services_end_to_end(env: Env) -> None:
    api, ns = env.api, env.ns
    host = loopback_address()
    api.create(gateway(ns, "one", env.gc, [listener("http", 80)], infrastructure={
        "labels": {"team": "a"}, "annotations": {"lb.example/scheme": "internal"}}))
    api.create(gateway(ns, "two", env.gc, [listener("http", 80)]))
    api.create(route(ns, "r1", [{"name": "one"}], [redirect_rule("/a", "a.example")]))
    api.create(route(ns, "r2", [{"name": "two"}], [redirect_rule("/b", "b.example")]))
    flags = ("--gateway-services", "--internal-ports", f"{PORTS[0]}-{PORTS[1]}",
             "--service-selector", "app.kubernetes.io/name=rauta",
             "--address-fallback", FALLBACK)
    ctl = env.controller(listen_host=host, lease_duration=3.0, extra=flags)
    procs = (ctl,)
    with logs_on_failure(ctl):
        # -- the Services, as generated
        one = wait_until(lambda: service_of(env, "one"), 20, "Service one-rauta", procs)
        two = wait_until(lambda: service_of(env, "two"), 20, "Service two-rauta", procs)
        gw_one = env.gw("one")
        assert one["spec"]["type"] == "LoadBalancer"
        assert one["metadata"]["labels"] == {LABEL: "one", "team": "a"}
        assert one["metadata"]["annotations"]["lb.example/scheme"] == "internal"
        assert one["metadata"]["annotations"]["rauta.io/controller-name"] == env.ctl_name
        [owner] = one["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "Gateway", "one", gw_one["metadata"]["uid"], True)
        assert one["spec"]["selector"] == {"app.kubernetes.io/name": "rauta"}
        assert two["metadata"]["labels"] == {LABEL: "two"}
        p_one, p_two = ports_of(one)[80], ports_of(two)[80]
        assert p_one != p_two and all(PORTS[0] <= p <= PORTS[1] for p in (p_one, p_two))

        # -- statuses: accepted with infrastructure, addresses from the fallback
        def programmed(gw: str) -> tuple[str, str] | None:
            c = conds((env.gw(gw).get("status") or {}).get("conditions"))
            return brief(c["Programmed"]) if "Programmed" in c else None
        for gw in ("one", "two"):
            wait_until(lambda g=gw: programmed(g) == ("True", "Programmed"), 20,
                       f"Gateway {gw} Programmed", procs)
            assert addresses(env, gw) == [FALLBACK]
        c = conds(env.gw("one")["status"]["conditions"])
        assert brief(c["Accepted"]) == ("True", "Accepted")
        assert "fallback" in c["Programmed"]["message"]

        # -- traffic: each internal port answers only its own Gateway's routes
        wait_until(lambda: get(host, p_one, "/a") == (302, "http://a.example/a"), 20,
                   "Gateway one's route on its internal port", procs)
        assert get(host, p_one, "/b")[0] == 404
        wait_until(lambda: get(host, p_two, "/b") == (302, "http://b.example/b"), 20,
                   "Gateway two's route on its internal port", procs)
        assert get(host, p_two, "/a")[0] == 404

        # -- the load balancer publishes an address: status.addresses follow it
        api.patch("Service", ns, "one-rauta",
                  {"status": {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}}, sub="status")
        wait_until(lambda: addresses(env, "one") == [LB_IP], 20, "LB address in status",
                   procs)
        assert "fallback" not in conds(env.gw("one")["status"]["conditions"])[
            "Programmed"]["message"]
        assert addresses(env, "two") == [FALLBACK]
        api.patch("Service", ns, "one-rauta", {"status": {"loadBalancer": {"ingress": None}}},
                  sub="status")
        wait_until(lambda: addresses(env, "one") == [FALLBACK], 20,
                   "back to the fallback once the ingress is gone", procs)

        # -- the Service follows its Gateway: a listener added, a label changed ...
        api.patch("Gateway", ns, "one", {"spec": {
            "listeners": [listener("http", 80), listener("alt", 8080)],
            "infrastructure": {"labels": {"team": "b"},
                               "annotations": {"lb.example/scheme": "internal"}}}})
        one = wait_until(lambda: (s := service_of(env, "one")) and 8080 in ports_of(s)
                         and s["metadata"]["labels"].get("team") == "b" and s, 20,
                         "Service one-rauta with port 8080 and team=b", procs)
        assert ports_of(one)[80] == p_one  # sticky: the internal port did not move
        p_alt = ports_of(one)[8080]
        assert p_alt not in (p_one, p_two)
        wait_until(lambda: get(host, p_alt, "/a") == (302, "http://a.example:8080/a"), 20,
                   "the new listener on its own internal port", procs)
        # ... and removed again
        api.patch("Gateway", ns, "one", {"spec": {"listeners": [listener("http", 80)]}})
        wait_until(lambda: set(ports_of(service_of(env, "one"))) == {80}, 20,
                   "port 8080 gone from Service one-rauta", procs)
        wait_until(lambda: _refused(host, p_alt), 20, "the removed listener's port closed",
                   procs)

        # -- deleted with its Gateway
        api.delete("Gateway", ns, "two")
        wait_until(lambda: service_of(env, "two") is None, 30, "Service two-rauta deleted",
                   procs)
        assert service_of(env, "one") is not None
        written = ctl.metric("rauta_service_writes_total", op="create", outcome="written")
        assert written == 2, written  # no Service was created twice
        kept = service_of(env, "one")
        assert kept is not None
    ctl.stop()
    # The new controller takes a fresh Lease at once, before its first reconcile pass
    # (the start-up race a new leader must survive).
    env.api.delete("Lease", ns, f"rauta-{env.id}")

    # -- a restarted controller (a new leader) finds everything as it wants it: no write,
    # and above all no delete-and-recreate of the Services that exist
    ctl2 = env.controller(listen_host=host, lease_duration=3.0, extra=flags)
    with logs_on_failure(ctl2):
        wait_until(lambda: ctl2.is_leader(), 20, "the new controller leading", (ctl2,))
        wait_until(lambda: get(host, p_one, "/a") == (302, "http://a.example/a"), 20,
                   "Gateway one served by the new controller", (ctl2,))
        time.sleep(2.0)  # a pass after taking the Lease has had time to write, if it would
        again = service_of(env, "one")
        assert again is not None
        assert again["metadata"]["uid"] == kept["metadata"]["uid"]
        assert again["metadata"]["resourceVersion"] == kept["metadata"]["resourceVersion"]
        assert ctl2.metric("rauta_service_writes_total") == 0


def _refused(host: str, port: int) -> bool:
    try:
        get(host, port, "/")
    except OSError:
        return True
    return False
