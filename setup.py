"""Build script: only the optional C accelerator of the Maglev fill.

Everything else is in pyproject.toml. ``optional=True``: where no C compiler exists the
install still succeeds and ``rauta.model.maglev`` uses its pure-Python fill, which builds
the identical table (tests/unit/model/test_maglev_accel.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("rauta.model._maglev_fill", ["rauta/model/_maglev_fill.c"],
                             optional=True, extra_compile_args=["-O2"])])
