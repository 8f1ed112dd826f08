"""Which build of the data plane's hot modules runs: mypyc-compiled, or their Python source.

Role: ``pip install`` compiles the modules in ``MODULES`` with mypyc (``setup.py``) where
mypy and a C compiler exist; the compiled extension sits beside each ``.py`` and Python
would import it first. This module, installed by ``rauta/__init__.py`` before any of them
is imported, decides once per process which build is used, and says so (``STATE``):

- ``compiled``: every extension exists and the manifest ``_compiled.sha256`` (written by
  the build) matches every source file's SHA-256, so the extensions are that source;
- ``pure`` otherwise: no extension was built (no compiler), ``RAUTA_PURE=1`` is set (the
  tests run the proxy suite this way too, so the fallback stays correct), or a source
  changed since the build (an edited checkout: the stale extensions are never imported;
  ``pip install -e .`` rebuilds them). A stale build is reported with a warning.

Rules: all or nothing. The compiled modules call each other directly in C, so one stale
extension would drag stale code into the others; any mismatch loads every one of them
from source. The check reads only local files (about 1 ms); it never builds anything.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType

# The hot path of one request, compiled together (setup.py reads this list).
MODULES = ("rauta.proxy.server", "rauta.proxy.exchange", "rauta.proxy.upstream",
           "rauta.proxy.headers", "rauta.proxy.request", "rauta.model.routing")
GROUP = "rauta._accel"  # mypyc's shared library: rauta/_accel__mypyc.*.so
MANIFEST = "_compiled.sha256"

_ROOT = Path(__file__).resolve().parent  # the rauta package directory


def source_path(module: str, root: Path = _ROOT) -> Path:
    return root.joinpath(*module.split(".")[1:]).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_text(root: Path = _ROOT) -> str:
    """The manifest of the current sources (what the build writes)."""
    return "".join(f"{digest(source_path(m, root))}  {m}\n" for m in MODULES)


def _extension(module: str, root: Path) -> Path | None:
    base = source_path(module, root).with_suffix("")
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = base.with_name(base.name + suffix)
        if candidate.exists():
            return candidate
    return None


def decide(root: Path = _ROOT, environ: dict[str, str] | None = None) -> tuple[str, str]:
    """``(state, why)``: ``"compiled"`` or ``"pure"``, and the reason (module doc)."""
    env = os.environ if environ is None else environ
    if env.get("RAUTA_PURE", "") not in ("", "0"):
        return "pure", "RAUTA_PURE is set"
    missing = [m for m in MODULES if _extension(m, root) is None]
    if missing:
        return "pure", f"not compiled ({len(missing)} of {len(MODULES)} extensions missing)"
    manifest = root / MANIFEST
    if not manifest.exists():
        return "pure", f"stale build: {MANIFEST} is missing"
    if manifest.read_text() != manifest_text(root):
        return "pure", "stale build: a source changed since it was compiled (pip install -e .)"
    return "compiled", "mypyc"


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Loads the compiled modules from their ``.py`` (the extension beside it is ignored)."""

    def find_spec(self, fullname: str, path: object = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


STATE, WHY = "pure", "not decided"


def install() -> None:
    """Decide once (see the module doc); in ``pure``, make the sources win over extensions."""
    global STATE, WHY
    if WHY != "not decided":
        return
    STATE, WHY = decide()
    if STATE == "pure":
        sys.meta_path.insert(0, _SourceFirst())
        if WHY.startswith("stale"):
            warnings.warn(f"rauta: the compiled data plane is not used: {WHY}", stacklevel=2)


def describe() -> str:
    """One line for logs and ``--version``: which build runs, and why."""
    return f"data plane: {STATE} ({WHY})"
