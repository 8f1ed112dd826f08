"""Streaming through the proxy: 1 GiB down and 1 GiB up, rauta side by side with nginx.

Role: issue 10's goal 4 (rauta's streaming throughput at least half of nginx's, with the
proxy's RSS growing by less than 20 MB). The load side is C, so it is not what limits:
an nginx backend serves ``/big`` (a sparse N-MiB file, sendfile) and reads and discards
the bodies sent to ``/up`` before it answers; curl downloads ``/big`` and uploads the same file
(``-T``, streamed, never held in memory). Between them: rauta (``bench_proxy.py
--serve-proxy``, the same config as the throughput bench) or nginx with one worker,
streaming both ways (``proxy_buffering off``, ``proxy_request_buffering off``, no body
size limit, 1 MiB buffers), so neither proxy spools to disk. Rounds alternate between
the two proxies; the medians are compared.

Rules: loopback only; every child process is stopped on exit; each transfer has a
timeout (``--timeout``), so the run is bounded. With two CPUs and ``taskset``, each proxy
runs on CPU 0 and curl and the backend on CPU 1, as in ``bench_proxy.py``. The RSS
figure is rauta's peak (VmHWM) after all rounds minus its RSS before the first.

Usage: ``.venv/bin/python bench/bench_stream.py [--mib 1024] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_proxy import (  # noqa: E402
    free_port,
    pin,
    start_nginx,
    stop_children,
    vm_kib,
    wait_port,
)

# /up reads the whole body (in memory: one buffer of its size), then answers through an
# internal proxy hop that carries no body; a plain ``return`` would answer first.
NGINX_BACKEND = """  server {{ listen 127.0.0.1:{port}; client_max_body_size 0; sendfile on;
    location = /big {{ alias {file}; }}
    location = /up {{ client_body_buffer_size {buffer}; proxy_pass_request_body off;
      proxy_set_header Content-Length ""; proxy_pass http://127.0.0.1:{port}/ok; }}
    location = /ok {{ return 200 'ok'; }} }}"""

NGINX_STREAM = """  upstream be {{ server 127.0.0.1:{backend}; keepalive 16; }}
  server {{ listen 127.0.0.1:{port};
    client_max_body_size 0; client_body_buffer_size 1m;
    proxy_buffering off; proxy_request_buffering off; proxy_buffer_size 1m;
    proxy_buffers 4 1m; proxy_busy_buffers_size 2m;
    location / {{ proxy_pass http://be; proxy_http_version 1.1;
                 proxy_set_header Connection ""; }} }}"""


def curl(args: list[str], port: int, size: int, timeout: float, cpu: int | None) -> float:
    """MB/s of one curl transfer of ``size`` bytes through ``port`` (checked): a download
    of ``/big``, or with ``args`` an upload to ``/up``."""
    out = subprocess.run([*pin(cpu), "curl", "-sS", "-o", "/dev/null", "-w",
                          "%{http_code} %{size_download} %{size_upload} %{time_total}",
                          "--max-time", str(timeout), *args,
                          f"http://127.0.0.1:{port}/{'up' if args else 'big'}"],
                         capture_output=True, text=True, timeout=timeout + 10)
    code, down, up, secs = out.stdout.split()
    moved = int(down) if not args else int(up)
    if code != "200" or moved != size:
        raise RuntimeError(f"curl {args} via {port}: HTTP {code}, {moved} of {size} bytes "
                           f"{out.stderr.strip()}")
    return size / float(secs) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024, help="MiB each way per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300.0, help="per transfer, seconds")
    args = ap.parse_args()
    if shutil.which("nginx") is None:
        print("nginx is not installed: no anchor to compare with")
        return 2
    size = args.mib << 20
    two = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    proxy_cpu, load_cpu = (0, 1) if two else (None, None)
    me = [sys.executable, str(HERE / "bench_proxy.py")]
    tmp = Path(tempfile.mkdtemp(prefix="rauta-stream-"))
    children: list[subprocess.Popen[bytes]] = []
    try:
        big = tmp / "big"
        with big.open("wb") as f:
            f.truncate(size)  # sparse: no disk, reads as zeros
        tmp.chmod(0o755)  # nginx workers run as another user when started as root
        big.chmod(0o644)
        backend = free_port()
        children.append(start_nginx(tmp, "backend", NGINX_BACKEND.format(
            port=backend, file=big, buffer=f"{args.mib + 1}m"), load_cpu))
        wait_port(backend)
        rauta_port, nginx_port = free_port(), free_port()
        rauta = subprocess.Popen([*pin(proxy_cpu), *me, "--serve-proxy", str(rauta_port),
                                  "--upstreams", str(backend)])
        children.append(rauta)
        children.append(start_nginx(tmp, "stream", NGINX_STREAM.format(backend=backend,
                                                                      port=nginx_port), proxy_cpu))
        wait_port(rauta_port)
        wait_port(nginx_port)
        rss_before = vm_kib(rauta.pid, "VmRSS")
        runs: dict[str, list[tuple[float, float]]] = {"nginx": [], "rauta": []}
        for _ in range(max(1, args.rounds)):
            for name, port in (("nginx", nginx_port), ("rauta", rauta_port)):
                runs[name].append((curl([], port, size, args.timeout, load_cpu),
                                   curl(["-T", str(big), "-X", "POST"], port, size,
                                        args.timeout, load_cpu)))
        peak = vm_kib(rauta.pid, "VmHWM")
        print(f"{args.mib} MiB each way, {args.rounds} interleaved rounds; "
              f"{'proxies on CPU 0, curl and the nginx backend on CPU 1' if two else 'no pinning'}")
        med = {name: (statistics.median(d for d, _ in r), statistics.median(u for _, u in r))
               for name, r in runs.items()}
        for name, r in runs.items():
            print(f"  rounds of {name}: down MB/s {[round(d) for d, _ in r]}, "
                  f"up MB/s {[round(u) for _, u in r]}")
        for name, (down, up) in med.items():
            print(f"{name}: down {down:.0f} MB/s, up {up:.0f} MB/s (medians)")
        print(f"rauta / nginx: down {med['rauta'][0] / med['nginx'][0]:.2f}, "
              f"up {med['rauta'][1] / med['nginx'][1]:.2f}")
        print(f"rauta RSS growth: {(peak - rss_before) / 1024:.1f} MiB "
              f"(before {rss_before / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB)")
        return 0
    finally:
        stop_children(children)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
