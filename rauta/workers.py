"""Data-plane workers (``--workers N``): N proxy processes on SO_REUSEPORT, one control plane.

Role: ``WorkerPool`` is what the reconciler applies to when a mode runs more than one
worker. The parent process stays the control plane (sources, reconciler, status sink,
admin server) and binds no listener; each worker (``python -m rauta.workers --fd N``) is
a whole ``Proxy`` built from the same ``ProxySettings`` (with ``reuse_port``), so the
kernel spreads new connections over the workers.

Rules:
- The channel is a socketpair: length-prefixed pickles (4-byte big-endian length). The
  parent sends ``("init", settings, index, log_level)`` then ``("apply", seq, config, tls)``,
  ``("metrics", seq)`` and ``("stop", grace)``; a worker answers ``("ready", pid)``,
  ``("applied", seq, Applied)``, ``("error", seq, text)`` and ``("metrics", seq,
  families)``. Only the parent and its own children hold the channel.
- Every RouterConfig goes to every worker and is installed there with ``Proxy.apply``
  (the same atomic swap). ``apply`` returns the merge of the workers' ``Applied``: a port
  is bound only when every worker bound it, and failed with the first worker's error
  otherwise; so Programmed and ``/readyz`` reflect all workers. A worker that does not
  answer counts as failing every port (``worker N is down``).
- Status is written once: workers have no sink and no source; only the parent writes.
- Workers die with the parent: ``PR_SET_PDEATHSIG`` (SIGTERM) and EOF on the channel
  both make a worker drain for its ``settings.drain`` and exit (and one whose parent is
  already gone when it starts, ``--parent`` no longer its parent, exits at once). SIGINT is ignored in a
  worker (a terminal's Ctrl-C reaches the parent, which stops the workers). ``close``
  sends ``stop`` with the grace to every worker and waits for each to exit (killing one
  that is still there ``grace`` + 5 s later).
- A worker that exits on its own is logged, ``not_ready`` says so, and it is started
  again with the last applied config. When what it bound changes the merged ``Applied``
  (a port the others hold that it cannot bind now), ``on_change`` is told, so the
  reconciler writes statuses from it and retries the apply.
- ``/metrics``: ``refresh_metrics`` asks every worker for its registry's families and the
  pool's collector serves them with a ``worker`` label (index), beside the parent's own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import pickle
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from rauta.model.config import EMPTY, PortConfig, RouterConfig
from rauta.model.status import Applied
from rauta.settings import ProxySettings

log = logging.getLogger("rauta.workers")

PR_SET_PDEATHSIG = 1
START_TIMEOUT = 30.0  # seconds a worker may take to start (import rauta, build its Proxy)
REPLY_TIMEOUT = 60.0  # seconds an apply may take in a worker (a large config's tables)


class WorkerGone(Exception):
    """The worker's channel closed (the process exited) before it answered."""


async def send(writer: asyncio.StreamWriter, msg: object) -> None:
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(len(data).to_bytes(4, "big") + data)
    await writer.drain()


async def recv(reader: asyncio.StreamReader) -> Any:
    """The next message; ``asyncio.IncompleteReadError`` at EOF."""
    size = int.from_bytes(await reader.readexactly(4), "big")
    return pickle.loads(await reader.readexactly(size))


def merge(results: list[Applied]) -> Applied:
    """What every worker applied: a port counts as bound only if all of them bound it."""
    failed: dict[int, str] = {}
    failed_at: dict[tuple[str, int], str] = {}
    bad: dict[str, str] = {}
    for r in results:
        for p, why in r.failed:
            failed.setdefault(p, why)
        for a, p, why in r.failed_at:
            failed_at.setdefault((a, p), why)
        for name, why in r.invalid_certificates:
            bad.setdefault(name, why)
    ports = set.intersection(*(set(r.ports) for r in results)) if results else set()
    addressed = (set.intersection(*(set(r.addressed) for r in results))
                 if results else set())
    return Applied(ports=tuple(sorted(ports - failed.keys())),
                   failed=tuple(sorted(failed.items())),
                   addressed=tuple(sorted(addressed - failed_at.keys())),
                   failed_at=tuple(sorted((a, p, w) for (a, p), w in failed_at.items())),
                   invalid_certificates=tuple(sorted(bad.items())))


def down(config: RouterConfig, why: str) -> Applied:
    """Every port of ``config`` failed (a worker that did not answer)."""
    ports: tuple[PortConfig, ...] = config.ports
    return Applied(failed=tuple(sorted((p.port, why) for p in ports if not p.address)),
                   failed_at=tuple(sorted((p.address, p.port, why)
                                          for p in ports if p.address)))


