"""``rauta serve --workers 2`` as a real process (issue 10, goal 3): two data-plane
processes hold their own listening socket on the port (SO_REUSEPORT) and the parent holds
none; requests over many new connections all answer and both workers served some (their
``worker``-labelled metrics); a config edit reaches every worker before ``/config`` shows
it; SIGTERM lets the requests in flight finish, exits 0 and leaves no worker; both
workers append whole lines to one ``--access-log`` file; a killed parent takes its workers with it.

Bounded: a few hundred requests on loopback; every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from .test_serve import Serve, children, route, serving, until, write

pytestmark = pytest.mark.timeout(90)


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (any IPv4 address) in this network namespace."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and int(f[1].split(":")[1], 16) == port:
            inodes.add(f[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    out = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
                if m:
                    out.add(m.group(1))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def worker_requests(s: Serve) -> dict[str, float]:
    """rauta_requests_total summed per ``worker`` label, from the parent's /metrics."""
    per: dict[str, float] = {}
    async with s.session.get(f"http://127.0.0.1:{s.admin}/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith("rauta_requests_total{"):
                m = re.search(r'worker="(\d+)"', line)
                assert m, f"a worker sample without its label: {line}"
                per[m.group(1)] = per.get(m.group(1), 0.0) + float(line.rsplit(" ", 1)[1])
    return per


@pytest_asyncio.fixture
async def serve2(tmp_path: Path) -> AsyncIterator[Serve]:
    async with serving(tmp_path, "--grace", "3", "--workers", "2",
                       "--access-log", str(tmp_path / "access.log")) as s:
        yield s


async def _ready(s: Serve) -> bool:
    return await s.admin_status("/readyz") == 200


async def _config_has(s: Serve, needle: str) -> bool:
    with contextlib.suppress(aiohttp.ClientError):
        async with s.session.get(f"http://127.0.0.1:{s.admin}/config") as r:
            return needle in await r.text()
    return False


async def test_two_workers_share_the_port_follow_edits_and_stop_on_sigterm(
        serve2: Serve) -> None:
    s = serve2
    await until(lambda: _ready(s), "/readyz", 30)

    # Two worker processes each hold a listening socket of their own; the parent none.
    workers = children(s.proc.pid)
    assert len(workers) == 2, workers
    listening = listening_inodes(s.listen)
    holders = {pid for pid in workers if socket_inodes(pid) & listening}
    assert holders == set(workers), (workers, holders)
    assert len({i for pid in workers for i in socket_inodes(pid) & listening}) == 2
    assert not socket_inodes(s.proc.pid) & listening, "the control plane binds no listener"

    # Many new connections: every one answered by the route's backend, by both workers.
    answers = await asyncio.gather(*(s.get("/") for _ in range(200)))
    assert set(answers) == {(200, "v1")}, sorted(set(answers))
    per = await worker_requests(s)
    assert sorted(per) == ["0", "1"] and all(n > 0 for n in per.values()), per
    assert sum(per.values()) == 200, per

    # An edit: once /config shows it (every worker applied it), no connection sees v1.
    write(s.config / "route.yaml", route("v2"))
    await until(lambda: _config_has(s, "default/v2:80"), "the edit applied", 15)
    answers = [await s.get("/") for _ in range(50)]
    assert set(answers) == {(200, "v2")}, sorted(set(answers))

    # SIGTERM with slow requests in flight (on both workers, most likely): they finish,
    # then the process exits 0 and no worker is left.
    in_flight = [asyncio.create_task(s.get("/slow")) for _ in range(8)]
    await asyncio.sleep(0.4)
    assert not any(t.done() for t in in_flight)
    started = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(asyncio.gather(*in_flight), 10) == [(200, "slow")] * 8
    code = await asyncio.wait_for(s.proc.wait(), 10)
    assert code == 0, "\n".join(s.stderr[-20:])
    assert time.monotonic() - started < 5
    await asyncio.sleep(0.2)
    assert [pid for pid in workers if alive(pid)] == []
    await asyncio.wait_for(s._reader, 5)
    assert not any("Traceback" in line for line in s.stderr), "\n".join(s.stderr)

    # Both workers appended to the one access log: a whole line per request, none lost.
    lines = (s.config.parent / "access.log").read_text().splitlines()
    paths = [json.loads(line)["path"] for line in lines]
    assert sorted(set(paths)) == ["/", "/slow"] and len(paths) == 200 + 50 + 8


async def test_workers_die_with_a_killed_parent(serve2: Serve) -> None:
    s = serve2
    await until(lambda: _ready(s), "/readyz", 30)
    workers = children(s.proc.pid)
    assert len(workers) == 2, workers
    s.proc.kill()
    await s.proc.wait()

    async def gone() -> bool:
        return not any(alive(pid) for pid in workers)

    await until(gone, "the workers exit after the parent was killed", 10)
