"""Build script: only the optional compiled parts (everything else is in pyproject.toml).

- The C accelerator of the Maglev fill (``rauta/model/_maglev_fill.c``). ``optional``:
  without a C compiler the install still succeeds and ``rauta.model.maglev`` uses its
  pure-Python fill, which builds the identical table (tests/unit/model/test_maglev_accel.py).
- The request path's hot modules (``rauta._compiled.MODULES``), compiled by mypyc from
  their unchanged source, with a manifest of the sources' SHA-256 so a stale build is
  never used (``rauta._compiled``). Also optional: without mypyc or a compiler, or with
  ``RAUTA_PURE_BUILD=1``, they run as Python. ``rauta --version`` says which build runs.
"""

import importlib.util
import os
import tempfile
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_rauta_compiled", HERE / "rauta" / "_compiled.py")
assert _spec is not None and _spec.loader is not None
compiled = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compiled)

ext_modules = [Extension("rauta.model._maglev_fill", ["rauta/model/_maglev_fill.c"],
                         optional=True, extra_compile_args=["-O2"])]
manifest = HERE / "rauta" / compiled.MANIFEST
if manifest.exists():
    manifest.unlink()  # written again below only for what this build compiles
if os.environ.get("RAUTA_PURE_BUILD", "") in ("", "0"):
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("rauta: mypyc is not available; the request path runs as Python")
    else:
        sources = [str(compiled.source_path(m, Path("rauta"))) for m in compiled.MODULES]
        # Its own mypy settings: the build environment may lack the dependencies (and
        # pyproject's pydantic plugin); their types are then Any, which mypyc accepts.
        cfg = Path(tempfile.mkdtemp()) / "mypyc.ini"
        cfg.write_text("[mypy]\nignore_missing_imports = True\nfollow_imports = silent\n")
        for ext in mypycify(["--config-file", str(cfg), *sources], opt_level="3", group_name=compiled.GROUP):
            ext.optional = True  # no compiler: the sources run as they are
            ext_modules.append(ext)
        manifest.write_text(compiled.manifest_text(HERE / "rauta"))

setup(ext_modules=ext_modules)
