"""Loading Kubernetes YAML files into a Snapshot (rauta.loader)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rauta.loader import LoadError, load_documents, load_objects, load_snapshot
from rauta.model.resources import HTTPRoute, Service


def _svc(name: str, ns: str = "app") -> str:
    return (f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n"
            "spec: {ports: [{port: 80}]}\n")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _names(snap_or_objs) -> list[str]:  # noqa: ANN001
    return [o.metadata.name for o in snap_or_objs]


def test_multi_document_yaml_with_empty_documents(tmp_path: Path) -> None:
    f = _write(tmp_path / "all.yaml", "---\n" + _svc("a") + "---\n---\n# only a comment\n---\n"
               + _svc("b"))
    snap = load_snapshot([f])
    assert _names(snap.of_kind(Service)) == ["a", "b"]


def test_kind_list_is_flattened(tmp_path: Path) -> None:
    f = _write(tmp_path / "list.yaml", "apiVersion: v1\nkind: List\nitems:\n"
               "- {kind: Service, metadata: {name: a, namespace: app}}\n"
               "- {kind: Service, metadata: {name: b, namespace: app}}\n")
    assert len(load_documents(f)) == 2
    assert _names(load_snapshot([f]).of_kind(Service)) == ["a", "b"]


def test_directory_recursion_reads_yaml_yml_json_in_sorted_path_order(tmp_path: Path) -> None:
    _write(tmp_path / "z.yaml", _svc("z"))
    _write(tmp_path / "a.yml", _svc("a1"))
    _write(tmp_path / "sub" / "deeper" / "m.yaml", _svc("m"))
    _write(tmp_path / "sub" / "b.json", json.dumps(
        {"kind": "Service", "metadata": {"name": "b", "namespace": "app"}}))
    _write(tmp_path / "notes.txt", "not: [yaml")
    _write(tmp_path / "README.md", "# nothing")
    objs = load_objects([tmp_path])
    paths = [p.relative_to(tmp_path).as_posix() for p, _ in objs]
    assert paths == ["a.yml", "sub/b.json", "sub/deeper/m.yaml", "z.yaml"]
    assert _names(o for _, o in objs) == ["a1", "b", "m", "z"]


def test_files_and_directories_can_be_mixed(tmp_path: Path) -> None:
    one = _write(tmp_path / "one.yaml", _svc("one"))
    _write(tmp_path / "dir" / "two.yaml", _svc("two"))
    snap = load_snapshot([one, tmp_path / "dir"])
    assert _names(snap.of_kind(Service)) == ["one", "two"]


def test_duplicate_objects_across_files_name_both_files(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.yaml", _svc("web"))
    second = _write(tmp_path / "b.yaml", _svc("web"))
    with pytest.raises(LoadError) as info:
        load_snapshot([tmp_path])
    text = str(info.value)
    assert "\n" not in text
    assert str(first) in text and str(second) in text
    assert "Service app/web" in text


def test_same_name_different_namespace_is_not_duplicate(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", _svc("web", "one") + "---\n" + _svc("web", "two"))
    assert len(load_snapshot([tmp_path])) == 2


def test_invalid_yaml_is_one_line_error_with_file_line_column(tmp_path: Path) -> None:
    f = _write(tmp_path / "bad.yaml", "kind: Service\nmetadata:\n  name: s\n   oops: 1\n")
    with pytest.raises(LoadError) as info:
        load_snapshot([f])
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{f}:4:")
    assert "invalid YAML" in text


def test_unterminated_flow_mapping_reports_position(tmp_path: Path) -> None:
    f = _write(tmp_path / "bad.yaml", "kind: Service\nmetadata: {name: s\n")
    with pytest.raises(LoadError, match=r"bad\.yaml:\d+:\d+: invalid YAML"):
        load_snapshot([f])


def test_missing_required_field_names_file_object_and_field(tmp_path: Path) -> None:
    f = _write(tmp_path / "route.yaml",
               "kind: HTTPRoute\nmetadata: {name: web, namespace: app}\n"
               "spec:\n  rules:\n  - backendRefs:\n    - port: 80\n")
    with pytest.raises(LoadError) as info:
        load_snapshot([f])
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{f}: HTTPRoute app/web: spec.rules[0].backendRefs[0].name: ")


def test_non_mapping_document_is_a_load_error(tmp_path: Path) -> None:
    f = _write(tmp_path / "scalar.yaml", "just a string\n")
    with pytest.raises(LoadError, match="expected a mapping"):
        load_snapshot([f])


def test_missing_path_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no such file or directory"):
        load_snapshot([tmp_path / "nope.yaml"])


def test_undecodable_file_is_a_load_error(tmp_path: Path) -> None:
    f = tmp_path / "bin.yaml"
    f.write_bytes(b"kind: \xff\xfe\n")
    with pytest.raises(LoadError, match="cannot read"):
        load_snapshot([f])


def test_empty_directory_gives_empty_snapshot(tmp_path: Path) -> None:
    assert len(load_snapshot([tmp_path])) == 0


def test_quoted_creation_timestamp_is_kept_as_text(tmp_path: Path) -> None:
    f = _write(tmp_path / "r.yaml", "kind: HTTPRoute\nmetadata: {name: web, namespace: app, "
               "creationTimestamp: \"2024-01-01T00:00:00Z\"}\n")
    (r,) = load_snapshot([f]).of_kind(HTTPRoute)
    assert r.metadata.creation_timestamp == "2024-01-01T00:00:00Z"


def test_unquoted_creation_timestamp_is_accepted_as_text(tmp_path: Path) -> None:
    f = _write(tmp_path / "r.yaml", "kind: HTTPRoute\nmetadata:\n  name: web\n  namespace: app\n"
               "  creationTimestamp: 2024-01-01T00:00:00Z\n")
    (r,) = load_snapshot([f]).of_kind(HTTPRoute)
    assert r.metadata.creation_timestamp == "2024-01-01T00:00:00Z"


def test_directory_with_yaml_suffix_is_recursed_not_read_as_a_file(tmp_path: Path) -> None:
    _write(tmp_path / "bundle.yaml" / "svc.yaml", _svc("inner"))
    assert _names(load_snapshot([tmp_path]).of_kind(Service)) == ["inner"]
