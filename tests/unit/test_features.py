"""rauta.features against the feature names of the pinned conformance suite.

The names come from conformance/features-<version>.txt, which scripts/build-conformance.sh
generates from sigs.k8s.io/gateway-api/pkg/features (no Go needed here).
"""

from __future__ import annotations

from pathlib import Path

from rauta import features

REPO = Path(__file__).resolve().parents[2]
VENDORED = REPO / "conformance" / f"features-{features.SUITE_VERSION}.txt"


def _upstream() -> dict[str, tuple[str, str, str]]:
    """name -> (level, channel, Go set) from the vendored list."""
    out: dict[str, tuple[str, str, str]] = {}
    for line in VENDORED.read_text().splitlines():
        name, level, channel, gset = line.split("\t")
        out[name] = (level, channel, gset)
    return out


def test_suite_version_is_the_pinned_one() -> None:
    go_mod = (REPO / "conformance" / "go.mod").read_text().split()
    pinned = go_mod[go_mod.index("sigs.k8s.io/gateway-api/conformance") + 1]
    assert pinned == features.SUITE_VERSION


def test_every_name_exists_upstream_with_its_level() -> None:
    upstream = _upstream()
    for f in features.FEATURES:
        assert f.name in upstream, f"{f.name} is not a {features.SUITE_VERSION} feature"
        assert f.level == upstream[f.name][0], f"{f.name}: level {f.level} != {upstream[f.name][0]}"


def test_names_are_unique() -> None:
    names = [f.name for f in features.FEATURES]
    assert len(names) == len(set(names))


def test_every_gateway_httproute_referencegrant_feature_is_decided() -> None:
    sets = {"GatewayCoreFeatures", "GatewayExtendedFeatures", "ReferenceGrantCoreFeatures",
            "HTTPRouteCoreFeatures", "HTTPRouteExtendedFeatures"}
    wanted = {n for n, (_, _, gset) in _upstream().items() if gset in sets}
    listed = {f.name for f in features.FEATURES}
    assert wanted - listed == set()


def test_core_http_features_are_supported_and_addresses_need_a_pool() -> None:
    on = {f.name for f in features.supported()}
    assert {"Gateway", "HTTPRoute", "ReferenceGrant"} <= on
    pool = {"GatewayStaticAddresses", "GatewayAddressEmpty"}
    assert pool <= on
    assert not pool & {f.name for f in features.supported(address_pool=False)}


def test_every_suite_test_names_known_features() -> None:
    tests = features.load_tests()
    assert len(tests) > 100 and "HTTPRouteSimpleSameNamespace" in tests
    known = set(_upstream())
    for name, need in tests.items():
        assert need <= known, (name, need - known)


def _profile(failed: list[str]) -> dict:
    return {"core": {"result": "success"},
            "extended": {"result": "failure" if failed else "success", "failedTests": failed}}


def test_feature_results_from_a_report() -> None:
    tests = {"Core1": frozenset({"Gateway", "HTTPRoute"}),
             "Core2": frozenset({"Gateway"}),
             "Mirror": frozenset({"Gateway", "HTTPRoute", "HTTPRouteRequestMirror"}),
             "Redirect": frozenset({"Gateway", "HTTPRoute", "HTTPRoutePortRedirect"}),
             "NeedsTwo": frozenset({"Gateway", "HTTPRoutePortRedirect", "HTTPRouteCORS"})}
    claimed = {"Gateway", "HTTPRoute", "HTTPRouteRequestMirror", "HTTPRoutePortRedirect"}
    got = features.feature_results(_profile(["Mirror"]), tests, claimed)
    # Core features are judged by core tests only: an extended failure is not theirs.
    assert got["Gateway"] == "pass (2 tests)"
    assert got["HTTPRoute"] == "pass (1 test)"
    assert got["HTTPRouteRequestMirror"] == "FAIL: Mirror"
    # NeedsTwo did not run (CORS unclaimed), so it does not count for PortRedirect.
    assert got["HTTPRoutePortRedirect"] == "pass (1 test)"
    assert "HTTPRouteCORS" not in got
    assert features.feature_results(_profile([]), {}, {"Gateway"}) == {"Gateway": "not run"}


