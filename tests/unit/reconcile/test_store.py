"""ObjectStore: equal writes are no-ops, invalid input keeps the last good version,
re-lists turn into only the real differences, TLS Secrets are decoded aside."""

from __future__ import annotations

import base64
import copy

import pytest

from rauta.reconcile.store import Event, ObjectStore, raw_key, tls_pair

from . import endpoint_slice, gateway, gateway_class, route, service, world

pytestmark = pytest.mark.timeout(10)

CRT, KEY = b"-----BEGIN CERTIFICATE-----\nx\n", b"-----BEGIN PRIVATE KEY-----\ny\n"


def loaded(*objs: dict) -> ObjectStore:
    store = ObjectStore()
    for obj in objs:
        assert store.apply(Event("ADDED", obj))
    return store


def tls_secret(name: str = "cert", ns: str = "default", **body: object) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": ns}, **body}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------------- no-ops


def test_equal_event_is_a_noop() -> None:
    store = loaded(route())
    snap = store.snapshot()
    assert store.apply(Event("MODIFIED", route())) is False
    assert store.apply(Event("ADDED", copy.deepcopy(route()))) is False
    assert store.snapshot() is snap


@pytest.mark.parametrize("noise", [
    {"resourceVersion": "12345"},
    {"managedFields": [{"manager": "kubectl", "operation": "Update"}]},
])
def test_metadata_noise_is_a_noop(noise: dict) -> None:
    store = loaded(route())
    noisy = route(**noise)
    assert store.apply(Event("MODIFIED", noisy)) is False


def test_status_only_change_is_a_noop() -> None:
    store = loaded(route())
    with_status = {**route(), "status": {"parents": [{
        "parentRef": {"name": "gw"}, "controllerName": "other.io/ctl", "conditions": []}]}}
    assert store.apply(Event("MODIFIED", with_status)) is False
    assert store.errors == {}


def test_real_change_is_applied() -> None:
    store = loaded(route())
    snap = store.snapshot()
    assert store.apply(Event("MODIFIED", route(path="/api"))) is True
    assert store.snapshot() is not snap
    parsed = store.parsed[("HTTPRoute", "default", "web")]
    assert parsed.spec.rules[0].matches[0].path.value == "/api"


def test_delete_of_unknown_key_is_a_noop() -> None:
    store = loaded(service())
    snap = store.snapshot()
    assert store.apply(Event("DELETED", route())) is False
    assert store.snapshot() is snap


def test_delete_removes_the_object() -> None:
    store = loaded(service(), route())
    assert store.apply(Event("DELETED", route())) is True
    assert ("HTTPRoute", "default", "web") not in store.snapshot()
    assert store.apply(Event("DELETED", route())) is False


def test_unknown_kind_is_ignored() -> None:
    store = ObjectStore()
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    assert store.apply(Event("ADDED", cm)) is False
    assert store.raw == {} and store.errors == {}


def test_raw_key_defaults_namespace() -> None:
    assert raw_key(gateway_class()) == ("GatewayClass", "", "rauta")
    assert raw_key({"kind": "Service", "metadata": {"name": "s"}}) == ("Service", "default", "s")


# ---------------------------------------------------------------------- invalid input


def test_invalid_object_keeps_last_good_and_records_one_error() -> None:
    store = loaded(route(path="/good"))
    bad = route()
    del bad["spec"]["rules"][0]["backendRefs"][0]["name"]  # required field
    assert store.apply(Event("MODIFIED", bad)) is False
    key = ("HTTPRoute", "default", "web")
    assert store.parsed[key].spec.rules[0].matches[0].path.value == "/good"
    assert store.raw[key] == route(path="/good")
    assert list(store.errors) == [key]
    err = store.errors[key]
    assert "\n" not in err
    assert "HTTPRoute default/web" in err
    assert "spec.rules[0].backendRefs[0].name" in err
    # The same bad object again: still one error, still the old object.
    assert store.apply(Event("MODIFIED", bad)) is False
    assert len(store.errors) == 1
    # Fixed: the error goes away.
    assert store.apply(Event("MODIFIED", route(path="/fixed"))) is True
    assert store.errors == {}


def test_invalid_new_object_never_enters_the_snapshot() -> None:
    store = ObjectStore()
    bad = gateway(80)
    bad["spec"]["listeners"][0]["port"] = 0
    assert store.apply(Event("ADDED", bad)) is False
    assert len(store.snapshot()) == 0
    assert "spec.listeners[0].port" in store.errors[("Gateway", "default", "gw")]


