"""Bounded load test of rauta's proxy on loopback, side by side with baselines.

Role: start 1-4 tiny backends (nginx ``return 200`` servers when nginx is installed, else
raw asyncio ones in a child process), the rauta proxy in its own process, and drive each
target for ``--duration`` seconds with ``wrk`` (or, without wrk, an asyncio keep-alive
client): the backends directly (baseline), rauta, and nginx as a proxy with upstream
keep-alive when installed. Prints req/s, p99 and ratios from the same run, since
absolute figures on this machine vary by about ±25% between runs.

``--stream-mib N`` also pushes an N MiB download and an N MiB upload through rauta and
reports the proxy process's peak RSS growth (``--stream-mib 1024`` is the 1 GiB check).

Rules: everything binds 127.0.0.1; every child process is stopped on exit; the run is
bounded (each phase lasts ``--duration`` s, the stream check has a timeout). With two or
more CPUs and ``taskset`` present, the proxy under test runs on CPU 0 and the load
generator and backends on CPU 1 (as in shared/reference/performance.md).

``--compare-with DIR`` also runs the proxy of another checkout (``git worktree add DIR
COMMIT``; its own ``bench/bench_proxy.py --serve-proxy`` and its own ``rauta``) as a
second target, and ``--rounds N`` interleaves every target N times and reports medians:
this is how a change's cost on the common path is measured ("before and after").

``--floor`` also runs the two reference forwarders of ``bench/floor`` (which never import
rauta) on the proxy CPU: ``bare.py`` passes bytes through with no HTTP work at all, and
``lean.py`` does the least a proxy must do per request (Host, hop-by-hop headers,
X-Forwarded-*, a route lookup, the response head rebuilt). Their ratios to nginx in the same
run are the floor a Python data plane on asyncio and httptools starts from.

``--workers N`` runs rauta's proxy as N data-plane workers (``rauta.workers``, the
processes of ``rauta serve --workers N``) against nginx with ``worker_processes N``;
then nothing is pinned (N proxy processes share the machine with the load).

Usage: ``.venv/bin/python bench/bench_proxy.py [--duration 10] [--connections 64]
[--rounds 3] [--compare-with /tmp/rauta-base] [--floor] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def stop_children(children: list[subprocess.Popen]) -> None:  # type: ignore[type-arg]
    """Terminate every child (last started first), killing one still there after 5 s."""
    for child in reversed(children):
        child.terminate()
    for child in children:
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()


def pin(cpu: int | None) -> list[str]:
    if cpu is None or not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(cpu)]


# ---------------------------------------------------------------------- child processes


async def serve_backends(ports: list[int], stream_bytes: int) -> None:
    """Raw asyncio backends: ``/`` answers "ok"; ``/big`` streams ``stream_bytes``;
    any request body is read and discarded (answering with its size)."""
    import httptools

    class Backend(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport
            self.p = httptools.HttpRequestParser(self)
            self.url = b""
            self.size = 0

        def data_received(self, data: bytes) -> None:
            self.p.feed_data(data)

        def on_url(self, url: bytes) -> None:
            self.url = url
            self.size = 0

        def on_body(self, data: bytes) -> None:
            self.size += len(data)

        def on_message_complete(self) -> None:
            if self.url == b"/big":
                asyncio.get_running_loop().create_task(self.stream())
            elif self.size:
                body = str(self.size).encode()
                self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"  # type: ignore[attr-defined]
                             % (len(body), body))
            else:
                self.t.write(OK_RESPONSE)  # type: ignore[attr-defined]

        async def stream(self) -> None:
            self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"  # type: ignore[attr-defined]
                         % stream_bytes)
            block = b"x" * (1 << 20)
            left = stream_bytes
            while left > 0:
                n = min(left, len(block))
                self.t.write(block[:n])  # type: ignore[attr-defined]
                left -= n
                while self.t.get_write_buffer_size() > (4 << 20):  # type: ignore[attr-defined]
                    await asyncio.sleep(0.001)

    loop = asyncio.get_running_loop()
    for port in ports:
        await loop.create_server(Backend, "127.0.0.1", port, reuse_address=True, backlog=1024)
    await asyncio.Event().wait()


async def serve_proxy(port: int, upstreams: list[int], workers: int = 1) -> None:
    from prometheus_client import CollectorRegistry

    from rauta.model.config import (
        Backend,
        Endpoint,
        ListenerRoutes,
        Match,
        PathMatch,
        PortConfig,
        RouterConfig,
        Rule,
    )
    from rauta.proxy import Proxy

    eps = tuple(Endpoint(address="127.0.0.1", port=p) for p in sorted(upstreams))
    rule = Rule(route="bench/r", rule_index=0, match_index=0, hostname="",
                match=Match(path=PathMatch(type="PathPrefix", value="/")),
                backends=(Backend(name="bench/svc:80", weight=1, endpoints=eps),))
    cfg = RouterConfig(ports=(PortConfig(port=port, protocol="HTTP", listeners=(
        ListenerRoutes(gateway="bench/gw", listener="http", hostname="", rules=(rule,)),)),))
    if workers > 1:  # the data-plane workers of ``rauta serve --workers N``
        from rauta.settings import ProxySettings
        from rauta.workers import WorkerPool

        proxy = WorkerPool(ProxySettings(workers=workers, drain=0.0))
        await proxy.start()
    else:
        proxy = Proxy(registry=CollectorRegistry(), drain_seconds=0.0)
    applied = await proxy.apply(cfg, {})
    if applied.failed:
        raise SystemExit(f"proxy failed: {applied.failed}")
    try:  # the GC settings of ``rauta serve`` (freeze start-up objects, rarer collections)
        from rauta.cli import tune_gc
    except ImportError:  # an older checkout (--compare-with)
        gc.collect()
        gc.freeze()
    else:
        tune_gc()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await proxy.close(0.0)


NGINX_MAIN = """worker_processes {workers};
pid {tmp}/nginx-{name}.pid;
error_log {tmp}/error-{name}.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  keepalive_requests 1000000;
{servers}
}}
"""


def start_nginx(tmp: Path, name: str, servers: str, cpu: int | None,
                workers: int = 1) -> subprocess.Popen:
    conf = tmp / f"nginx-{name}.conf"
    conf.write_text(NGINX_MAIN.format(tmp=tmp, name=name, servers=servers, workers=workers))
    return subprocess.Popen([*pin(cpu), "nginx", "-p", str(tmp), "-c", str(conf),
                             "-g", "daemon off;"], stderr=subprocess.DEVNULL)


def nginx_backends(ports: list[int]) -> str:
    return "\n".join(f"  server {{ listen 127.0.0.1:{p}; location / {{ return 200 'ok'; }} }}"
                     for p in ports)


def nginx_proxy(port: int, upstreams: list[int]) -> str:
    servers = " ".join(f"server 127.0.0.1:{p};" for p in upstreams)
    return (f"  upstream be {{ {servers} keepalive 128; }}\n"
            f"  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://be; "
            f"proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}")


# ---------------------------------------------------------------------- load generation


def run_wrk(port: int, duration: float, conns: int, threads: int,
            cpu: int | None) -> tuple[float, str]:
    out = subprocess.run(
        [*pin(cpu), "wrk", f"-t{threads}", f"-c{conns}", f"-d{max(1, int(duration))}s",
         "--latency", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=duration + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        print(f"    wrk reported: {errors.group(0)}")
    return (float(rps.group(1)) if rps else 0.0), (p99.group(1) if p99 else "?")


async def _py_load(port: int, duration: float, conns: int) -> float:
    count = 0
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    deadline = time.monotonic() + duration

    async def worker() -> None:
        nonlocal count
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < deadline:
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            count += 1
        writer.close()

    await asyncio.gather(*(worker() for _ in range(conns)))
    return count / duration


def run_load(port: int, args: argparse.Namespace) -> tuple[float, str]:
    if shutil.which("wrk"):
        return run_wrk(port, args.duration, args.connections, args.threads, args.load_cpu)
    return asyncio.run(_py_load(port, args.duration, args.connections)), "?"


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0.0))[1]
        todo.extend(p for p, (ppid, _) in stats.items() if ppid == current)
    return total


def measured(proc: subprocess.Popen, port: int, args: argparse.Namespace
             ) -> tuple[float, str, float]:
    """(req/s, p99, CPU µs per request of ``proc``'s process tree) for one load run."""
    before = tree_cpu(proc.pid)
    rps, p99 = run_load(port, args)
    used = tree_cpu(proc.pid) - before
    return rps, p99, (used / (rps * args.duration) * 1e6 if rps else 0.0)


def median_run(runs: list[tuple[float, str, float]]) -> tuple[float, str, float]:
    """The median req/s and CPU per request of interleaved runs (p99 of the median run)."""
    ordered = sorted(runs, key=lambda r: r[0])
    mid = ordered[len(ordered) // 2]
    return statistics.median(r[0] for r in runs), mid[1], statistics.median(r[2] for r in runs)


# ---------------------------------------------------------------------- stream check


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def _stream(port: int, size: int) -> tuple[int, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /big HTTP/1.1\r\nHost: bench\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n", 1)[0], head
    got = 0
    while got < size:
        data = await reader.read(1 << 20)
        if not data:
            break
        got += len(data)
    writer.write(b"POST /up HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n" % size)
    block = b"y" * (1 << 20)
    left = size
    while left > 0:
        writer.write(block[: min(left, len(block))])
        left -= min(left, len(block))
        await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    echoed = int(await reader.readexactly(length))
    writer.close()
    return got, echoed


def stream_check(proxy: subprocess.Popen, port: int, mib: int) -> None:
    size = mib << 20
    before = vm_kib(proxy.pid, "VmRSS")
    t0 = time.monotonic()
    got, echoed = asyncio.run(asyncio.wait_for(_stream(port, size), timeout=600))
    secs = time.monotonic() - t0
    peak = vm_kib(proxy.pid, "VmHWM")
    ok = got == size and echoed == size
    print(f"stream {mib} MiB down + {mib} MiB up through rauta: {'ok' if ok else 'FAILED'} "
          f"in {secs:.1f}s ({2 * size / secs / 1e6:.0f} MB/s); proxy RSS before {before // 1024} "
          f"MiB, peak {peak // 1024} MiB (growth {(peak - before) // 1024} MiB)")


# ---------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backends", type=int, default=2, choices=range(1, 5))
    ap.add_argument("--no-nginx", action="store_true", help="never use nginx")
    ap.add_argument("--no-pin", action="store_true", help="no taskset CPU pinning")
    ap.add_argument("--stream-mib", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds (medians)")
    ap.add_argument("--compare-with", type=Path, default=None,
                    help="another checkout whose proxy runs as a second target")
    ap.add_argument("--floor", action="store_true",
                    help="also run the reference forwarders of bench/floor (bare, lean)")
    ap.add_argument("--workers", type=int, default=1,
                    help="rauta data-plane workers (rauta.workers) against nginx with as "
                         "many worker_processes; above 1 nothing is pinned")
    ap.add_argument("--serve-backends", help=argparse.SUPPRESS)
    ap.add_argument("--serve-proxy", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--upstreams", help=argparse.SUPPRESS)
    ap.add_argument("--stream-bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.serve_backends:
        ports = [int(p) for p in args.serve_backends.split(",")]
        asyncio.run(serve_backends(ports, args.stream_bytes))
        return
    if args.serve_proxy:
        try:  # the loop the rauta commands run on (uvloop on Linux; RAUTA_LOOP overrides)
            from rauta.runloop import run as run_loop
        except ImportError:  # an older checkout (--compare-with): asyncio's own
            run_loop = asyncio.run  # type: ignore[assignment]
        run_loop(serve_proxy(args.serve_proxy, [int(p) for p in args.upstreams.split(",")],
                             args.workers))
        return

    two_cpus = ((os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
                and not args.no_pin and args.workers == 1)
    proxy_cpu, args.load_cpu = (0, 1) if two_cpus else (None, None)
    use_nginx = shutil.which("nginx") is not None and not args.no_nginx
    me = [sys.executable, str(Path(__file__).resolve())]
    children: list[subprocess.Popen] = []
    tmp = Path(tempfile.mkdtemp(prefix="rauta-bench-"))
    try:
        ports = [free_port() for _ in range(args.backends)]
        if use_nginx:
            children.append(start_nginx(tmp, "backends", nginx_backends(ports), args.load_cpu))
        else:
            children.append(subprocess.Popen([*pin(args.load_cpu), *me, "--serve-backends",
                                              ",".join(map(str, ports))]))
        stream_ports: list[int] = []
        if args.stream_mib:
            stream_ports = [free_port()]
            children.append(subprocess.Popen([*me, "--serve-backends", str(stream_ports[0]),
                                              "--stream-bytes", str(args.stream_mib << 20)]))
        for p in ports + stream_ports:
            wait_port(p)
        rauta_port, stream_proxy_port = free_port(), free_port()
        rauta = subprocess.Popen([*pin(proxy_cpu), *me, "--serve-proxy", str(rauta_port),
                                  "--upstreams", ",".join(map(str, ports)),
                                  "--workers", str(args.workers)])
        children.append(rauta)
        wait_port(rauta_port, timeout=30)
        upstreams = ",".join(map(str, ports))

        def start_other(script: Path, env: dict[str, str] | None = None,
                        cwd: Path | None = None) -> tuple[subprocess.Popen, int]:
            """Another proxy (``script --serve-proxy PORT --upstreams ...``) on the proxy CPU."""
            port = free_port()
            proc = subprocess.Popen([*pin(proxy_cpu), sys.executable, str(script),
                                     "--serve-proxy", str(port), "--upstreams", upstreams],
                                    env=env, cwd=cwd)
            children.append(proc)
            wait_port(port)
            return proc, port

        others: list[tuple[str, subprocess.Popen, int]] = []
        if args.compare_with is not None:
            base_dir = args.compare_with.resolve()
            others.append((f"compared ({args.compare_with.name})", *start_other(
                base_dir / "bench" / "bench_proxy.py",
                env={**os.environ, "PYTHONPATH": str(base_dir)}, cwd=base_dir)))
        if args.floor:
            floor = Path(__file__).resolve().parent / "floor"
            others.append(("floor: bare forwarder", *start_other(floor / "bare.py")))
            others.append(("floor: lean forwarder", *start_other(floor / "lean.py")))
        tool = "wrk" if shutil.which("wrk") else "asyncio client"
        print(f"load: {tool}, {args.connections} connections, {args.duration:.0f}s per target; "
              f"{args.backends} {'nginx' if use_nginx else 'asyncio'} backend(s); "
              f"{'proxy on CPU 0, load+backends on CPU 1' if two_cpus else 'no CPU pinning'}")
        workers_text = f"{args.workers} worker{'s' if args.workers > 1 else ''}"
        nginx_name = f"nginx proxy ({workers_text})"
        targets: list[tuple[str, subprocess.Popen | None, int]] = [
            ("direct (baseline)", None, ports[0])]
        if use_nginx:
            nginx_port = free_port()
            nginx = start_nginx(tmp, "proxy", nginx_proxy(nginx_port, ports), proxy_cpu,
                                args.workers)
            children.append(nginx)
            wait_port(nginx_port)
            targets.append((nginx_name, nginx, nginx_port))
        targets.append(("rauta proxy" if args.workers == 1 else f"rauta ({workers_text})",
                        rauta, rauta_port))
        targets.extend(others)
        runs: dict[str, list[tuple[float, str, float]]] = {name: [] for name, _, _ in targets}
        for _ in range(max(1, args.rounds)):
            for name, proc, port in targets:
                runs[name].append((*run_load(port, args), 0.0) if proc is None
                                  else measured(proc, port, args))
        results = {name: median_run(r) for name, r in runs.items()}
        if args.rounds > 1:
            for name, r in runs.items():
                print(f"  rounds of {name}: req/s {[round(x[0]) for x in r]}, CPU us/req "
                      f"{[round(x[2]) for x in r]}")
        base = results["direct (baseline)"][0] or 1.0
        ref = results.get(nginx_name, (0.0, "", 0.0))[0]
        print(f"{'target':<24}{'req/s':>10}{'p99':>10}{'/direct':>9}{'/nginx':>8}"
              f"{'proxy CPU us/req':>18}")
        for name, (rps, p99, cpu) in results.items():
            vs_nginx = f"{rps / ref:.2f}" if ref else "-"
            cpu_text = f"{cpu:.0f}" if cpu else "-"
            print(f"{name:<24}{rps:>10.0f}{p99:>10}{rps / base:>9.2f}{vs_nginx:>8}{cpu_text:>18}")
        if args.compare_with is not None:
            rauta_name = next(name for name, proc, _ in targets if proc is rauta)
            new, old = results[rauta_name], results[others[0][0]]
            print(f"rauta / compared: req/s {new[0] / (old[0] or 1):.3f}, CPU us/req "
                  f"{new[2] / (old[2] or 1):.3f} (medians of {max(1, args.rounds)} rounds)")
        print(f"load average during the run: {os.getloadavg()[0]:.2f} "
              f"(other work on this machine skews req/s; CPU us/req is the steadier figure)")
        if args.stream_mib:
            sp = subprocess.Popen([*me, "--serve-proxy", str(stream_proxy_port),
                                   "--upstreams", str(stream_ports[0])])
            children.append(sp)
            wait_port(stream_proxy_port)
            stream_check(sp, stream_proxy_port, args.stream_mib)
    finally:
        stop_children(children)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