def test_readme_table_renders_report_results(tmp_path: Path) -> None:
    report = tmp_path / "r.yaml"
    report.write_text(
        f"gatewayAPIVersion: {features.SUITE_VERSION}\ndate: D\n"
        "implementation: {version: v9}\nprofiles:\n- name: GATEWAY-HTTP\n"
        "  core: {result: success}\n  extended:\n    failedTests: [HTTPRoute303Redirect]\n"
        "    supportedFeatures: [HTTPRoute303RedirectStatusCode]\n")
    results, source = features.report_results(report)
    assert results["HTTPRoute303RedirectStatusCode"] == "FAIL: HTTPRoute303Redirect"
    assert results["Gateway"].startswith("pass (")
    table = features.markdown_table(results, source)
    assert "| `HTTPRoute303RedirectStatusCode` | extended | yes | FAIL: HTTPRoute303Redirect |" in table
    assert "| `HTTPRouteCORS` | extended | no | not claimed |" in table
    # A supported feature the report did not claim says so.
    assert "| `HTTPRouteMethodMatching` | extended | yes | not run |" in table
    assert "rauta v9" in source
    other = tmp_path / "old.yaml"
    other.write_text("gatewayAPIVersion: v1.0.0\nprofiles: []\n")
    try:
        features.report_results(other)
    except SystemExit as exc:
        assert "v1.0.0" in str(exc)
    else:
        raise AssertionError("a report of another suite version was rendered")


def test_flag_value() -> None:
    value = features.supported_features_flag()
    assert value.split(",") == [f.name for f in features.FEATURES if f.supported]
    assert " " not in value


def test_markdown_table() -> None:
    table = features.markdown_table()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == len(features.FEATURES)
    assert "| `HTTPRoute` | core | yes |" in table
    assert "| `GatewayStaticAddresses` | extended | yes, with `--address-pool` |" in table


def test_main(capsys) -> None:  # type: ignore[no-untyped-def]
    assert features.main(["--flag"]) == 0
    assert capsys.readouterr().out == features.supported_features_flag() + "\n"


def test_readme_table_is_generated_from_the_list() -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    text = readme.read_text()
    assert features.readme_with_table(text) == text, (
        "README's feature table is stale: python -m rauta.features --update-readme README.md")


def test_gatewayclass_status_lists_the_supported_features_sorted() -> None:
    """GEP-2162: GatewayClass status.supportedFeatures comes from the same list."""
    from rauta.model.snapshot import Snapshot
    from rauta.model.status import stamp
    from rauta.model.translate import translate

    snap = Snapshot.from_dicts([{
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "rauta"}, "spec": {"controllerName": "rauta.io/gateway-controller"}}])
    from rauta.model.services import ServiceMode

    (gc,) = translate(snap, address_pool="127.0.1.0/24",
                      gateway_services=ServiceMode()).statuses.gateway_classes
    names = sorted(f.name for f in features.FEATURES if f.supported)
    assert list(gc.supported_features) == names and len(names) <= 64  # the CRD's maxItems
    (no_pool,) = translate(snap).statuses.gateway_classes
    assert "GatewayStaticAddresses" in names
    assert "GatewayStaticAddresses" not in no_pool.supported_features
    assert "GatewayInfrastructure" in names
    assert "GatewayInfrastructure" not in no_pool.supported_features  # needs the services
    (pool_only,) = translate(snap, address_pool="127.0.1.0/24").statuses.gateway_classes
    assert "GatewayInfrastructure" not in pool_only.supported_features
    written = stamp(gc, {}, controller_name="rauta.io/gateway-controller", now="t")
    assert written["supportedFeatures"] == [{"name": n} for n in names]
