"""The event loop every rauta command runs on: uvloop on Linux, asyncio's own elsewhere.

Role: ``run(coro)`` is ``asyncio.run`` with the loop chosen here, so that ``serve``,
``controller``, ``quickstart``, ``record`` and ``replay`` all run the same loop (the CLI
calls nothing else). ``loop_name()`` says which one a process uses (logged at start and
shown in ``rauta_build_info``-style reports).

Rules:
- uvloop (libuv) is the default where it is installed and the platform is Linux: the
  data plane spends most of its time in the loop's transports, and uvloop's are several
  times cheaper per call than asyncio's pure-Python selector loop.
- ``RAUTA_LOOP=asyncio`` forces asyncio's default loop (to rule the loop out when
  debugging, or to compare); ``RAUTA_LOOP=uvloop`` requires uvloop and fails with a
  one-line error when it is missing. Any other value is an error, never a silent default.
- The GIL switch interval is 1 ms, not CPython's 5 ms: translation and table builds run
  in worker threads (``Proxy.apply``), and while one holds the GIL a request waiting on
  the serving loop waited up to the whole interval; at 3,000 routes that was the serving
  loop's p99 round trip while changes propagate (5.2 ms against 0.33 idle).
- Nothing else in rauta depends on which loop runs: the proxy uses only the asyncio
  Protocol/Transport interface, and the test suite runs the proxy's unit tests on both
  (``tests/unit/proxy/conftest.py``, ``RAUTA_TEST_LOOP``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CHOICES = ("uvloop", "asyncio")


class LoopChoiceError(RuntimeError):
    """RAUTA_LOOP names a loop that cannot be used."""


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """The factory of the loop to run (see the module rules); ``choice`` overrides
    ``RAUTA_LOOP``."""
    want = (choice if choice is not None else os.environ.get("RAUTA_LOOP", "")).strip()
    if want and want not in CHOICES:
        raise LoopChoiceError(f"RAUTA_LOOP={want!r}: use one of {', '.join(CHOICES)}")
    if want == "asyncio":
        return asyncio.new_event_loop
    factory = _uvloop_factory() if (want == "uvloop" or sys.platform == "linux") else None
    if factory is None:
        if want == "uvloop":
            raise LoopChoiceError("RAUTA_LOOP=uvloop but uvloop is not installed "
                                  "(pip install uvloop)")
        return asyncio.new_event_loop
    return factory


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """"uvloop" or "asyncio": the loop running now (or ``loop``)."""
    loop = loop or asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


# Seconds a thread may hold the GIL while another waits for it (CPython's default: 5 ms).
SWITCH_INTERVAL = 0.001


def run(main: Coroutine[Any, Any, T], *, choice: str | None = None) -> T:
    """``asyncio.run(main)`` on the chosen loop, with the GIL switch interval at
    ``SWITCH_INTERVAL`` (see the module rules)."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)
