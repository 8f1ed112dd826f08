"""Which build of the request path runs (rauta._compiled): compiled only when it is the source.

The compiled build must be what runs wherever a C compiler exists (``pip install -e .``
builds it), it must never be used once a source changed, and ``RAUTA_PURE=1`` must load
every compiled module from its ``.py`` (``make test`` runs the proxy suite that way too).
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rauta import _compiled

ROOT = Path(_compiled.__file__).resolve().parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _tree(tmp_path: Path, *, extensions: bool, manifest: bool) -> Path:
    """A copy of the compiled modules' sources, with fake extensions and manifest."""
    root = tmp_path / "rauta"
    for module in _compiled.MODULES:
        src = _compiled.source_path(module, root)
        src.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(_compiled.source_path(module, ROOT), src)
        if extensions:
            src.with_name(src.stem + SUFFIX).write_bytes(b"")
    if manifest:
        (root / _compiled.MANIFEST).write_text(_compiled.manifest_text(root))
    return root


def test_a_fresh_build_is_used(tmp_path: Path) -> None:
    root = _tree(tmp_path, extensions=True, manifest=True)
    assert _compiled.decide(root, {}) == ("compiled", "mypyc")


def test_a_changed_source_makes_the_whole_build_stale(tmp_path: Path) -> None:
    root = _tree(tmp_path, extensions=True, manifest=True)
    src = _compiled.source_path("rauta.proxy.headers", root)
    src.write_text(src.read_text() + "\n# edited\n")
    state, why = _compiled.decide(root, {})
    assert state == "pure" and why.startswith("stale")


def test_no_manifest_or_a_missing_extension_is_pure(tmp_path: Path) -> None:
    assert _compiled.decide(_tree(tmp_path / "a", extensions=True, manifest=False), {})[0] == "pure"
    root = _tree(tmp_path / "b", extensions=True, manifest=True)
    src = _compiled.source_path("rauta.model.routing", root)
    src.with_name(src.stem + SUFFIX).unlink()
    state, why = _compiled.decide(root, {})
    assert state == "pure" and "1 of" in why


def test_rauta_pure_wins_over_a_fresh_build(tmp_path: Path) -> None:
    root = _tree(tmp_path, extensions=True, manifest=True)
    assert _compiled.decide(root, {"RAUTA_PURE": "1"}) == ("pure", "RAUTA_PURE is set")
    assert _compiled.decide(root, {"RAUTA_PURE": "0"})[0] == "compiled"


def _import_paths(env: dict[str, str]) -> list[str]:
    code = ("import importlib, rauta._compiled as c\n"
            "for m in c.MODULES: print(importlib.import_module(m).__file__)\n"
            "print(c.describe())\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd="/", check=True,
                         capture_output=True, text=True).stdout.split("\n")
    return [line for line in out if line]


def test_rauta_pure_loads_every_module_from_source() -> None:
    env = {**os.environ, "RAUTA_PURE": "1"}
    *files, line = _import_paths(env)
    assert all(f.endswith(".py") for f in files), files
    assert line == "data plane: pure (RAUTA_PURE is set)"


def test_the_compiled_build_runs_where_a_compiler_exists() -> None:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here: the request path runs as Python")
    env = {k: v for k, v in os.environ.items() if k != "RAUTA_PURE"}
    *files, line = _import_paths(env)
    assert line == "data plane: compiled (mypyc)", (
        f"{line}: a C compiler exists but the compiled request path is not used; "
        "re-run `pip install -e .`")
    assert not any(f.endswith(".py") for f in files), files


def test_version_says_which_build_runs() -> None:
    from click.testing import CliRunner

    from rauta.cli import main

    out = CliRunner().invoke(main, ["--version"]).output
    assert out.splitlines()[-1] == _compiled.describe()
