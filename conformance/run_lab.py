"""Run the official Gateway API conformance suite against rauta on the local lab.

    python conformance/run_lab.py [--timeout 60m] [--keep-logs] [-- SUITE ARGS...]

Steps (everything is stopped again on exit, also on Ctrl-C / SIGTERM):

1. the lab (``tests.e2e.lab``: etcd, kube-apiserver, kube-controller-manager, CRDs);
2. the pod runner (``python -m tests.e2e.podrunner``) with the suite's echo-basic;
3. ``rauta controller --address-pool 127.0.1.0/24 --gateway-services`` as a subprocess
   (each Gateway gets its own loopback address, written to ``status.addresses``; the suite
   reads that address, no flag is needed for it). ``--gateway-services`` makes rauta
   generate each Gateway's LoadBalancer Service (label gateway-name plus the
   spec.infrastructure labels/annotations: what GatewayInfrastructure checks) and bind
   its listeners on internal ports too; with the pool given as well, the pool still
   decides the addresses and where the suite's traffic goes;
4. the GatewayClass ``rauta`` (the suite does not create it);
5. ``scripts/run-conformance.sh`` with KUBECONFIG set, output streamed to a log file;
6. ``conformance/reports/<version>/summary.md`` from the report YAML and the ``go test -v``
   output (:func:`summarize`, also usable alone: ``--summarize-only LOG``).

``--usable-address``/``--unusable-address`` matter only for the extended feature
GatewayStaticAddresses; they are passed only when ``python -m rauta.features --flag``
declares it.

A harness: it must not import ``rauta`` (rauta runs as a subprocess only). Needs root (the
pod runner makes network namespaces; rauta binds 80/443 on 127.0.1.x).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.lab import Lab, free_port, locate_lab_dir  # noqa: E402

GATEWAY_CLASS = "rauta"
CONTROLLER_NAME = "rauta.io/gateway-controller"
ADDRESS_POOL = "127.0.1.0/24"
# --gateway-services: the internal ports (on --listen-host) and the Services' selector.
INTERNAL_PORTS = "10000-10999"
SERVICE_SELECTOR = "app.kubernetes.io/name=rauta"
# For GatewayStaticAddresses only: one address of the pool, one outside any pool.
USABLE_ADDRESS = "127.0.1.250"
UNUSABLE_ADDRESS = "192.0.2.1"


def log(msg: str) -> None:
    print(f"[run_lab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def python() -> str:
    for cand in (REPO / ".venv" / "bin" / "python", Path("/work/main/.venv/bin/python")):
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return sys.executable


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def conformance_dir() -> Path:
    if d := os.environ.get("RAUTA_CONFORMANCE_DIR"):
        return Path(d)
    out = subprocess.run(["bash", str(REPO / "scripts" / "build-conformance.sh")], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    dirs = [ln.removeprefix("CONFORMANCE_DIR=") for ln in out.splitlines()
            if ln.startswith("CONFORMANCE_DIR=")]
    if not dirs:
        raise SystemExit(f"build-conformance.sh printed no CONFORMANCE_DIR:\n{out[-2000:]}")
    return Path(dirs[-1])


def versions_env(d: Path) -> dict[str, str]:
    f = d / "versions.env"
    if not f.is_file():
        return {}
    return dict(ln.split("=", 1) for ln in f.read_text().split() if "=" in ln)


class Procs:
    """Subprocesses in their own sessions (Ctrl-C reaches only us), stopped in reverse."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.items: list[tuple[str, subprocess.Popen[bytes], float]] = []

    def spawn(self, name: str, argv: list[str], stop_timeout: float = 20.0,
              log_path: Path | None = None) -> subprocess.Popen[bytes]:
        path = log_path or self.logdir / f"{name}.log"
        fh = open(path, "ab")  # noqa: SIM115 - handed to the child
        try:
            p = subprocess.Popen(argv, cwd=REPO, env=child_env(), stdin=subprocess.DEVNULL,
                                 stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            fh.close()
        log(f"started {name} pid {p.pid}, log {path}")
        self.items.append((name, p, stop_timeout))
        return p

    def stop(self) -> None:
        while self.items:
            name, p, timeout = self.items.pop()
            if p.poll() is None:
                log(f"stopping {name} (pid {p.pid})")
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    log(f"{name} did not stop in {timeout:.0f}s: SIGKILL")
                    p.kill()
                    p.wait(timeout=10)


def wait_for(cond: Any, timeout: float, what: str, procs: list[subprocess.Popen[bytes]],
             logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        for p, lg in zip(procs, logs, strict=True):
            if p.poll() is not None:
                tail = lg.read_text(errors="replace")[-3000:] if lg.is_file() else ""
                raise SystemExit(f"{what}: process exited with {p.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out ({timeout:.0f}s) waiting for {what}")
        time.sleep(0.3)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def ensure_gateway_class(lab: Lab) -> None:
    path = "/apis/gateway.networking.k8s.io/v1/gatewayclasses"
    status, _ = lab.request("GET", f"{path}/{GATEWAY_CLASS}")
    if status == 200:
        log(f"GatewayClass {GATEWAY_CLASS} exists")
        return
    body = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": GATEWAY_CLASS}, "spec": {"controllerName": CONTROLLER_NAME}}
    status, out = lab.request("POST", path, body)
    if status not in (200, 201):
        raise SystemExit(f"create GatewayClass {GATEWAY_CLASS}: {status} {out[:300]!r}")
    log(f"created GatewayClass {GATEWAY_CLASS} (controllerName {CONTROLLER_NAME})")


def gateway_class_accepted(lab: Lab) -> bool:
    status, out = lab.request(
        "GET", f"/apis/gateway.networking.k8s.io/v1/gatewayclasses/{GATEWAY_CLASS}")
    if status != 200:
        return False
    obj = json.loads(out)
    gen = obj["metadata"].get("generation")
    return any(c.get("type") == "Accepted" and c.get("status") == "True"
               and c.get("observedGeneration") == gen
               for c in obj.get("status", {}).get("conditions", []))


def features_flag() -> str:
    return subprocess.run([python(), "-m", "rauta.features", "--flag"], cwd=REPO,
                          env=child_env(), capture_output=True, text=True,
                          check=True).stdout.strip()


# ---------------------------------------------------------------- the summary

_RUN = re.compile(r"^=== (RUN|CONT|NAME|PAUSE)\s+(\S+)")
_RESULT = re.compile(r"^\s*--- (PASS|FAIL|SKIP): (\S+) \(([\d.]+)s\)")
_GOLINE = re.compile(r"^\s+([\w.-]+\.go:\d+): (.*)$")
_TESTIFY_ERR = re.compile(r"^\s+Error:\s+(.*)$")
_FATAL = re.compile(r"(?i)timeout while waiting|timed out|\bfailed\b|\berror\b|unexpected|"
                    r"expected .* but|should have|must|not found|mismatch")
_TS = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z: ")
_TESTIFY_CONT = re.compile(r"^\s+\t?\s{10,}\t?(\S.*)$")


def _strip_ts(msg: str) -> str:
    return _TS.sub("", msg)


def _top(name: str) -> str | None:
    parts = name.split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == "TestConformance" else None


def parse_go_test(text: str) -> dict[str, Any]:
    """Per top-level test (TestConformance/<Name>): result, seconds, first error line."""
    results: dict[str, dict[str, Any]] = {}
    errors: dict[str, list[str]] = {}
    started: dict[str, None] = {}
    last_reason: dict[str, str] = {}
    skipped: set[str] = set()
    current: str | None = None
    first_run_line: int | None = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        ln = lines[i]
        if m := _RUN.match(ln):
            current = m.group(2)
            if (top := _top(current)) and m.group(1) == "RUN":
                started.setdefault(top, None)
            if first_run_line is None and _top(current):
                first_run_line = i
        elif m := _RESULT.match(ln):
            name = m.group(2)
            top = _top(name)
            if top and name.count("/") == 1:
                results[top] = {"result": m.group(1), "seconds": float(m.group(3))}
        elif (m := _TESTIFY_ERR.match(ln)) and current:
            msg = m.group(1).strip()
            if i + 1 < len(lines) and (c := _TESTIFY_CONT.match(lines[i + 1])) \
                    and "Test:" not in lines[i + 1] and "Messages:" not in lines[i + 1]:
                msg = f"{msg} {c.group(1).strip()}"
            # the Messages: block carries the caller's text
            for j in range(i + 1, min(i + 8, len(lines))):
                if "Messages:" in lines[j]:
                    msg = f"{msg} | {lines[j].split('Messages:', 1)[1].strip()}"
                    break
            errors.setdefault(current, []).append(msg)
        elif (m := _GOLINE.match(ln)) and current:
            where, msg = m.group(1), _strip_ts(m.group(2))
            if msg.startswith("Skipping ") and (top := _top(current)):
                skipped.add(top)
            if "not ready yet" in msg:
                # the suite's polling: keep the latest reason, it explains a later timeout
                why = msg.split("not ready yet", 1)[1].lstrip(":, ")
                last_reason[current] = re.sub(r"\s*\(after [\d.]+m?s\)$", "", why)
            elif _FATAL.search(msg):
                why = last_reason.get(current)
                errors.setdefault(current, []).append(
                    f"{where}: {msg}" + (f" (last: {why})" if why else ""))
        i += 1
    panic = next((ln.strip() for ln in lines if ln.startswith("panic: ")), None)
    for top in started:
        # no result line: the run ended (timeout panic, kill) before the test finished,
        # or before go test printed the subtests' results (it does at the parent's end)
        results.setdefault(top, {"result": "SKIP" if top in skipped else "UNFINISHED",
                                 "seconds": 0.0})
    tests: dict[str, dict[str, Any]] = {}
    for top, r in results.items():
        err = None
        # testify errors anywhere in the test or its subtests, else a FAIL subtest's last line
        for name in [n for n in errors if _top(n) == top]:
            err = errors[name][0]
            break
        if err is None and (why := next((last_reason[n] for n in last_reason
                                          if _top(n) == top), None)):
            err = f"(still polling) {why}"
        tests[top] = {**r, "error": err}
    return {"tests": tests, "first_test_line": first_run_line, "panic": panic}


def summarize(report_path: Path, go_log: Path, out: Path,
              timings: dict[str, float] | None = None, note: str = "") -> str:
    text = go_log.read_text(errors="replace") if go_log.is_file() else ""
    parsed = parse_go_test(text)
    tests = parsed["tests"]
    report: dict[str, Any] = {}
    if report_path.is_file():
        report = yaml.safe_load(report_path.read_text()) or {}
    md: list[str] = ["# rauta: Gateway API conformance summary", ""]
    if report:
        impl = report.get("implementation", {})
        md += [f"- suite: Gateway API {report.get('gatewayAPIVersion', '?')} "
               f"({report.get('gatewayAPIChannel', '?')} channel), mode {report.get('mode', '?')}",
               f"- implementation: {impl.get('project', '?')} {impl.get('version', '?')}",
               f"- date: {report.get('date', '?')}"]
    else:
        md.append(f"- no report YAML at `{report_path.relative_to(REPO)}` "
                  "(the suite wrote none: it stopped before or during Setup, or was killed)")
    if timings:
        for k, v in timings.items():
            md.append(f"- {k}: {v:.0f} s")
    if note:
        md.append(f"- {note}")
    if parsed["panic"]:
        md.append(f"- the suite panicked: `{_clip(parsed['panic'])}`")
    md.append("")
    for prof in report.get("profiles", []) or []:
        md += [f"## Profile {prof.get('name')}", ""]
        if prof.get("summary"):
            md += [f"{prof['summary']}", ""]
        md += ["| Part | Result | Passed | Failed | Skipped |", "|---|---|---|---|---|"]
        for part in ("core", "extended"):
            p = prof.get(part)
            if not p:
                continue
            s = p.get("statistics", {})
            md.append(f"| {part} | {p.get('result', '?')} | {s.get('Passed', 0)} | "
                      f"{s.get('Failed', 0)} | {s.get('Skipped', 0)} |")
        md.append("")
        for part in ("core", "extended"):
            p = prof.get(part) or {}
            failed = p.get("failedTests") or []
            if failed:
                md += [f"### {part}: failed ({len(failed)})", ""]
                for t in failed:
                    err = (tests.get(t) or {}).get("error") or "(no error line found in the log)"
                    md.append(f"- **{t}**: `{_clip(err)}`")
                md.append("")
            skipped = p.get("skippedTests") or []
            if skipped:
                md += [f"### {part}: skipped ({len(skipped)})", "", ", ".join(skipped), ""]
            if part == "extended":
                for key in ("supportedFeatures", "unsupportedFeatures"):
                    if p.get(key):
                        md += [f"{key} ({len(p[key])}): {', '.join(p[key])}", ""]
    # From the log alone (also when there is no report).
    if tests:
        c = {k: sum(1 for t in tests.values() if t["result"] == k)
             for k in ("PASS", "FAIL", "SKIP", "UNFINISHED")}
        md += ["## All tests run (from the go test -v log)", "",
               f"{c['PASS']} passed, {c['FAIL']} failed, {c['SKIP']} skipped, "
               f"{c['UNFINISHED']} without a result (UNFINISHED: the run ended first; "
               "its error, if any, is the first one the log shows).", "",
               "| Test | Result | Seconds | First error |", "|---|---|---|---|"]
        order = {"FAIL": 0, "UNFINISHED": 1, "PASS": 2, "SKIP": 3}
        for name in sorted(tests, key=lambda n: (order.get(tests[n]["result"], 4), n)):
            t = tests[name]
            err = _clip(t["error"]) if t["result"] in ("FAIL", "UNFINISHED") and t["error"] else ""
            md.append(f"| {name} | {t['result']} | {t['seconds']:.1f} | {err.replace('|', '/')} |")
        md.append("")
    else:
        tail = [ln for ln in text.splitlines() if ln.strip()][-15:]
        md += ["## No test ran", "", "Last lines of the suite output:", "", "```", *tail, "```", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md))
    return "\n".join(md)


def _clip(s: str, n: int = 300) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", default="60m", help="the suite's -test.timeout")
    ap.add_argument("--logdir", default=None, help="where process logs go (default: a temp dir)")
    ap.add_argument("--summarize-only", metavar="GO_TEST_LOG",
                    help="only (re)write summary.md from this log and the report YAML")
    ap.add_argument("--report-name", default=None,
                    help="write reports/<version>/<NAME>.yaml and <NAME>-summary.md instead of "
                         "rauta.yaml and summary.md (e.g. for a subset run)")
    ap.add_argument("--node", default=None,
                    help="the pod runner's Node name (default: unique per run; the runner "
                         "derives its bridge and netns names from it, and a runner started "
                         "with the same name elsewhere on the host deletes them)")
    ap.add_argument("suite_args", nargs="*", help="after --: extra suite flags")
    args = ap.parse_args()

    cdir = conformance_dir()
    version = versions_env(cdir).get("CONFORMANCE_VERSION", "v1.6.3")
    name = args.report_name or "rauta"
    report = REPO / "conformance" / "reports" / version / f"{name}.yaml"
    summary = report.with_name(f"{name}-summary.md" if args.report_name else "summary.md")
    if args.summarize_only:
        print(summarize(report, Path(args.summarize_only), summary))
        return 0
    if os.geteuid() != 0:
        log("needs root (network namespaces, ports 80/443)")
        return 3

    logdir = Path(args.logdir or tempfile.mkdtemp(prefix="rauta-conformance-"))
    logdir.mkdir(parents=True, exist_ok=True)
    suite_log = logdir / "suite.log"
    log(f"logs in {logdir}")
    # Start clean: a stale report from an earlier run must not be summarized as this one's.
    report.unlink(missing_ok=True)

    stopping = {"sig": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        stopping["sig"] = signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    procs = Procs(logdir)
    lab: Lab | None = None
    timings: dict[str, float] = {}
    rc = 1
    note = ""
    t_suite = None
    try:
        t0 = time.monotonic()
        lab = Lab(locate_lab_dir(), workdir=logdir / "lab")
        lab.start()
        timings["lab start"] = time.monotonic() - t0
        log(f"lab up in {timings['lab start']:.1f}s, kubeconfig {lab.kubeconfig}")

        ready = logdir / "podrunner.ready"
        pr = procs.spawn("podrunner", [
            python(), "-m", "tests.e2e.podrunner", "--kubeconfig", str(lab.kubeconfig),
            "--echo-basic", str(cdir / "bin" / "echo-basic"),
            "--state-dir", str(logdir / "pods"), "--ready-file", str(ready),
            "--node", args.node or f"rauta-conf-{os.getpid()}-{os.urandom(2).hex()}"],
            stop_timeout=90)
        wait_for(ready.is_file, 60, "pod runner ready", [pr], [logdir / "podrunner.log"])
        log(f"pod runner ready: {ready.read_text().strip()}")

        admin_port = free_port()
        ctl = procs.spawn("rauta-controller", [
            python(), "-m", "rauta.cli", "controller", "--kubeconfig", str(lab.kubeconfig),
            "--admin", f"127.0.0.1:{admin_port}", "--listen-host", "127.0.0.1",
            "--address-pool", ADDRESS_POOL, "--controller-name", CONTROLLER_NAME,
            "--gateway-services", "--internal-ports", INTERNAL_PORTS,
            "--service-selector", SERVICE_SELECTOR, "-v"],
            stop_timeout=30)
        wait_for(lambda: http_ok(f"http://127.0.0.1:{admin_port}/healthz"), 60,
                 "rauta controller /healthz", [ctl], [logdir / "rauta-controller.log"])

        ensure_gateway_class(lab)
        wait_for(lambda: gateway_class_accepted(lab), 60, f"GatewayClass {GATEWAY_CLASS} Accepted",
                 [ctl], [logdir / "rauta-controller.log"])
        log(f"GatewayClass {GATEWAY_CLASS} Accepted")

        extra = ["-test.timeout", args.timeout]
        if "GatewayStaticAddresses" in features_flag().split(","):
            extra += [f"--usable-address={USABLE_ADDRESS}",
                      f"--unusable-address={UNUSABLE_ADDRESS}"]
        if args.report_name:
            extra.append(f"--report-output={report}")  # the last one given wins
        extra += args.suite_args
        env = child_env()
        env["KUBECONFIG"] = str(lab.kubeconfig)
        env["RAUTA_CONFORMANCE_DIR"] = str(cdir)
        env["PYTHON"] = python()
        log(f"running scripts/run-conformance.sh {' '.join(extra)}; output -> {suite_log}")
        t_suite = time.monotonic()
        with open(suite_log, "w") as fh:
            suite = subprocess.Popen(["bash", str(REPO / "scripts" / "run-conformance.sh"), *extra],
                                     cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, text=True, bufsize=1)
            procs.items.append(("conformance suite", suite, 60))  # type: ignore[arg-type]
            assert suite.stdout is not None
            setup_done = False
            for line in suite.stdout:
                fh.write(line)
                fh.flush()
                if not setup_done and re.match(r"^=== RUN\s+TestConformance/\w", line):
                    setup_done = True
                    timings["suite Setup (to the first test)"] = time.monotonic() - t_suite
                    log(f"Setup done after {timings['suite Setup (to the first test)']:.0f}s")
                if re.match(r"^\s*--- (PASS|FAIL|SKIP): TestConformance/\w+ ", line):
                    print(line.rstrip(), flush=True)
            rc = suite.wait()
        timings["suite total"] = time.monotonic() - t_suite
        log(f"suite exited {rc} after {timings['suite total']:.0f}s")
    except KeyboardInterrupt:
        note = f"interrupted (signal {stopping['sig'] or 'SIGINT'})"
        log(note)
        rc = 130
        if t_suite is not None:
            timings.setdefault("suite total", time.monotonic() - t_suite)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop()
        if lab is not None:
            lab.stop()
        if suite_log.is_file():
            summarize(report, suite_log, summary, timings, note)
            log(f"summary: {summary}")
        log(f"logs kept in {logdir}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