class Worker:
    """The parent's handle on one worker process."""

    def __init__(self, index: int, settings: ProxySettings) -> None:
        self.index, self.settings = index, settings
        self.proc: asyncio.subprocess.Process | None = None
        self.pid: int | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._seq = 0
        self._reader_task: asyncio.Task[None] | None = None
        self.alive = False

    async def start(self) -> None:
        if self._writer is not None:  # a restart: the old channel is dead
            self._writer.close()
        parent, child = socket.socketpair()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "rauta.workers", "--fd", str(child.fileno()),
                "--parent", str(os.getpid()), pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL)
        finally:
            child.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=parent)
        try:
            await send(self._writer, ("init", self.settings, self.index,
                                      logging.getLogger().getEffectiveLevel()))
            hello = await asyncio.wait_for(recv(reader), START_TIMEOUT)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError) as exc:
            code = self.proc.returncode
            raise WorkerGone(f"worker {self.index} did not start"
                             + (f" (exit code {code})" if code is not None else "")) from exc
        self.pid = hello[1]
        self.alive = True
        self._reader_task = asyncio.create_task(self._read(reader),
                                                name=f"worker-{self.index}-channel")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                msg = await recv(reader)
                fut = self._replies.pop(msg[1], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except Exception as exc:  # a garbled message: treat the worker as gone
            log.error("worker %d: unreadable message (%s); stopping it", self.index, exc)
            if self.proc is not None and self.proc.returncode is None:
                self.proc.kill()
        finally:
            self.alive = False
            for fut in self._replies.values():
                if not fut.done():
                    fut.set_exception(WorkerGone(f"worker {self.index} is down"))
            self._replies.clear()

    async def request(self, kind: str, *args: object, timeout: float = REPLY_TIMEOUT) -> Any:
        if not self.alive or self._writer is None:
            raise WorkerGone(f"worker {self.index} is down")
        self._seq += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[self._seq] = fut
        try:
            await send(self._writer, (kind, self._seq, *args))
        except (ConnectionError, OSError) as exc:
            self._replies.pop(self._seq, None)
            raise WorkerGone(f"worker {self.index} is down") from exc
        return await asyncio.wait_for(fut, timeout)

    async def stop(self, grace: float) -> None:
        """Ask the worker to drain for ``grace`` s and exit; kill it if it overstays."""
        if self.proc is None:
            return
        if self.alive and self._writer is not None:
            with contextlib.suppress(ConnectionError, OSError):
                await send(self._writer, ("stop", grace))
        try:
            await asyncio.wait_for(self.proc.wait(), grace + 5.0)
        except TimeoutError:
            log.warning("worker %d (pid %s) did not exit after draining; killing it",
                        self.index, self.pid)
            self.proc.kill()
            await self.proc.wait()
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)


