"""FileSource: YAML files on disk as a watch stream, invalid edits keep the last good
version with one clear error line, deleted files delete their objects, ``run`` watches."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from rauta.reconcile.filesource import FileSource
from rauta.reconcile.reconciler import Reconciler

from . import FakeProxy, RecordingSink, endpoint_slice, gateway, gateway_class, route, service

pytestmark = pytest.mark.timeout(15)

PORT = 18081
RT_KEY = ("HTTPRoute", "default", "web")


def dump(path: Path, *objs: Any) -> None:
    path.write_text(yaml.safe_dump_all(objs, sort_keys=False))


def route_path(rec: Reconciler) -> str:
    return rec.store.parsed[RT_KEY].spec.rules[0].matches[0].path.value  # type: ignore[union-attr]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    d = tmp_path / "config"
    d.mkdir()
    dump(d / "gateway.yaml", gateway_class(), gateway(PORT))
    dump(d / "route.yaml", route(path="/v1"))
    dump(d / "backend.yml", service(), endpoint_slice())
    return d


@pytest.fixture
def rec() -> Reconciler:
    return Reconciler(FakeProxy(), RecordingSink())


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_load_applies_every_object(files: Path, rec: Reconciler) -> None:
    src = FileSource([files], rec)
    assert src.load() == 5
    assert len(rec.store.snapshot()) == 5
    assert route_path(rec) == "/v1"
    assert src.load() == 0  # unchanged files: no-op


def test_single_file_path(files: Path, rec: Reconciler) -> None:
    src = FileSource([files / "route.yaml", files / "gateway.yaml"], rec)
    assert src.load() == 3


@pytest.mark.parametrize("bad_text, needles", [
    ("kind: HTTPRoute\nmetadata: {name: web\n  spec: [\n", ["route.yaml:", "invalid YAML"]),
    (yaml.safe_dump({**route(), "spec": {"parentRefs": [{"namespace": "default"}]}}),
     ["route.yaml", "HTTPRoute default/web", "spec.parentRefs[0].name"]),
], ids=["bad-yaml", "missing-field"])
def test_invalid_edit_keeps_last_good_and_logs_one_line(
        files: Path, rec: Reconciler, caplog: pytest.LogCaptureFixture,
        bad_text: str, needles: list[str]) -> None:
    src = FileSource([files], rec)
    src.load()
    caplog.clear()
    (files / "route.yaml").write_text(bad_text)
    # Meanwhile another file changes: that change still applies.
    dump(files / "backend.yml", service(), endpoint_slice(addresses=("127.0.0.3",)))
    assert src.load() == 1
    assert route_path(rec) == "/v1"
    assert len(rec.store.snapshot()) == 5
    lines = errors(caplog)
    assert len(lines) == 1, lines
    assert "\n" not in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    # Loading the same bad file again: no new line, nothing changes.
    assert src.load() == 0
    assert len(errors(caplog)) == 1
    # Fixed: applied, and the error is gone.
    dump(files / "route.yaml", route(path="/v2"))
    assert src.load() == 1
    assert route_path(rec) == "/v2"
    assert src.errors == {}
    assert len(errors(caplog)) == 1


def test_new_invalid_file_adds_nothing(files: Path, rec: Reconciler,
                                       caplog: pytest.LogCaptureFixture) -> None:
    src = FileSource([files], rec)
    src.load()
    caplog.clear()
    bad = route(name="extra")
    bad["spec"]["rules"][0]["backendRefs"][0]["port"] = 0
    dump(files / "extra.yaml", bad)
    assert src.load() == 0
    assert ("HTTPRoute", "default", "extra") not in rec.store.snapshot()
    lines = errors(caplog)
    assert len(lines) == 1 and "extra.yaml" in lines[0] and "backendRefs[0].port" in lines[0]


def test_deleting_a_file_deletes_its_objects(files: Path, rec: Reconciler) -> None:
    src = FileSource([files], rec)
    src.load()
    (files / "backend.yml").unlink()
    assert src.load() == 2
    assert set(rec.store.snapshot().keys()) == {
        ("GatewayClass", "", "rauta"), ("Gateway", "default", "gw"), RT_KEY}


def test_deleting_an_invalid_file_deletes_its_last_good_objects(
        files: Path, rec: Reconciler) -> None:
    src = FileSource([files], rec)
    src.load()
    (files / "route.yaml").write_text("{{{")
    src.load()
    assert RT_KEY in rec.store.snapshot()
    (files / "route.yaml").unlink()
    assert src.load() == 1
    assert RT_KEY not in rec.store.snapshot()


def test_recreated_invalid_file_is_reported_again(files: Path, rec: Reconciler,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    src = FileSource([files], rec)
    src.load()
    (files / "route.yaml").write_text("{{{")
    src.load()
    (files / "route.yaml").unlink()
    src.load()
    caplog.clear()
    (files / "route.yaml").write_text("{{{")
    src.load()
    assert len(errors(caplog)) == 1


def test_missing_path_is_one_error_line(tmp_path: Path, rec: Reconciler,
                                        caplog: pytest.LogCaptureFixture) -> None:
    src = FileSource([tmp_path / "nope"], rec)
    assert src.load() == 0
    lines = errors(caplog)
    assert len(lines) == 1 and "nope" in lines[0]


@pytest.mark.asyncio
async def test_run_picks_up_changes_on_disk(files: Path) -> None:
    proxy = FakeProxy()
    rec = Reconciler(proxy, RecordingSink())
    src = FileSource([files], rec)
    tasks = [asyncio.create_task(rec.run()), asyncio.create_task(src.run(debounce_ms=20))]

    async def until(pred: Any, what: str, timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not pred():
            assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
            await asyncio.sleep(0.02)

    def applied_path() -> str | None:
        if not proxy.calls:
            return None
        rules = proxy.calls[-1][0].ports[0].listeners[0].rules
        return rules[0].match.path.value if rules else None

    try:
        await until(lambda: applied_path() == "/v1", "initial load")
        await asyncio.sleep(0.2)  # let the watcher settle in
        dump(files / "route.yaml", route(path="/v2"))
        await until(lambda: applied_path() == "/v2", "edit picked up")
        dump(files / "more.yaml", route(name="more", path="/more"))
        await until(lambda: ("HTTPRoute", "default", "more") in rec.store.snapshot(),
                    "new file picked up")
        (files / "more.yaml").unlink()
        await until(lambda: ("HTTPRoute", "default", "more") not in rec.store.snapshot(),
                    "deleted file picked up")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------------- re-read one file


def reload(src: FileSource, *paths: Path) -> int:
    events = src.read_changed(paths)
    assert events is not None
    return src.reconciler.submit(events) if events else 0


def test_a_change_re_reads_only_the_changed_file(
        files: Path, rec: Reconciler, monkeypatch: pytest.MonkeyPatch) -> None:
    from rauta.reconcile import filesource

    src = FileSource([files], rec)
    src.load()
    read: list[Path] = []
    real = filesource.load_documents

    def counting(path: Path) -> list[Any]:
        read.append(path)
        return real(path)

    monkeypatch.setattr(filesource, "load_documents", counting)
    dump(files / "route.yaml", route(path="/v2"))
    assert reload(src, files / "route.yaml") == 1
    assert read == [files / "route.yaml"]
    assert route_path(rec) == "/v2"
    assert reload(src, files / "route.yaml") == 0  # unchanged: nothing to apply
    assert reload(src, files / "notes.txt", files.parent / "elsewhere.yaml") == 0
    assert read == [files / "route.yaml"] * 2


def test_re_read_new_deleted_and_invalid_files(files: Path, rec: Reconciler,
                                               caplog: pytest.LogCaptureFixture) -> None:
    src = FileSource([files], rec)
    src.load()
    dump(files / "more.yaml", route(name="more"))
    assert reload(src, files / "more.yaml") == 1
    assert ("HTTPRoute", "default", "more") in rec.store.snapshot()
    (files / "more.yaml").unlink()
    assert reload(src, files / "more.yaml") == 1
    assert ("HTTPRoute", "default", "more") not in rec.store.snapshot()
    caplog.clear()
    (files / "route.yaml").write_text("{{{")
    assert reload(src, files / "route.yaml") == 0
    assert route_path(rec) == "/v1" and len(errors(caplog)) == 1
    (files / "route.yaml").unlink()  # deleting the invalid file deletes its last good
    assert reload(src, files / "route.yaml") == 1
    assert RT_KEY not in rec.store.snapshot()


def test_re_read_a_directory_that_appears_and_disappears(files: Path, rec: Reconciler) -> None:
    import shutil

    src = FileSource([files], rec)
    src.load()
    sub = files / "team"
    sub.mkdir()
    dump(sub / "a.yaml", route(name="a"))
    dump(sub / "b.yaml", route(name="b"))
    assert reload(src, sub) == 2
    shutil.rmtree(sub)
    assert reload(src, sub) == 2
    assert len(rec.store.snapshot()) == 5


def test_the_last_listed_definition_of_an_object_wins(files: Path, rec: Reconciler) -> None:
    dump(files / "zz-override.yaml", route(path="/override"))
    src = FileSource([files], rec)
    src.load()
    assert route_path(rec) == "/override"
    dump(files / "route.yaml", route(path="/v9"))  # the earlier definition: still shadowed
    assert reload(src, files / "route.yaml") == 0
    assert route_path(rec) == "/override"
    (files / "zz-override.yaml").unlink()  # the shadowed one takes over
    assert reload(src, files / "zz-override.yaml") == 1
    assert route_path(rec) == "/v9"
