"""Every ``scenarios/*.yaml`` replayed through the real reconciler and proxy.

Each scenario is one test: ``rauta.replay.replay_text`` starts its echo backends and the
proxy on loopback, feeds the events, sends the probes and checks the statuses. The test
fails when any expectation fails, and its message lists the FAIL lines.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rauta.replay import replay_text

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "scenarios").glob("*.yaml"))


def test_scenarios_exist() -> None:
    assert SCENARIOS, "no scenarios/*.yaml found"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    lines: list[str] = []
    report = asyncio.run(replay_text(path.read_text(), str(path), out=lines.append))
    failing = [line for line in lines if line.startswith("FAIL")]
    assert report.failed == 0, f"{path.name}: {report.failed} failed\n" + "\n".join(failing)
    assert report.passed > 0, f"{path.name}: no expectation was checked"
