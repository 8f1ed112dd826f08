"""The kopf-style watch protocol of rauta.reconcile.kube, against a scripted fake API server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rauta.reconcile.kube import KINDS, ApiError, Backoff, Watcher
from rauta.reconcile.store import Event


def svc(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
            "spec": {"ports": [{"port": 80}]}}


class FakeClient:
    """Lists come from ``lists`` in order; each watch call pops a script of events/errors."""

    def __init__(self, lists: list[tuple[list[dict[str, Any]], str]],
                 watches: list[list[Any]]) -> None:
        self.lists, self.watches = lists, watches
        self.watch_rvs: list[str] = []
        self.list_calls = 0

    async def request(self, method: str, path: str, *, query: Any = None, **_: Any) -> Any:
        self.list_calls += 1
        items, rv = self.lists.pop(0)
        return {"items": items, "metadata": {"resourceVersion": rv}}

    async def stream(self, path: str, query: list[tuple[str, str]], timeout: float,
                     on_open=None):
        self.watch_rvs.append(dict(query)["resourceVersion"])
        assert dict(query)["allowWatchBookmarks"] == "true"
        if on_open is not None:
            on_open()
        if not self.watches:
            await asyncio.Event().wait()  # block forever: the test cancels
        for item in self.watches.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item


async def run_until(watcher: Watcher, cond, timeout: float = 2.0) -> None:
    task = asyncio.create_task(watcher.run())
    try:
        async with asyncio.timeout(timeout):
            while not cond():
                await asyncio.sleep(0.001)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def make(client: FakeClient) -> tuple[Watcher, list[Event], list[list[dict[str, Any]]]]:
    events: list[Event] = []
    relists: list[list[dict[str, Any]]] = []
    w = Watcher(client, KINDS["Service"], on_event=events.append, on_relist=relists.append)  # type: ignore[arg-type]
    w.backoff = Backoff(base=0.001, cap=0.002)
    return w, events, relists


@pytest.mark.timeout(10)
async def test_lists_then_watches_from_the_list_resource_version():
    client = FakeClient([([svc("a", "5")], "10")],
                        [[{"type": "ADDED", "object": svc("b", "11")}]])
    w, events, relists = make(client)
    await run_until(w, lambda: len(client.watch_rvs) >= 2)
    assert client.watch_rvs[0] == "10"
    assert [o["metadata"]["name"] for o in relists[0]] == ["a"]
    assert relists[0][0]["kind"] == "Service"  # list items get their kind back
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [("ADDED", "b")]


@pytest.mark.timeout(10)
async def test_bookmark_advances_resource_version_without_an_event():
    client = FakeClient([([], "10")],
                        [[{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "42"}}}]])
    w, events, _ = make(client)
    await run_until(w, lambda: len(client.watch_rvs) >= 2)
    assert events == []
    assert client.watch_rvs[1] == "42"  # resumed from the bookmark, no re-list
    assert client.list_calls == 1


@pytest.mark.timeout(10)
async def test_watch_that_ends_normally_resumes_without_relist():
    client = FakeClient([([], "10")], [[{"type": "MODIFIED", "object": svc("a", "12")}], []])
    w, _, _ = make(client)
    await run_until(w, lambda: len(client.watch_rvs) >= 3)
    assert client.list_calls == 1
    assert client.watch_rvs[:3] == ["10", "12", "12"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("gone", [
    {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}},
    ApiError(410, {"message": "too old"}),
])
async def test_410_gone_relists_and_hands_over_the_full_listing(gone):
    client = FakeClient([([svc("a", "5")], "10"), ([svc("b", "30")], "31")], [[gone]])
    w, events, relists = make(client)
    await run_until(w, lambda: w.relists >= 2 and len(client.watch_rvs) >= 2)
    assert [[o["metadata"]["name"] for o in r] for r in relists] == [["a"], ["b"]]
    assert client.watch_rvs[1] == "31"
    assert events == []


@pytest.mark.timeout(10)
async def test_410_twice_in_a_row_relists_twice():
    gone = ApiError(410, {"message": "too old"})
    client = FakeClient([([], "1"), ([], "2"), ([], "3")], [[gone], [gone]])
    w, _, _ = make(client)
    await run_until(w, lambda: w.relists >= 3 and len(client.watch_rvs) >= 3)
    assert client.watch_rvs[:3] == ["1", "2", "3"]


@pytest.mark.timeout(10)
async def test_errors_back_off_and_resume_from_the_last_resource_version():
    client = FakeClient([([], "10")],
                        [[{"type": "ADDED", "object": svc("a", "11")}, ApiError(500, "boom")],
                         [ApiError(429, "slow down", retry_after=0.05)], []])
    w, events, _ = make(client)
    await run_until(w, lambda: len(client.watch_rvs) >= 4)
    assert client.list_calls == 1  # no re-list for non-410 errors
    assert client.watch_rvs[1:4] == ["11", "11", "11"]
    assert len(events) == 1


def test_backoff_honours_retry_after_and_caps():
    b = Backoff(base=0.1, cap=1.0)
    assert b.next(retry_after=5.0) >= 5.0
    for _ in range(20):
        assert b.next() <= 1.0
    b.reset()
    assert b.attempt == 0


def test_secret_watch_is_limited_to_tls_secrets():
    assert KINDS["Secret"].field_selector == "type=kubernetes.io/tls"
    assert KINDS["HTTPRoute"].path("ns1") == "/apis/gateway.networking.k8s.io/v1/namespaces/ns1/httproutes"
    assert KINDS["GatewayClass"].path("ignored", "c", "status") == (
        "/apis/gateway.networking.k8s.io/v1/gatewayclasses/c/status")
    assert KINDS["Service"].path() == "/api/v1/services"


@pytest.mark.timeout(10)
async def test_a_resumed_watch_is_connected_before_any_event_arrives():
    """Regression: after an outage, /readyz must not wait for the next event or bookmark."""
    client = FakeClient([([], "10")], [[ApiError(500, "down")]])
    w, _, _ = make(client)
    await run_until(w, lambda: len(client.watch_rvs) >= 2 and w.connected)
    assert w.connected
