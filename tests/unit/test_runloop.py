"""rauta.runloop: which event loop the commands run on."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from rauta import runloop

uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (not Linux?)")


async def _which() -> str:
    return runloop.loop_name()


def test_uvloop_is_the_default_on_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAUTA_LOOP", raising=False)
    if sys.platform != "linux":
        pytest.skip("uvloop is the default on Linux only")
    assert runloop.run(_which()) == "uvloop"


def test_asyncio_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAUTA_LOOP", "asyncio")
    assert runloop.run(_which()) == "asyncio"
    assert runloop.loop_factory() is asyncio.new_event_loop


def test_a_bad_choice_is_an_error_not_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAUTA_LOOP", "tokio")
    with pytest.raises(runloop.LoopChoiceError, match="tokio"):
        runloop.loop_factory()


def test_uvloop_required_but_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runloop, "_uvloop_factory", lambda: None)
    with pytest.raises(runloop.LoopChoiceError, match="not installed"):
        runloop.loop_factory("uvloop")
    assert runloop.loop_factory("") is asyncio.new_event_loop  # default falls back


def test_the_cli_reports_a_bad_choice_in_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "rauta.cli", "translate", "x.yaml"],
                          env={"RAUTA_LOOP": "tokio", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "RAUTA_LOOP='tokio'" in proc.stderr and "Traceback" not in proc.stderr


def test_run_shortens_the_gil_switch_interval() -> None:
    """While a worker thread translates, the serving loop waits for the GIL at most
    ``SWITCH_INTERVAL`` (1 ms), not CPython's 5 ms."""
    import sys

    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)

        async def inside() -> float:
            return sys.getswitchinterval()

        assert runloop.run(inside()) == pytest.approx(runloop.SWITCH_INTERVAL)
        assert runloop.SWITCH_INTERVAL <= 0.001
    finally:
        sys.setswitchinterval(before)