class WorkerPool:
    """N worker processes as one proxy for the reconciler (see the module doc)."""

    def __init__(self, settings: ProxySettings, registry: CollectorRegistry | None = None
                 ) -> None:
        self.settings = settings
        self.workers = [Worker(i, settings) for i in range(settings.workers)]
        self.config: RouterConfig = EMPTY
        self._tls: Mapping[str, tuple[bytes, bytes]] = {}
        self._lock = asyncio.Lock()
        self._closing = False
        self._watchers: list[asyncio.Task[None]] = []
        self._families: dict[int, list[Metric]] = {}
        self.restarts = 0
        self._applied: list[Applied | None] = [None] * len(self.workers)  # per worker
        self.merged: Applied | None = None  # what ``apply`` last returned
        # Told the merged Applied when a restarted worker changed it (the reconciler's
        # ``proxy_changed``: statuses and readiness follow what is bound now).
        self.on_change: Callable[[Applied], None] | None = None
        if registry is not None:
            registry.register(self)

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.pid is not None and w.alive]

    async def start(self) -> None:
        """Start every worker; ``WorkerGone`` if one does not come up."""
        try:
            await asyncio.gather(*(w.start() for w in self.workers))
        except BaseException:
            await asyncio.gather(*(w.stop(0.0) for w in self.workers),
                                 return_exceptions=True)
            raise
        self._watchers = [asyncio.create_task(self._watch(w), name=f"worker-{w.index}")
                          for w in self.workers]
        log.info("%d data-plane workers: pids %s", len(self.workers),
                 " ".join(str(p) for p in self.pids))

    async def _watch(self, w: Worker) -> None:
        """Start a worker again, with the last config, when it exits on its own."""
        while True:
            assert w.proc is not None
            code = await w.proc.wait()
            if self._closing:
                return
            log.error("worker %d (pid %s) exited with code %s; starting it again",
                      w.index, w.pid, code)
            if w._reader_task is not None:
                await asyncio.gather(w._reader_task, return_exceptions=True)
            await asyncio.sleep(0.5)  # a worker that cannot start must not spin
            if self._closing:
                return
            try:
                await w.start()
                self.restarts += 1
                async with self._lock:
                    reply = await w.request("apply", self.config, dict(self._tls))
                    self._rebound(w.index, reply)
            except (WorkerGone, TimeoutError, OSError) as exc:
                log.error("worker %d: %s", w.index, exc)
                if w.proc is not None and w.proc.returncode is None:
                    w.proc.kill()  # one that hangs at start: the next round retries

    def _rebound(self, index: int, reply: Any) -> None:
        """A restarted worker applied the last config: when the merged result differs
        from what ``apply`` reported (it could not bind a port the others hold), say so."""
        if reply[0] != "applied" or self.merged is None:
            return
        self._applied[index] = reply[2]
        merged = merge([a for a in self._applied if a is not None])
        if merged != self.merged:
            self.merged = merged
            log.warning("worker %d bound a different set of ports after its restart: %s",
                        index, merged.failed or "all bound")
            if self.on_change is not None:
                self.on_change(merged)

    def not_ready(self) -> str | None:
        gone = [str(w.index) for w in self.workers if not w.alive]
        return f"data-plane worker(s) {', '.join(gone)} down" if gone else None

    async def apply(self, config: RouterConfig,
                    tls: Mapping[str, tuple[bytes, bytes]]) -> Applied:
        """Install ``config`` in every worker; the merged ``Applied`` (module doc)."""
        async with self._lock:
            if self._closing:
                raise RuntimeError("proxy is closed")
            self.config, self._tls = config, tls
            replies = await asyncio.gather(
                *(w.request("apply", config, dict(tls)) for w in self.workers),
                return_exceptions=True)
        results: list[Applied] = []
        for w, reply in zip(self.workers, replies, strict=True):
            if isinstance(reply, BaseException):
                results.append(down(config, f"worker {w.index} is down: {reply}"))
            elif reply[0] == "error":
                raise RuntimeError(f"worker {w.index}: {reply[2]}")
            else:
                results.append(reply[2])
        self._applied = list(results)
        self.merged = merge(results)
        return self.merged

    async def refresh_metrics(self) -> None:
        """Fetch every worker's metric families (for the next ``collect``)."""
        async def one(w: Worker) -> None:
            try:
                self._families[w.index] = (await w.request("metrics", timeout=2.0))[2]
            except (WorkerGone, TimeoutError):
                self._families.pop(w.index, None)

        await asyncio.gather(*(one(w) for w in self.workers))

    def collect(self) -> Iterator[Metric]:
        """The workers' metrics (as last fetched), each sample labelled ``worker``."""
        merged: dict[str, Metric] = {}
        for index, families in sorted(self._families.items()):
            for fam in families:
                m = merged.get(fam.name)
                if m is None:
                    m = merged[fam.name] = Metric(fam.name, fam.documentation, fam.type,
                                                  fam.unit)
                m.samples.extend(s._replace(labels={**s.labels, "worker": str(index)})
                                 for s in fam.samples)
        yield from merged.values()

    async def close(self, grace: float = 0.0) -> None:
        """Every worker drains for ``grace`` s and exits."""
        self._closing = True
        async with self._lock:
            await asyncio.gather(*(w.stop(grace) for w in self.workers))
        for t in self._watchers:
            t.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)


# ---------------------------------------------------------------------- the worker side


async def _worker(fd: int) -> int:
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    _, settings, index, level = await recv(reader)
    logging.getLogger().setLevel(level)  # the control plane's (-v: debug)
    logging.getLogger().handlers[0].setFormatter(logging.Formatter(
        f"%(asctime)s %(levelname)s %(name)s[worker {index}]: %(message)s"))
    registry = CollectorRegistry()
    proxy = settings.build(registry)
    stop = asyncio.Event()
    grace = [settings.drain]
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def serve_channel() -> None:
        try:
            while True:
                msg = await recv(reader)
                if msg[0] == "stop":
                    grace[0] = msg[1]
                    return
                if msg[0] == "apply":
                    try:
                        applied = await proxy.apply(msg[2], msg[3])
                        await send(writer, ("applied", msg[1], applied))
                    except Exception as exc:  # the parent logs it and retries
                        await send(writer, ("error", msg[1], f"{type(exc).__name__}: {exc}"))
                elif msg[0] == "metrics":
                    await send(writer, ("metrics", msg[1], list(registry.collect())))
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the parent is gone: drain and exit
        finally:
            stop.set()

    await send(writer, ("ready", os.getpid()))
    channel = asyncio.create_task(serve_channel())
    await stop.wait()
    channel.cancel()
    await asyncio.gather(channel, return_exceptions=True)
    await proxy.close(grace[0])
    writer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rauta.workers")
    parser.add_argument("--fd", type=int, required=True, help="the channel's socket")
    parser.add_argument("--parent", type=int, required=True, help="the control plane's pid")
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != args.parent:  # the parent died before prctl took effect (the
        return 0  # parent may itself be pid 1 in a container: compare with its own pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from rauta.cli import tune_gc

    tune_gc()
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rauta import runloop

    return runloop.run(_worker(args.fd))


if __name__ == "__main__":
    sys.exit(main())
