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


def test_core_http_features_are_supported_and_addresses_are_not() -> None:
    on = {f.name for f in features.supported()}
    assert {"Gateway", "HTTPRoute", "ReferenceGrant"} <= on
    assert not {"GatewayStaticAddresses", "GatewayAddressEmpty"} & on


def test_flag_value() -> None:
    value = features.supported_features_flag()
    assert value.split(",") == [f.name for f in features.FEATURES if f.supported]
    assert " " not in value


def test_markdown_table() -> None:
    table = features.markdown_table()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == len(features.FEATURES)
    assert "| `HTTPRoute` | core | yes |" in table
    assert "| `GatewayStaticAddresses` | extended | no |" in table


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
    (gc,) = translate(snap).statuses.gateway_classes
    names = sorted(f.name for f in features.FEATURES if f.supported)
    assert list(gc.supported_features) == names and len(names) <= 64  # the CRD's maxItems
    written = stamp(gc, {}, controller_name="rauta.io/gateway-controller", now="t")
    assert written["supportedFeatures"] == [{"name": n} for n in names]
