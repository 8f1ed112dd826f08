"""``rauta replay``: run a scenario through the real reconciler and the real proxy.

Role: the executable side of ``rauta.scenario``. It starts echo backends and the proxy on
loopback, feeds each step's events to the reconciler, waits until they are applied, sends
the probes, checks the statuses, and prints one PASS/FAIL line per expectation.

Rules:
- The same code path as ``rauta serve``: Reconciler → Proxy (built from ``ProxySettings``
  like every mode's), MemorySink for statuses. No signals and no admin server, so not on
  ``rauta.app.App``: the run ends when the scenario does (the proxy closed with 0.5 s
  of drain, since every probe has been answered by then).
- Every wait is bounded; a step whose changes are not applied in time fails, never hangs.
- Exit code 0 only when every expectation passed.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from rauta.echo import EchoBackend
from rauta.reconcile.reconciler import Reconciler
from rauta.reconcile.sinks import MemorySink
from rauta.reconcile.store import Event
from rauta.scenario import Placeholders, Probe, Scenario, StatusExpect, Step, load_scenario
from rauta.settings import ProxySettings


@dataclass
class Answer:
    status: int | None  # None: the connection failed
    backend: str | None
    headers: dict[str, str]
    body: str
    error: str = ""


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failed: int = 0
    passed: int = 0

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        self.lines.append(("PASS " if ok else "FAIL ") + what + ("" if ok or not detail
                                                                  else f": {detail}"))


def _client_ssl() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Runner:
    def __init__(self, scenario: Scenario, placeholders: Placeholders,
                 out: Callable[[str], None] = print) -> None:
        self.s, self.ph, self.out = scenario, placeholders, out
        self.report = Report()
        self.registry = CollectorRegistry()
        self.proxy = ProxySettings(hash_on=scenario.hash_on, drain=2.0).build(self.registry)
        self.sink = MemorySink(clock=lambda: "2026-01-01T00:00:00Z")
        self.reconciler = Reconciler(self.proxy, self.sink)
        self.backends = {
            b.name: EchoBackend(b.name, placeholders.addr(b.name), placeholders.port("backends"),
                                b.status, b.delay_ms)
            for b in scenario.backends
        }
        self.records: dict[str, dict[str, str | None]] = {}

    def _emit(self, line: str) -> None:
        self.out(line)

    async def run(self) -> Report:
        task = asyncio.create_task(self.reconciler.run())
        try:
            for spec in self.s.backends:
                if spec.start:
                    await self.backends[spec.name].start()
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True, ssl=_client_ssl()),
                timeout=aiohttp.ClientTimeout(total=10),
            ) as session:
                for i, step in enumerate(self.s.steps, 1):
                    await self._step(i, step, session)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self.proxy.close(0.5)
            for b in self.backends.values():
                await b.stop()
        return self.report

    async def _step(self, index: int, step: Step, session: aiohttp.ClientSession) -> None:
        label = f"[{self.s.name}] step {index} ({step.name})"
        for name in step.stop:
            await self.backends[name].stop()
        for name in step.start:
            await self.backends[name].start()
        before = len(self.report.lines)
        self.reconciler.submit(Event(e.type, e.object) for e in step.events)
        try:
            await self.reconciler.wait_idle(timeout=10)
        except TimeoutError:
            self.report.check(False, f"{label} applied", "changes not applied within 10 s")
        for n, probe in enumerate(step.probes, 1):
            await self._probe(f"{label} probe {n}", probe, session)
        for st in step.statuses:
            self._status(f"{label} status", st)
        for line in self.report.lines[before:]:
            self._emit(line)

    # ----------------------------------------------------------------- probes

    async def _send(self, probe: Probe, i: int, session: aiohttp.ClientSession) -> Answer:
        req = probe.request
        port = req.port if isinstance(req.port, int) else self.ph.port(req.port)
        headers = {"Host": req.host, **req.headers}
        if probe.key_header:
            headers[probe.key_header] = f"key-{i}"
        url = f"{req.scheme}://127.0.0.1:{port}{req.path}"
        kwargs: dict[str, Any] = {"headers": headers, "allow_redirects": False}
        if req.scheme == "https":
            kwargs["server_hostname"] = req.sni or req.host.split(":")[0]
        if req.body:
            kwargs["data"] = req.body.encode()
        try:
            async with session.request(req.method, url, **kwargs) as resp:
                body = await resp.text(errors="replace")
                return Answer(resp.status, resp.headers.get("x-backend"),
                              {k.lower(): v for k, v in resp.headers.items()}, body)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return Answer(None, None, {}, "", f"{type(exc).__name__}: {exc}")

    async def _probe(self, label: str, probe: Probe, session: aiohttp.ClientSession) -> None:
        req, exp = probe.request, probe.expect
        what = f"{label} {req.method} {req.scheme}://{req.host}{req.path} x{probe.count}"
        answers = [await self._send(probe, i, session) for i in range(probe.count)]
        if probe.record:
            self.records[probe.record] = {f"key-{i}": a.backend for i, a in enumerate(answers)}
        if exp.connect_error:
            bad = [a for a in answers if a.status is not None]
            self.report.check(not bad, f"{what}: connection refused",
                              f"{len(bad)} answered, first {bad[0].status}" if bad else "")
            return
        errors = [a for a in answers if a.status is None]
        if errors:
            self.report.check(False, what, f"{len(errors)} connection errors, first: "
                                           f"{errors[0].error}")
            return
        if exp.status is not None:
            wrong = [a.status for a in answers if a.status != exp.status]
            self.report.check(not wrong, f"{what}: status {exp.status}",
                              f"got {sorted(set(wrong))} ({len(wrong)}/{len(answers)})")
        if exp.backend is not None:
            got = sorted({str(a.backend) for a in answers})
            self.report.check(got == [exp.backend], f"{what}: backend {exp.backend}", f"got {got}")
        if exp.backends is not None:
            self._shares(what, answers, exp.backends, exp.tolerance)
        for name, value in exp.headers.items():
            got_values = sorted({a.headers.get(name.lower(), "<absent>") for a in answers})
            self.report.check(got_values == [value], f"{what}: header {name}: {value}",
                              f"got {got_values}")
        if exp.location is not None:
            got_loc = sorted({a.headers.get("location", "<absent>") for a in answers})
            self.report.check(got_loc == [exp.location], f"{what}: location {exp.location}",
                              f"got {got_loc}")
        if exp.body_contains is not None:
            miss = [a.body[:80] for a in answers if exp.body_contains not in a.body]
            self.report.check(not miss, f"{what}: body contains {exp.body_contains!r}",
                              f"got {miss[:1]}")
        if exp.same_as is not None:
            self._sticky(what, answers, exp.same_as, exp.moved_from, exp.max_moved)

    def _shares(self, what: str, answers: list[Answer], want: dict[str, float],
                tolerance: float) -> None:
        counts: dict[str, int] = {}
        for a in answers:
            counts[str(a.backend)] = counts.get(str(a.backend), 0) + 1
        shares = {k: v / len(answers) for k, v in counts.items()}
        ok = all(abs(shares.get(k, 0.0) - w) <= tolerance for k, w in want.items()) and set(
            shares) <= set(want)
        pretty = json.dumps({k: round(v, 3) for k, v in sorted(shares.items())})
        self.report.check(ok, f"{what}: shares {json.dumps(want)} ±{tolerance}", f"got {pretty}")

    def _sticky(self, what: str, answers: list[Answer], record: str, moved: list[str],
                max_moved: float) -> None:
        before = self.records.get(record)
        if before is None:
            self.report.check(False, f"{what}: sticky vs {record}", "no such recorded probe")
            return
        others = [k for k in before if before[k] not in moved]
        changed = [k for i, a in enumerate(answers) if (k := f"key-{i}") in before
                   and before[k] not in moved and before[k] != a.backend]
        allowed = int(max_moved * len(others))
        moved_keys = len(before) - len(others)
        self.report.check(len(changed) <= allowed,
                          f"{what}: keys stay where they were in {record!r} (the {moved_keys} "
                          f"keys of {moved} may move, and at most {allowed} of the "
                          f"{len(others)} others)",
                          f"{len(changed)} other keys moved, e.g. {changed[:3]}")

    # ----------------------------------------------------------------- statuses

    def _status(self, label: str, st: StatusExpect) -> None:
        key = (st.kind, st.namespace, st.name)
        obj = self.sink.status.get(key)
        ident = f"{st.kind} {st.namespace + '/' if st.namespace else ''}{st.name}"
        if st.absent:
            present = obj is not None and (obj.get("parents") or obj.get("conditions"))
            self.report.check(not present, f"{label} {ident}: no status from rauta",
                              f"got {obj}")
            return
        if obj is None:
            self.report.check(False, f"{label} {ident}", "rauta wrote no status for it")
            return
        where = ident
        if st.kind == "HTTPRoute":
            parents = obj.get("parents") or []
            parent = next((p for p in parents if st.parent is None
                           or p["parentRef"].get("name") == st.parent), None)
            if parent is None:
                self.report.check(False, f"{label} {ident}", f"no parent {st.parent!r}")
                return
            conds = parent["conditions"]
        elif st.listener is not None:
            lis = next((li for li in obj.get("listeners") or [] if li["name"] == st.listener),
                       None)
            if lis is None:
                self.report.check(False, f"{label} {ident}", f"no listener {st.listener!r}")
                return
            conds, where = lis["conditions"], f"{ident} listener {st.listener}"
            if st.attached_routes is not None:
                self.report.check(lis["attachedRoutes"] == st.attached_routes,
                                  f"{label} {where}: attachedRoutes {st.attached_routes}",
                                  f"got {lis['attachedRoutes']}")
        else:
            conds = obj.get("conditions") or []
        by_type = {c["type"]: c for c in conds}
        for ctype, want in st.conditions.items():
            c = by_type.get(ctype)
            got = "absent" if c is None else (
                c["status"] if "/" not in want else f"{c['status']}/{c['reason']}")
            self.report.check(got == want, f"{label} {where}: {ctype}={want}",
                              f"got {got}" + (f" ({c['message']})" if c and c["message"] else ""))


async def replay_text(text: str, origin: str, out: Callable[[str], None] = print) -> Report:
    """Replay one scenario given as YAML text; prints PASS/FAIL lines through ``out``."""
    placeholders = Placeholders()
    scenario = load_scenario(text, placeholders, origin)
    runner = Runner(scenario, placeholders, out)
    report = await runner.run()
    out(f"{'PASS' if not report.failed else 'FAIL'} [{scenario.name}] "
        f"{report.passed} passed, {report.failed} failed")
    return report