def test_delete_clears_the_error_of_an_invalid_object() -> None:
    store = ObjectStore()
    bad = gateway(80)
    bad["spec"]["listeners"] = []
    store.apply(Event("ADDED", bad))
    assert store.errors
    store.apply(Event("DELETED", bad))
    assert store.errors == {}


# ---------------------------------------------------------------------- replace_all


def test_replace_all_emits_only_real_differences() -> None:
    objs = world()
    store = ObjectStore()
    first = store.replace_all(objs)
    assert sorted(e.type for e in first) == ["ADDED"] * len(objs)
    # Same listing (with noise) again: nothing.
    noisy = copy.deepcopy(objs)
    for o in noisy:
        o["metadata"]["resourceVersion"] = "999"
    assert store.replace_all(noisy) == []
    # One modified, one deleted, one added.
    new = [gateway_class(), gateway(18080), route(path="/v2"), service(),
           service("other")]
    events = store.replace_all(new)
    got = sorted((e.type, raw_key(e.object)) for e in events)
    assert got == [
        ("ADDED", ("Service", "default", "other")),
        ("DELETED", ("EndpointSlice", "default", "svc-1")),
        ("MODIFIED", ("HTTPRoute", "default", "web")),
    ]
    assert set(store.snapshot().keys()) == {raw_key(o) for o in new}
    assert store.replace_all(new) == []


def test_replace_all_with_invalid_object_keeps_the_old_one() -> None:
    store = ObjectStore()
    store.replace_all([service(), route(path="/old")])
    bad = route()
    bad["spec"]["parentRefs"] = [{"name": ""}]
    events = store.replace_all([service(), bad])
    assert events == []
    key = ("HTTPRoute", "default", "web")
    assert store.parsed[key].spec.rules[0].matches[0].path.value == "/old"
    assert key in store.errors


