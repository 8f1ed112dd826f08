"""The pod runner's kubelet log filter (``render_log``): sinceTime with and without an offset.

A crash here made the kubelet log endpoint answer 500, which the conformance suite's log
reader skips silently: every RequestMirror test then "found no mirrored request".
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.e2e.podrunner_host import parse_rfc3339, render_log


def test_since_time_filters_with_naive_or_aware_bounds(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(b"2026-12-02T05:00:00.000000001Z stdout F old\n"
                    b"2026-12-02T05:00:10.5Z stdout F new\n")
    for since in (dt.datetime(2026, 12, 2, 5, 0, 5),  # naive: read as UTC
                  dt.datetime(2026, 12, 2, 5, 0, 5, tzinfo=dt.UTC),
                  parse_rfc3339("2026-12-02T05:00:05Z"),
                  parse_rfc3339("2026-12-02T05:00:05")):
        assert render_log(log, since=since, tail=None, timestamps=False, limit=None) == b"new\n"
    assert parse_rfc3339("2026-12-02T05:00:05").tzinfo is not None
