"""``rauta.workers``: the merge of the workers' ``Applied`` (a port is bound only if every
worker bound it), and a pool of two real worker processes: one apply reaches both, a
killed worker is reported, started again and given the last config, ``/metrics`` carries
each worker's samples under its ``worker`` label, and ``close`` stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from rauta.model.status import Applied
from rauta.settings import ProxySettings
from rauta.workers import WorkerPool, down, merge

from .proxy.conftest import EchoBackend, backend, config, free_port, get, port_config, rule

pytestmark = pytest.mark.timeout(60)

ERR = "cannot listen on 127.0.0.1:81: Address already in use"


def test_a_port_is_bound_only_if_every_worker_bound_it() -> None:
    one = Applied(ports=(80, 81), addressed=(("10.0.0.1", 80),),
                  invalid_certificates=(("ns/a", "bad"),))
    two = Applied(ports=(80,), failed=((81, ERR),),
                  failed_at=(("10.0.0.1", 80, "cannot listen on 10.0.0.1:80: x"),))
    got = merge([one, two])
    assert got.ports == (80,) and got.failed == ((81, ERR),)
    assert got.addressed == () and got.failed_at == (
        ("10.0.0.1", 80, "cannot listen on 10.0.0.1:80: x"),)
    assert got.invalid_certificates == (("ns/a", "bad"),)
    assert merge([one, one]) == one


def test_a_worker_that_does_not_answer_fails_every_port() -> None:
    cfg = config(port_config(80, rule(backend(1))), port_config(81, rule(backend(1)),
                                                                  address="10.0.0.1"))
    got = merge([Applied(ports=(80,), addressed=(("10.0.0.1", 81),)),
                 down(cfg, "worker 1 is down")])
    assert got.ports == () and got.addressed == ()
    assert got.failed == ((80, "worker 1 is down"),)
    assert got.failed_at == (("10.0.0.1", 81, "worker 1 is down"),)


def _generations(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("rauta_config_generation{"):
            out[line.split('worker="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return out


async def test_a_pool_of_two_applies_restarts_a_killed_worker_and_closes() -> None:
    echo = await EchoBackend("b1").start()
    registry = CollectorRegistry()
    pool = WorkerPool(ProxySettings(workers=2, drain=0.5), registry)
    port = free_port()
    try:
        await pool.start()
        assert len(pool.pids) == 2 and os.getpid() not in pool.pids
        applied = await pool.apply(config(port_config(port, rule(backend(echo.port)))), {})
        assert applied.ports == (port,) and applied.failed == ()
        assert (await get(port, "/")).status == 200
        await pool.refresh_metrics()
        assert _generations(generate_latest(registry).decode()) == {"0": 1.0, "1": 1.0}

        victim = pool.pids[1]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pool.not_ready() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert pool.not_ready() == "data-plane worker(s) 1 down"
        deadline = time.monotonic() + 20
        while (pool.restarts < 1 or pool.not_ready() is not None) and \
                time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert pool.restarts == 1 and pool.not_ready() is None
        assert victim not in pool.pids and len(pool.pids) == 2
        await pool.refresh_metrics()  # the new worker was given the last config
        assert _generations(generate_latest(registry).decode()) == {"0": 1.0, "1": 1.0}
        for _ in range(20):
            assert (await get(port, "/")).status == 200
    finally:
        procs = [w.proc for w in pool.workers]
        await pool.close(0.5)
        await echo.stop()
    assert [p.returncode for p in procs if p is not None] == [0, 0]


def test_a_worker_whose_parent_is_already_gone_exits_at_once() -> None:
    """``--parent`` names a pid that is not the worker's parent (the control plane died
    before PR_SET_PDEATHSIG took effect): exit 0 without touching the channel. The check
    compares pids, so a control plane that is pid 1 in a container is not mistaken."""
    import subprocess
    import sys

    bogus = 2 ** 22 + 1  # above pid_max's default: no such process
    done = subprocess.run([sys.executable, "-m", "rauta.workers", "--fd", "987",
                           "--parent", str(bogus)], capture_output=True, text=True,
                          timeout=20)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_restarted_worker_that_binds_less_is_reported() -> None:
    """``_rebound``: the merged result after one worker's restart is compared with what
    ``apply`` reported; only a change reaches ``on_change``."""
    pool = WorkerPool(ProxySettings(workers=2))
    told: list[Applied] = []
    pool.on_change = told.append
    ok = Applied(ports=(8080,), failed=())
    pool._applied = [ok, ok]  # noqa: SLF001
    pool.merged = merge([ok, ok])
    pool._rebound(1, ("applied", 1, ok))  # noqa: SLF001
    assert told == []
    lost = Applied(ports=(), failed=((8080, "cannot listen"),))
    pool._rebound(1, ("applied", 2, lost))  # noqa: SLF001
    assert told == [merge([ok, lost])] and told[0].failed
    pool._rebound(1, ("error", 3, "boom"))  # noqa: SLF001
    assert len(told) == 1
