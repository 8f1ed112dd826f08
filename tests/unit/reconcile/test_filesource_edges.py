"""FileSource: the whole-file rough edges of issue 11 (non-atomic writes, temporaries,
unsupported kinds, unknown fields and ``strict``, duplicates, start-up wording, what is
watched). File ages are set with ``os.utime`` against an injected clock: no sleeps."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from rauta.reconcile.filesource import FileSource
from rauta.reconcile.reconciler import Reconciler

from . import FakeProxy, RecordingSink, endpoint_slice, gateway, gateway_class, route, service

pytestmark = pytest.mark.timeout(20)

PORT = 18081
RT_KEY = ("HTTPRoute", "default", "web")
NOW = 1_900_000_000.0  # the injected wall clock


def dump(path: Path, *objs: Any, age: float | None = None) -> None:
    path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    if age is not None:
        os.utime(path, (NOW - age, NOW - age))


def aged(path: Path, age: float) -> None:
    os.utime(path, (NOW - age, NOW - age))


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


def source(paths: list[Path], rec: Reconciler, **kw: Any) -> FileSource:
    return FileSource(paths, rec, settle=0.2, empty_hold=2.0, clock=lambda: NOW, **kw)


def reload(src: FileSource, *paths: Path) -> int:
    events = src.read_changed(paths, NOW)
    assert events is not None
    return src.reconciler.submit(events) if events else 0


def lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


# ---------------------------------------------------------------------- non-atomic writes


def test_an_emptied_file_keeps_its_objects_until_it_stays_empty(files: Path,
                                                                rec: Reconciler) -> None:
    src = source([files], rec)
    src.load()
    (files / "route.yaml").write_text("")  # `cmd > route.yaml`: truncated first
    aged(files / "route.yaml", 0.5)  # older than settle, younger than empty_hold
    assert reload(src, files / "route.yaml") == 0
    assert RT_KEY in rec.store.snapshot()
    assert files / "route.yaml" in src.pending
    aged(files / "route.yaml", 3.0)  # stayed empty: the user meant it
    assert reload(src, files / "route.yaml") == 1
    assert RT_KEY not in rec.store.snapshot()
    assert src.pending == {}


def test_a_file_being_written_in_place_is_read_once_stable(files: Path,
                                                           rec: Reconciler) -> None:
    src = source([files], rec)
    src.load()
    # Half written: a valid prefix that lacks the route (the rest is still coming).
    dump(files / "route.yaml", service(name="other"), age=0.05)
    assert reload(src, files / "route.yaml") == 0
    assert RT_KEY in rec.store.snapshot()
    assert src.pending[files / "route.yaml"] == pytest.approx(NOW - 0.05 + 0.2)
    dump(files / "route.yaml", service(name="other"), route(path="/v2"), age=0.3)
    assert reload(src, files / "route.yaml") == 2
    assert rec.store.parsed[RT_KEY].spec.rules[0].matches[0].path.value == "/v2"  # type: ignore[union-attr]


def test_a_half_written_invalid_file_logs_nothing_until_stable(
        files: Path, rec: Reconciler, caplog: pytest.LogCaptureFixture) -> None:
    src = source([files], rec)
    src.load()
    caplog.clear()
    (files / "route.yaml").write_text("kind: HTTPRoute\nmetadata: {name: web\n")
    aged(files / "route.yaml", 0.01)
    assert reload(src, files / "route.yaml") == 0
    assert lines(caplog, logging.ERROR) == [] and src.rejected == 0
    aged(files / "route.yaml", 1.0)
    assert reload(src, files / "route.yaml") == 0
    assert len(lines(caplog, logging.ERROR)) == 1 and src.rejected == 1
    assert RT_KEY in rec.store.snapshot()


def test_a_file_renamed_over_the_config_applies_at_once(files: Path, rec: Reconciler) -> None:
    src = source([files], rec)
    src.load()
    tmp = files / ".route.yaml.tmp"
    dump(tmp, route(path="/v3"), age=0.0)  # brand new, but a new inode: complete
    os.replace(tmp, files / "route.yaml")
    assert reload(src, files / "route.yaml", tmp) == 1
    assert src.pending == {}


def test_a_vanished_temporary_is_not_an_invalid_edit(files: Path, rec: Reconciler,
                                                     caplog: pytest.LogCaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from rauta.reconcile import filesource

    src = source([files], rec)
    src.load()
    caplog.clear()
    # A temporary without a dot (mktemp-style) is listed, then renamed away before it is
    # read: the race a watcher hits on every atomic save.
    tmp = files / "tmp123.yaml"
    dump(tmp, route(path="/v4"), age=5)
    listing = filesource.list_files([files])
    os.replace(tmp, files / "route.yaml")
    monkeypatch.setattr(filesource, "list_files", lambda _paths: listing)
    assert src.load() == 1
    assert lines(caplog, logging.ERROR) == []
    assert src.errors == {}
    assert rec.store.parsed[RT_KEY].spec.rules[0].matches[0].path.value == "/v4"  # type: ignore[union-attr]


@pytest.mark.parametrize("name", [".route.yaml", "#route.yaml#", "route.yaml~",
                                  ".hidden/route.yaml", "..data/x.yaml"])
def test_dot_files_and_editor_temporaries_are_not_config(files: Path, rec: Reconciler,
                                                         name: str) -> None:
    junk = files / name
    junk.parent.mkdir(exist_ok=True)
    junk.write_text("{{{ not yaml")
    src = source([files], rec)
    src.load()
    assert src.errors == {} and junk not in src.last_good
    assert reload(src, junk) == 0 and src.errors == {}


# ---------------------------------------------------------------------- kinds and fields


def test_an_unsupported_kind_is_skipped_with_one_warning(files: Path, rec: Reconciler,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    grpc = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
            "metadata": {"name": "g"}}
    dump(files / "route.yaml", deploy, route(path="/v1"), cm, grpc, {**cm, "metadata": {"name": "c2"}})
    src = source([files], rec)
    assert src.load() == 5
    assert RT_KEY in rec.store.snapshot()
    warned = [w for w in lines(caplog) if "route.yaml" in w]
    assert len(warned) == 1, warned
    assert "ConfigMap, Deployment, GRPCRoute" in warned[0]
    assert src.load() == 0 and len(lines(caplog)) == len(warned)  # said once


def test_unknown_fields_are_warned_per_object_and_field(files: Path, rec: Reconciler,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    bad = route(path="/v1")
    rule = bad["spec"]["rules"][0]
    rule["filter"] = [{"type": "RequestHeaderModifier"}]  # the typo of "filters"
    rule["backendRefs"][0]["wieght"] = 5
    dump(files / "route.yaml", bad)
    src = source([files], rec)
    src.load()
    warned = lines(caplog)
    assert any('route.yaml: HTTPRoute default/web: unknown field "spec.rules[0].filter"' in w
               for w in warned), warned
    assert any('"spec.rules[0].backendRefs[0].wieght"' in w for w in warned), warned
    assert len(warned) == 2
    assert RT_KEY in rec.store.snapshot()  # a warning, not an error
    src.load()
    assert len(lines(caplog)) == 2  # once while the file keeps them


def test_strict_makes_unknown_fields_errors(files: Path, rec: Reconciler,
                                            caplog: pytest.LogCaptureFixture) -> None:
    src = source([files], rec, strict=True)
    src.load()
    bad = route(path="/v2")
    bad["spec"]["rules"][0]["filter"] = []
    dump(files / "route.yaml", bad, age=5)
    assert reload(src, files / "route.yaml") == 0
    errs = lines(caplog, logging.ERROR)
    assert len(errs) == 1 and '"spec.rules[0].filter"' in errs[0] and "--strict" in errs[0]
    assert rec.store.parsed[RT_KEY].spec.rules[0].matches[0].path.value == "/v1"  # type: ignore[union-attr]


def test_experimental_fields_and_status_are_known(files: Path, rec: Reconciler,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    r = route(path="/v1", uid="u", resourceVersion="1")
    r["spec"]["rules"][0]["sessionPersistence"] = {"sessionName": "s"}
    r["status"] = {"parents": [], "whatever": 1}
    dump(files / "route.yaml", r)
    source([files], rec, strict=True).load()
    assert lines(caplog) == []


# ---------------------------------------------------------------------- start-up, duplicates


def test_an_invalid_file_at_start_up_does_not_claim_a_last_good_version(
        files: Path, rec: Reconciler, caplog: pytest.LogCaptureFixture) -> None:
    (files / "route.yaml").write_text("{{{")
    source([files], rec).load()
    (err,) = lines(caplog, logging.ERROR)
    assert "last good" not in err and "none of its objects are served" in err


def test_the_same_object_in_two_files_is_reported_naming_both(
        files: Path, rec: Reconciler, caplog: pytest.LogCaptureFixture) -> None:
    dump(files / "zz.yaml", route(path="/zz"))
    src = source([files], rec)
    src.load()
    (dup,) = [w for w in lines(caplog) if "defined in" in w]
    assert "HTTPRoute default/web" in dup
    assert str(files / "route.yaml") in dup and str(files / "zz.yaml") in dup
    src.load()
    assert len([w for w in lines(caplog) if "defined in" in w]) == 1  # once
    dump(files / "aa.yaml", route(path="/aa"), age=5)  # a third definition, on a re-read
    reload(src, files / "aa.yaml")
    assert str(files / "aa.yaml") in [w for w in lines(caplog) if "defined in" in w][-1]


# ---------------------------------------------------------------------- what is watched


@pytest.mark.asyncio
async def test_config_file_watches_only_that_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "projects" / "deep").mkdir(parents=True)
    dump(home / "gw.yaml", gateway_class(), gateway(PORT), route(path="/v1"))
    rec = Reconciler(FakeProxy(), RecordingSink())
    src = FileSource([home / "gw.yaml"], rec, settle=0.0)
    task = asyncio.create_task(src.run(debounce_ms=20))
    try:
        await asyncio.sleep(0.3)  # loaded and watching
        for i in range(20):  # unrelated writes next to it and below it
            (home / ("other.yaml" if i % 2 else f"projects/deep/f{i}.yaml")).write_text(f"x: {i}")
        await asyncio.sleep(0.4)
        assert src.wakeups == 0
        dump(home / "gw.yaml", gateway_class(), gateway(PORT), route(path="/v2"))
        for _ in range(100):
            if src.wakeups:
                break
            await asyncio.sleep(0.05)
        assert src.wakeups >= 1
        assert rec.store.parsed[RT_KEY].spec.rules[0].matches[0].path.value == "/v2"  # type: ignore[union-attr]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.asyncio
async def test_run_reads_a_pending_file_once_it_settles(files: Path) -> None:
    rec = Reconciler(FakeProxy(), RecordingSink())
    src = FileSource([files], rec, settle=0.15, empty_hold=0.6)
    task = asyncio.create_task(src.run(debounce_ms=20))
    try:
        await asyncio.sleep(0.3)
        (files / "route.yaml").write_text("")  # emptied in place, never refilled
        for _ in range(60):
            await asyncio.sleep(0.05)
            if RT_KEY not in rec.store.snapshot():
                break
        assert RT_KEY not in rec.store.snapshot()  # applied after the hold, by the timer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