def test_replace_all_forgets_errors_of_objects_gone() -> None:
    store = ObjectStore()
    bad = route()
    bad["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Nope"
    store.replace_all([bad])
    assert store.errors
    store.replace_all([])
    assert store.errors == {}


# ---------------------------------------------------------------------- snapshot and tls


def test_snapshot_is_cached_until_a_change() -> None:
    store = loaded(service())
    s1 = store.snapshot()
    assert store.snapshot() is s1
    store.apply(Event("MODIFIED", service()))  # equal: cache kept
    assert store.snapshot() is s1
    store.apply(Event("ADDED", endpoint_slice()))
    s2 = store.snapshot()
    assert s2 is not s1 and len(s2) == 2
    assert store.snapshot() is s2


def test_tls_decodes_data_and_string_data() -> None:
    store = loaded(
        tls_secret("a", data={"tls.crt": b64(CRT), "tls.key": b64(KEY)}),
        tls_secret("b", ns="infra", stringData={"tls.crt": CRT.decode(), "tls.key": KEY.decode()}),
    )
    assert store.tls() == {"default/a": (CRT, KEY), "infra/b": (CRT, KEY)}
    # Key material never enters the model.
    parsed = store.parsed[("Secret", "default", "a")]
    assert "BEGIN" not in parsed.model_dump_json()
    assert parsed.data_keys == ("tls.crt", "tls.key")


@pytest.mark.parametrize("body", [
    {"data": {"tls.crt": "not base64!!", "tls.key": b64(KEY)}},
    {"data": {"tls.crt": b64(CRT)}},  # no key
    {"data": "not a mapping"},
    {"stringData": {"tls.crt": 5, "tls.key": 6}},
    {},
])
def test_tls_ignores_malformed_secrets(body: dict) -> None:
    store = loaded(tls_secret("bad", **body),
                   tls_secret("good", data={"tls.crt": b64(CRT), "tls.key": b64(KEY)}))
    assert store.tls() == {"default/good": (CRT, KEY)}


@pytest.mark.parametrize("value", [None, 5])
def test_tls_ignores_non_string_data_values(value: object) -> None:
    """Regression: b64decode raised TypeError for None/int values (YAML ``tls.crt:``)."""
    assert tls_pair({"data": {"tls.crt": value, "tls.key": b64(KEY)}}) is None
    store = loaded(tls_secret("bad", data={"tls.crt": value, "tls.key": b64(KEY)}))
    assert store.tls() == {}


def test_rotated_tls_secret_is_a_change() -> None:
    """Regression: only key material changed, the parsed Secret is equal, yet it is a change."""
    store = loaded(tls_secret("a", data={"tls.crt": b64(CRT), "tls.key": b64(KEY)}))
    rotated = tls_secret("a", data={"tls.crt": b64(CRT + b"2"), "tls.key": b64(KEY)})
    assert store.apply(Event("MODIFIED", rotated)) is True
    assert store.tls() == {"default/a": (CRT + b"2", KEY)}


def test_gateway_status_addresses_reach_the_model_and_conditions_do_not() -> None:
    """A Gateway keeps its allocated address across restarts: the store passes its
    status.addresses to the model; other status fields stay ours to write, not inputs."""
    store = loaded(gateway(8080))
    addressed = {**gateway(8080), "status": {"addresses": [{"type": "IPAddress",
                                                       "value": "127.0.1.7"}]}}
    assert store.apply(Event("MODIFIED", addressed)) is True
    from rauta.model.resources import Gateway

    (gw,) = store.snapshot().of_kind(Gateway)
    assert [a.value for a in gw.status.addresses] == ["127.0.1.7"]
    with_conditions = copy.deepcopy(addressed)
    with_conditions["status"]["conditions"] = [{"type": "Accepted", "status": "True"}]
    assert store.apply(Event("MODIFIED", with_conditions)) is False


def test_take_snapshot_hands_out_the_changed_keys_once() -> None:
    store = loaded(*world())
    snap, changed = store.take_snapshot()
    assert changed == {raw_key(o) for o in world()} and len(snap) == len(world())
    assert store.take_snapshot()[1] == frozenset()
    assert not store.apply(Event("MODIFIED", route()))  # equal: not a change
    store.apply(Event("MODIFIED", route(path="/v2")))
    store.apply(Event("DELETED", service()))
    store.replace_all([*world()[:2], route(path="/v2")], kinds=["HTTPRoute"])
    snap, changed = store.take_snapshot()
    assert changed == {raw_key(route()), raw_key(service())}
    assert snap is store.snapshot()


def test_tls_pairs_are_computed_again_only_after_a_secret_event() -> None:
    import base64

    def secret(name: str, cert: bytes) -> dict[str, object]:
        return {"kind": "Secret", "apiVersion": "v1", "type": "kubernetes.io/tls",
                "metadata": {"name": name, "namespace": "default"},
                "data": {"tls.crt": base64.b64encode(cert).decode(),
                         "tls.key": base64.b64encode(b"k").decode()}}

    store = ObjectStore()
    store.apply(Event("ADDED", secret("a", b"c1")))
    first = store.tls()
    assert first == {"default/a": (b"c1", b"k")}
    store.apply(Event("ADDED", route(path="/x")))
    assert store.tls() is first  # a route event: the same dict, not a new scan
    store.apply(Event("MODIFIED", secret("a", b"c2")))
    assert store.tls() == {"default/a": (b"c2", b"k")}
    store.apply(Event("DELETED", secret("a", b"c2")))
    assert store.tls() == {}


def test_latest_holds_the_newest_version_valid_or_not() -> None:
    """The status writer goes over ``latest``'s resourceVersion: after an invalid update
    ``raw`` keeps the last good object, but a write over its old resourceVersion would be
    refused (409) for ever, since no watch event will make it newer."""
    key = ("HTTPRoute", "default", "web")
    good = route(path="/good")
    good["metadata"]["resourceVersion"] = "5"
    store = loaded(good)
    bad = copy.deepcopy(good)
    bad["metadata"]["resourceVersion"] = "6"
    del bad["spec"]["rules"][0]["backendRefs"][0]["name"]
    store.apply(Event("MODIFIED", bad))
    assert store.raw[key]["metadata"]["resourceVersion"] == "5"
    assert store.latest[key]["metadata"]["resourceVersion"] == "6"
    # A re-list: an object the model sees unchanged still brings its new version; an
    # object gone from the listing leaves ``latest`` too.
    newer = copy.deepcopy(good)
    newer["metadata"]["resourceVersion"] = "9"
    assert store.replace_all([newer], kinds=["HTTPRoute"]) == []  # the last good one again
    assert store.latest[key]["metadata"]["resourceVersion"] == "9"
    assert store.errors == {}  # ... so it is valid again
    same = copy.deepcopy(newer)
    same["metadata"]["resourceVersion"] = "10"
    assert store.replace_all([same], kinds=["HTTPRoute"]) == []
    assert store.latest[key]["metadata"]["resourceVersion"] == "10"
    assert store.raw[key]["metadata"]["resourceVersion"] == "10"
    store.replace_all([], kinds=["HTTPRoute"])
    assert key not in store.latest and key not in store.raw
