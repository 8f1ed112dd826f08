"""Pipeline tests: ``both`` mode counts each exchange and failed connect once (the
kernel's), takes the event loop's lag from the proxy's own exchange, and watches each
endpoint under the route id of its only rule."""

from __future__ import annotations

from prometheus_client import generate_latest

from rauta.model.config import Endpoint as MEndpoint
from rauta.observe.events import ConnectEvent, Endpoint, HttpEvent
from rauta.observe.pipeline import Pipeline
from tests.unit.observe.test_output import FakeKernel, cfg, series

PROXY = Endpoint("10.9.0.1", 41000)
BACK = Endpoint("10.1.0.1", 80)  # cfg(): rule i sends to 10.1.0.i:80


def http(source: str, start: int, end: int, flow=(PROXY, BACK)) -> HttpEvent:  # noqa: ANN001
    return HttpEvent(source=source, leg="upstream", client=flow[0], server=flow[1],  # type: ignore[arg-type]
                     method="GET", path="/p1", path_hash=0, path_truncated=False,
                     status=200, start_ns=start, end_ns=end)


def breakdown(pipe: Pipeline, component: str) -> float:
    text = generate_latest(pipe.metrics.registry).decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("rauta_observer_latency_breakdown_seconds_total{") \
                and f'component="{component}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_both_mode_counts_the_kernels_exchange_and_takes_the_loop_lag_from_the_proxy():
    for order in ("kernel first", "proxy first"):
        pipe = Pipeline("both", config=cfg(2), kernel=FakeKernel())
        kernel = http("xdp", 1_000_000_000, 1_030_000_000)  # response seen at 1.030 s
        proxy = http("proxy", 1_000_100_000, 1_032_000_000)  # stamped after the write
        evs = [kernel, proxy] if order == "kernel first" else [proxy, kernel]
        pipe.process(evs[:1])
        pipe.process(evs[1:])
        text = generate_latest(pipe.metrics.registry)
        assert series(text, "rauta_observer_events_total") == [
            'rauta_observer_events_total{source="xdp"} 1.0'], order
        assert abs(breakdown(pipe, "proxy_lag") - 0.002) < 1e-9, order
        assert abs(breakdown(pipe, "backend") - 0.030) < 1e-9, order


def test_both_mode_does_not_pair_exchanges_that_do_not_overlap():
    pipe = Pipeline("both", config=cfg(2), kernel=FakeKernel())
    pipe.process([http("proxy", 1_000_000_000, 1_010_000_000)])
    pipe.process([http("xdp", 2_000_000_000, 2_005_000_000)])  # a later exchange
    assert breakdown(pipe, "proxy_lag") == 0.0


def test_both_mode_reports_a_failed_connect_once():
    pipe = Pipeline("both", config=cfg(2), kernel=FakeKernel())
    pipe.update_config(cfg(2))
    kern = ConnectEvent(PROXY, BACK, "refused", 5_000_000_000, 5_000_200_000)
    prox = ConnectEvent(Endpoint("", 0), BACK, "refused", 5_000_000_000, 5_000_400_000,
                        service="ns/s1", source="proxy")
    out = pipe.process([kern, prox])
    assert [(a.type, a.condition, a.service, a.endpoint) for a in out] == [
        ("connect_failure", "refused", "ns/s1", "10.1.0.1:80")]


def test_watched_endpoints_carry_the_route_id_of_their_only_rule():
    k = FakeKernel()
    pipe = Pipeline("xdp", config=cfg(3), kernel=k)
    config = cfg(3)
    # Make rule 2 also send to rule 1's endpoint: that endpoint's id becomes 0.
    r2 = config.ports[0].listeners[0].rules[2]
    b = r2.backends[0].model_copy(update={"endpoints": (MEndpoint(address="10.1.0.1", port=80),)})
    rules = (*config.ports[0].listeners[0].rules[:2], r2.model_copy(update={"backends": (b,)}))
    lr = config.ports[0].listeners[0].model_copy(update={"rules": rules})
    config = config.model_copy(update={"ports": (config.ports[0].model_copy(
        update={"listeners": (lr,)}),)})
    pipe.update_config(config)
    ids = {ep.ip: i for ep, i in k.watched.items()}
    assert ids == {"10.1.0.0": pipe.ids.id("ns/r0", "0"), "10.1.0.1": 0}


def test_both_mode_joins_the_kernels_exchange_with_the_proxys_record():
    from rauta.observe.attribute import FlowRecord

    pipe = Pipeline("both", config=cfg(2), kernel=FakeKernel())
    assert pipe.hook is not None and pipe.hook.table is pipe.table  # one table, shared
    # What ProxyHook.sent records for a request on a new connection (1.2 ms connect):
    pipe.hook.table.add((PROXY, BACK), FlowRecord(1_000_000_000, "ns/other", "x", "ns/o:80",
                                                  connect_ns=1_200_000))
    pipe.process([http("xdp", 1_000_000_000, 1_030_000_000)])
    text = generate_latest(pipe.metrics.registry).decode()
    assert 'route="ns/other",rule="x"' in text  # the record, not the endpoint's owner
    assert abs(breakdown(pipe, "network") - 0.0012) < 1e-12
