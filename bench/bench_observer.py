"""Benchmark of the eBPF/XDP observer's capture half (bpf/observer.c + rauta.observe.kernel).

Run as root: ``python bench/bench_observer.py [--out FILE] [--quick] [--only PARTS]``
(PARTS: comma-separated of series,events,cost,overhead; default all). Bounded (about a
minute). Prints and writes JSON (default bench/results/observer.json):
- startup: compile + load + attach on both veth ends, per transport (goal <= 3 s);
- events: ~100k request/response pairs/s for 5 s from a paced raw-frame sender
  (bench/xdp_flood.c, compiled here), consumed by ``poll_raw`` (ring: mmap batch reader;
  perf: bcc perf buffer); records received, drops counted in the kernel (ring_drops) and
  by bcc (perf_lost), in-kernel histogram counts against pairs sent and paired; also the
  decode rate (records -> HttpEvent);
- cost: the XDP program's own ns per packet kind from BPF_PROG_TEST_RUN (kernel-timed,
  no traffic): pure ACK, SYN and 1448-byte non-HTTP data (1000 runs each), and 20,000
  request/response pairs on one kept-alive flow, one run each (so their figures include
  the single-run floor, reported as ack_single_run_ns);
- overhead: real TCP between the two namespaces, request/response ping-pong (round
  trips/s) and bulk (MiB/s), with nothing attached, with an XDP program that only returns
  XDP_PASS (``floor``: generic XDP's own cost), with the observer's hook only (generic,
  both ends), and hook + a consumer thread; median of --runs (7) interleaved runs each;
  the ratio to "none" and the microseconds added per round trip. The program's ns per
  packet comes from a separate pass with BPF statistics on (they cost two clock reads per
  run, so they are off during the ratio runs).

- series: the ``rauta_observer_*`` series one Metrics registry exposes for a 1,000-route
  config (one rule and one backend each) with traffic on every route x status class
  (1xx..5xx) and in-kernel histograms for every route x class: counted per family.
  Pure (a stand-in kernel source), so it runs without BPF too.

Rules: every load is bounded by a count or a duration; the netns pair is removed at the
end, even on failure; needs root and bcc (scripts/setup-bpf.sh), else it says why and
exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PP_PORT, BULK_PORT = 7101, 7102
REQ = b"GET /bench/path HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: b\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


# ---- traffic roles (run inside a namespace with `ip netns exec`) ----

def role_pp_server(host: str) -> None:
    ls = socket.create_server((host, PP_PORT), backlog=8)
    while True:
        c, _ = ls.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                c.sendall(RESP)
        finally:
            c.close()


def role_bulk_server(host: str) -> None:
    ls = socket.create_server((host, BULK_PORT), backlog=8)
    buf = bytearray(1 << 20)
    while True:
        c, _ = ls.accept()
        n = 0
        while True:
            k = c.recv_into(buf)
            if not k:
                break
            n += k
        c.sendall(str(n).encode())
        c.close()


def role_pp_client(host: str, seconds: float) -> None:
    s = socket.create_connection((host, PP_PORT))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    n = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        for _ in range(100):
            s.sendall(REQ)
            s.recv(4096)
        n += 100
    print(json.dumps({"rt_per_s": n / (time.monotonic() - t0)}))


def role_bulk_client(host: str, mib: int) -> None:
    s = socket.create_connection((host, BULK_PORT))
    chunk = b"\0" * (1 << 20)
    t0 = time.monotonic()
    for _ in range(mib):
        s.sendall(chunk)
    s.shutdown(socket.SHUT_WR)
    s.recv(64)
    print(json.dumps({"mib_per_s": mib / (time.monotonic() - t0)}))


# ---- benchmark ----

class ProgStats:
    """Kernel run-time statistics of a BPF program while this object lives:
    BPF_ENABLE_STATS (stats end when its fd is closed, so nothing global is left on),
    read through BPF_OBJ_GET_INFO_BY_FD (struct bpf_prog_info: run_time_ns at 192,
    run_cnt at 200)."""

    def __init__(self) -> None:
        import ctypes

        self._c = ctypes
        self._libc = ctypes.CDLL(None, use_errno=True)
        attr = ctypes.create_string_buffer(struct.pack("<I", 0) + bytes(60))  # BPF_STATS_RUN_TIME
        self.fd = self._libc.syscall(321, 32, attr, 64)  # BPF_ENABLE_STATS
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "BPF_ENABLE_STATS")

    def read(self, prog_fd: int) -> tuple[str, int, int]:
        c = self._c
        info = c.create_string_buffer(256)
        attr = c.create_string_buffer(struct.pack("<IIQ", prog_fd, 256, c.addressof(info)) + bytes(48))
        if self._libc.syscall(321, 15, attr, 64) != 0:  # BPF_OBJ_GET_INFO_BY_FD
            raise OSError(c.get_errno(), "BPF_OBJ_GET_INFO_BY_FD")
        raw = info.raw
        name = raw[64:80].split(b"\0")[0].decode()
        run_ns, cnt = struct.unpack_from("<QQ", raw, 192)
        return name, run_ns, cnt

    def close(self) -> None:
        os.close(self.fd)


def _ns_run(ns: str, *args: str, timeout: float = 60) -> dict:  # type: ignore[type-arg]
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, *args],
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode:
        raise RuntimeError(p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


def build_flood() -> str:
    out = Path(tempfile.gettempdir()) / f"rauta-xdp-flood-{os.getpid()}"
    subprocess.run(["cc", "-O2", "-o", str(out), str(REPO / "bench" / "xdp_flood.c")], check=True)
    return str(out)


def templates(net, d: Path) -> tuple[str, str, int, int]:  # type: ignore[no-untyped-def]
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    foreign = "02:00:5e:00:00:01"
    req = Ether(src=net.client_mac, dst=foreign) / IP(src=net.client_v4, dst=net.server_v4) / TCP(
        sport=1024, dport=8080, flags="PA") / Raw(REQ)
    resp = Ether(src=net.server_mac, dst=foreign) / IP(src=net.server_v4, dst=net.client_v4) / TCP(
        sport=8080, dport=1024, flags="PA") / Raw(RESP)
    (d / "req").write_bytes(bytes(req))
    (d / "resp").write_bytes(bytes(resp))
    return str(d / "req"), str(d / "resp"), 34, 34


def bench_events(transport: str, rate: int, seconds: float, flood: str) -> dict:  # type: ignore[type-arg]
    from rauta.observe import decode
    from rauta.observe.kernel import KernelObserver
    from tests.e2e.xdpnet import VethPair

    res: dict = {"transport": transport}  # type: ignore[type-arg]
    with VethPair.create() as net, tempfile.TemporaryDirectory() as td:
        t0 = time.monotonic()
        obs = KernelObserver(transport=transport, ring_mib=32)  # type: ignore[arg-type]
        obs.attach(net.server_if, net.server_ns)
        obs.attach(net.client_if, net.client_ns)
        res["startup_s"] = round(time.monotonic() - t0, 3)
        stats = ProgStats()
        try:
            rq, rs, oq, op = templates(net, Path(td))
            pairs = int(rate * seconds)
            p = subprocess.Popen([flood, f"/run/netns/{net.client_ns}", net.client_if,
                                  f"/run/netns/{net.server_ns}", net.server_if, rq, rs,
                                  str(pairs), str(rate), str(oq), str(op)],
                                 stdout=subprocess.PIPE, text=True)
            got = 0
            sample: list = []  # type: ignore[type-arg]
            cpu0 = time.process_time()
            deadline = time.monotonic() + seconds * 4 + 10
            while p.poll() is None and time.monotonic() < deadline:
                arrays, others = obs.poll_raw(10)
                got += sum(len(a) for a in arrays) + sum(1 for o in others if o[:1] == b"\x01")
                if len(sample) < 20 and arrays:
                    sample.append(arrays[0])
            if p.poll() is None:
                p.kill()
            out = (p.communicate(timeout=10)[0] or "").split()
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                arrays, others = obs.poll_raw(10)
                got += sum(len(a) for a in arrays) + sum(1 for o in others if o[:1] == b"\x01")
            cpu = time.process_time() - cpu0
            name, run_ns, run_cnt = stats.read(obs._prog.fd)
            res["xdp_prog"] = name
            res["xdp_ns_per_packet"] = round(run_ns / max(1, run_cnt), 1)
            res["xdp_runs"] = run_cnt
            c = obs.counters()
            hist_total = sum(sum(v) for v in obs.histograms().values())
            sent, elapsed = int(out[1]), float(out[2])
            # got counts HTTP records only (connect records from elsewhere may arrive too)
            res.update(pairs_sent=sent, send_seconds=round(elapsed, 3),
                       offered_pairs_per_s=round(sent / elapsed), events_received=got,
                       events_per_s=round(got / elapsed), requests=c["requests"],
                       paired=c["paired"], ring_drops=c["ring_drops"], perf_lost=c["perf_lost"],
                       unpaired=c["unpaired"], overwritten=c["overwritten"],
                       histogram_total=hist_total, consumer_cpu_s=round(cpu, 2),
                       sender_failed=int(out[4]))
            res["lost_fraction"] = (c["ring_drops"] + c["perf_lost"]) / max(1, c["paired"])
            res["histogram_equals_paired"] = hist_total == c["paired"]
            res["received_plus_lost_equals_paired"] = got + c["ring_drops"] + c["perf_lost"] == c["paired"]
            n = sum(len(a) for a in sample)
            if n:
                t = time.perf_counter()
                for a in sample:
                    decode.http_events(a)
                res["decode_events_per_s"] = round(n / (time.perf_counter() - t))
        finally:
            stats.close()
            obs.close()
    return res


FLOOR_PROG = b"int xdp_floor(struct xdp_md *ctx) { return XDP_PASS; }"


def _added_us(none_rate: float, rate: float) -> float:
    """Microseconds added per operation: 1/rate - 1/none_rate."""
    return round(1e6 / rate - 1e6 / none_rate, 3)


def bench_overhead(runs: int, pp_s: float, bulk_mib: int) -> dict:  # type: ignore[type-arg]
    """Traffic with and without the observer, as medians of ``runs`` interleaved runs.

    Configurations: ``none``; ``floor``, a program that only returns XDP_PASS, attached the
    same way (generic, both ends): what generic XDP costs before any line of the observer
    runs; ``hook``, the observer with its ring not read; ``hook+consumer``, the same with
    a reader thread. BPF run-time statistics add two clock reads per program run, so they
    are on only in a separate pass after the ratio runs (``xdp_ns_per_packet``)."""
    from bcc import BPF

    from rauta.observe.kernel import KernelObserver
    from rauta.observe.xdplink import attach_xdp
    from tests.e2e.xdpnet import VethPair

    out: dict = {}  # type: ignore[type-arg]
    with VethPair.create() as net:
        servers = [subprocess.Popen(["ip", "netns", "exec", net.server_ns, sys.executable, __file__,
                                     "--role", r, net.server_v4], stdout=subprocess.DEVNULL)
                   for r in ("pp-server", "bulk-server")]
        obs = KernelObserver(transport="ring", ring_mib=32)
        floor = BPF(text=FLOOR_PROG)
        floor_fd = floor.load_func(b"xdp_floor", BPF.XDP).fd
        ends = [(net.server_if, net.server_ns), (net.client_if, net.client_ns)]
        stop = threading.Event()
        consumed = [0]

        def consumer() -> None:
            while not stop.is_set():
                arrays, others = obs.poll_raw(10)
                consumed[0] += sum(len(a) for a in arrays) + len(others)

        def pp() -> float:
            return float(_ns_run(net.client_ns, "--role", "pp-client", net.server_v4, str(pp_s))["rt_per_s"])

        def bulk() -> float:
            return float(_ns_run(net.client_ns, "--role", "bulk-client", net.server_v4,
                                 str(bulk_mib))["mib_per_s"])

        try:
            time.sleep(0.5)
            order = ["none", "floor", "hook", "hook+consumer"]
            figures: dict[str, dict[str, list[float]]] = {k: {"pp": [], "bulk": []} for k in order}
            for r in range(runs):
                for cfg in order[r % 4:] + order[: r % 4]:  # rotated: no config always first
                    th = None
                    floor_links = []
                    if cfg == "floor":
                        floor_links = [attach_xdp(floor_fd, i, n) for i, n in ends]
                    elif cfg != "none":
                        for i, n in ends:
                            obs.attach(i, n)
                    if cfg == "hook+consumer":
                        stop.clear()
                        th = threading.Thread(target=consumer, daemon=True)
                        th.start()
                    try:
                        figures[cfg]["pp"].append(pp())
                        figures[cfg]["bulk"].append(bulk())
                    finally:
                        if th is not None:
                            stop.set()
                            th.join()
                        for fd in floor_links:
                            os.close(fd)
                        obs.detach_all()
                        obs.poll_raw(0)  # empty the ring between runs
            for cfg, f in figures.items():
                out[cfg] = {k: {"median": round(statistics.median(v), 1), "runs": [round(x, 1) for x in v]}
                            for k, v in f.items()}
            none_pp, none_bulk = out["none"]["pp"]["median"], out["none"]["bulk"]["median"]
            for cfg in ("floor", "hook", "hook+consumer"):
                out[cfg]["pp_ratio"] = round(out[cfg]["pp"]["median"] / none_pp, 3)
                out[cfg]["bulk_ratio"] = round(out[cfg]["bulk"]["median"] / none_bulk, 3)
                out[cfg]["us_added_per_round_trip"] = _added_us(none_pp, out[cfg]["pp"]["median"])
            # The program's own cost, in a pass of its own (statistics on).
            stats = ProgStats()
            try:
                for i, n in ends:
                    obs.attach(i, n)
                c0 = obs.counters()
                pp()
                bulk()
                _name, run_ns, run_cnt = stats.read(obs._prog.fd)
                c1 = obs.counters()
            finally:
                stats.close()
                obs.detach_all()
            out["xdp_ns_per_packet"] = round(run_ns / max(1, run_cnt), 1)
            out["xdp_runs"] = run_cnt
            out["stats_pass_http_packets"] = (c1["requests"] - c0["requests"]) + (c1["responses"] - c0["responses"])
            out["counters_after"] = obs.counters()
            out["consumed"] = consumed[0]
        finally:
            obs.close()
            floor.cleanup()
            for s in servers:
                s.kill()
                s.wait(10)
    return out


def _test_run(prog_fd: int, frame: bytes, repeat: int = 1) -> int:
    """BPF_PROG_TEST_RUN of ``frame`` (``repeat`` times): the kernel's mean ns per run."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(frame, len(frame))
    out = ctypes.create_string_buffer(len(frame) + 256)
    attr = ctypes.create_string_buffer(struct.pack("<IIIIQQII", prog_fd, 0, len(frame), len(out),
                                                   ctypes.addressof(buf), ctypes.addressof(out),
                                                   repeat, 0) + bytes(40))
    if libc.syscall(321, 10, attr, 80) != 0:  # BPF_PROG_TEST_RUN
        raise OSError(ctypes.get_errno(), "BPF_PROG_TEST_RUN")
    retval, = struct.unpack_from("<I", attr.raw, 4)
    if retval != 2:  # XDP_PASS
        raise RuntimeError(f"XDP returned {retval}")
    return struct.unpack_from("<I", attr.raw, 36)[0]


def cost_frames() -> dict[str, bytes]:
    """Ethernet frames of each packet kind the program sees on ping-pong and bulk traffic."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    c, s = "10.77.0.1", "10.77.0.2"

    def fr(src: str, dst: str, sp: int, dp: int, flags: str, payload: bytes = b"") -> bytes:
        pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src, dst=dst) / TCP(
            sport=sp, dport=dp, flags=flags, seq=1000)
        return bytes(pkt / Raw(payload) if payload else pkt)

    return {"ack": fr(c, s, 40000, 8080, "A"),
            "syn": fr(c, s, 40000, 8080, "S"),
            "data": fr(c, s, 40000, 8080, "A", b"\0" * 1448),
            "request": fr(c, s, 40000, 8080, "PA", REQ),
            "response": fr(s, c, 8080, 40000, "PA", RESP)}


def bench_cost(n: int) -> dict:  # type: ignore[type-arg]
    """The program's own cost per packet kind, from BPF_PROG_TEST_RUN (kernel-timed, no
    traffic, so not disturbed by the other load much): pure ACK, SYN, bulk data (1448 bytes
    not HTTP), and request/response pairs (each request stored, each response paired,
    histogram updated and the record output: the full event path, filter open)."""
    from rauta.observe.kernel import KernelObserver

    fr = cost_frames()
    res: dict = {"n": n}  # type: ignore[type-arg]
    with KernelObserver(transport="ring", ring_mib=32) as obs:
        fd = obs._prog.fd
        for kind in ("ack", "syn", "data"):
            res[f"{kind}_ns"] = round(statistics.median(
                _test_run(fd, fr[kind], 1000) for _ in range(max(1, n // 1000))), 1)
        # The same per single run, as the request/response figures are: their floor.
        res["ack_single_run_ns"] = round(sum(_test_run(fd, fr["ack"]) for _ in range(n)) / n, 1)
        rq = rs = 0
        for i in range(n):
            rq += _test_run(fd, fr["request"])
            rs += _test_run(fd, fr["response"])
            if i % 4096 == 4095:
                obs.poll_raw(0)
        obs.poll_raw(0)
        res["request_ns"] = round(rq / n, 1)
        res["response_ns"] = round(rs / n, 1)
        res["pingpong_mean_ns"] = round((rq + rs) / (2 * n), 1)
        c = obs.counters()
        res["paired"] = c["paired"]
        res["paired_ok"] = c["paired"] == n and c["requests"] == n
    return res


class _FakeKernel:
    """A kernel source with histograms for every (route id, class) of ``ids``."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def watch(self, endpoints) -> None:  # type: ignore[no-untyped-def]
        self.ids = sorted({i for i in endpoints.values() if i})

    def set_flow_route(self, client, server, route_id) -> None:  # type: ignore[no-untyped-def]
        pass

    def poll(self, timeout_ms: int) -> list:  # type: ignore[type-arg]
        return []

    def counters(self) -> dict[str, int]:
        from rauta.observe import decode

        return {name: 0 for name in decode.COUNTERS} | {"perf_lost": 0, "lost_ringbuf": 0}

    def histograms(self) -> dict[tuple[int, int], list[int]]:
        from rauta.observe import decode

        return {(i | decode.ROUTE_FROM_WATCH, c): [1] * decode.NBUCKETS
                for i in self.ids for c in range(1, 6)}

    def close(self) -> None:
        pass


def bench_series(routes: int = 1000) -> dict:  # type: ignore[type-arg]
    from rauta.model.config import (
        Backend,
        ListenerRoutes,
        Match,
        PathMatch,
        PortConfig,
        RouterConfig,
        Rule,
    )
    from rauta.model.config import Endpoint as MEndpoint
    from rauta.observe import decode
    from rauta.observe.events import Endpoint, HttpEvent
    from rauta.observe.output import Metrics
    from rauta.observe.pipeline import Pipeline

    rules = tuple(
        Rule(route=f"ns{i % 50}/r{i}", rule_index=0, match_index=0, hostname="",
             match=Match(path=PathMatch(type="PathPrefix", value=f"/r{i}")),
             backends=(Backend(name=f"ns{i % 50}/svc{i}:80", weight=1,
                               endpoints=(MEndpoint(address=f"10.9.{i // 250}.{i % 250 + 1}",
                                                    port=8080),)),))
        for i in range(routes))
    cfg = RouterConfig(ports=(PortConfig(port=80, protocol="HTTP", listeners=(
        ListenerRoutes(gateway="gw/gw", listener="l", hostname="", rules=rules),)),))
    kernel = _FakeKernel()
    metrics = Metrics()
    pipe = Pipeline("xdp", config=cfg, kernel=kernel, metrics=metrics,
                    bucket_bounds=decode.bucket_bounds())
    pipe.update_config(cfg)
    t = 1_000_000_000
    evs = []
    for i, r in enumerate(rules):
        ep = r.backends[0].endpoints[0]
        for k, status in enumerate((101, 200, 302, 404, 503)):
            t += 1000
            evs.append(HttpEvent("xdp", "upstream", Endpoint("10.8.0.1", 40000 + k),
                                 Endpoint(ep.address, ep.port), "GET", f"/r{i}/x{k}", 0, False,
                                 status, t - 500_000, t))
    pipe.process(evs)
    families: dict[str, int] = {}
    for fam in metrics.registry.collect():
        n = sum(1 for smp in fam.samples if smp.name.startswith("rauta_observer_"))
        if n:
            families[fam.name] = n
    total = sum(families.values())
    return {"routes": routes, "status_classes": 5, "events": len(evs), "series_total": total,
            "per_family": dict(sorted(families.items())),
            "series_per_route": round(total / routes, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--role")
    ap.add_argument("args", nargs="*")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "observer.json"))
    ap.add_argument("--rate", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="1 s of events, 3 overhead runs")
    ap.add_argument("--only", default="series,events,cost,overhead",
                    help="comma-separated parts to run (default all: series,events,cost,overhead)")
    ap.add_argument("--cost-n", type=int, default=20000, help="request/response pairs test-run")
    a = ap.parse_args()
    if a.role:
        fn = {"pp-server": role_pp_server, "bulk-server": role_bulk_server,
              "pp-client": lambda h, s: role_pp_client(h, float(s)),
              "bulk-client": lambda h, m: role_bulk_client(h, int(m))}[a.role]
        fn(*a.args)
        return 0
    from rauta.observe.kernel import bpf_available

    only = {x.strip() for x in a.only.split(",") if x.strip()}
    unknown = only - {"series", "events", "cost", "overhead"}
    if unknown:
        ap.error(f"--only: unknown parts {sorted(unknown)}")
    results: dict = {"machine": {"cpus": os.cpu_count(), "load": os.getloadavg()},  # type: ignore[type-arg]
                     "parts": sorted(only)}
    if "series" in only:
        series = bench_series(1000)
        results["series"] = series
        print(json.dumps(series), flush=True)
        print(f"series at 1,000 routes: {series['series_total']} rauta_observer_* series "
              f"({series['series_per_route']} per route); per family {series['per_family']}")
    reason = bpf_available()
    if reason:
        print(f"bench_observer: kernel parts skipped: {reason}")
        return 0
    if a.quick:
        a.seconds, a.runs = 1.0, 3
    if "events" in only:
        flood = build_flood()
        try:
            for tr in ("ring", "perf"):
                r = bench_events(tr, a.rate, a.seconds, flood)
                results[f"events_{tr}"] = r
                print(json.dumps(r), flush=True)
        finally:
            os.unlink(flood)
        results["startup_s"] = {tr: results[f"events_{tr}"]["startup_s"] for tr in ("ring", "perf")}
    if "cost" in only:
        results["cost"] = bench_cost(a.cost_n)
        print(json.dumps(results["cost"]), flush=True)
    if "overhead" in only:
        results["overhead"] = bench_overhead(a.runs, 1.0, 1024)
        print(json.dumps(results["overhead"]), flush=True)
    results["machine"]["load_after"] = os.getloadavg()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"load average before {results['machine']['load']}, after {results['machine']['load_after']}")
    if "events" in only:
        print(f"startup (compile+load+attach): ring {results['startup_s']['ring']} s, "
              f"perf {results['startup_s']['perf']} s")
        for tr in ("ring", "perf"):
            r = results[f"events_{tr}"]
            print(f"{tr}: {r['events_per_s']} events/s received of {r['offered_pairs_per_s']} pairs/s offered; "
                  f"lost {r['ring_drops'] + r['perf_lost']}/{r['paired']}; histogram {r['histogram_total']} "
                  f"= paired {r['paired']} (sent {r['pairs_sent']})")
        print(f"XDP program: {results['events_ring']['xdp_ns_per_packet']} ns/packet in the flood")
    if "cost" in only:
        c = results["cost"]
        print(f"XDP program cost (test run): ack {c['ack_ns']} ns, syn {c['syn_ns']} ns, "
              f"bulk data {c['data_ns']} ns, ack as one run {c['ack_single_run_ns']} ns, request {c['request_ns']} ns, response {c['response_ns']} ns "
              f"(paired {c['paired']}/{c['n']})")
    if "overhead" in only:
        o = results["overhead"]
        print(f"XDP program: {o['xdp_ns_per_packet']} ns/packet on real TCP traffic")
        for cfg in ("floor", "hook", "hook+consumer"):
            print(f"{cfg}: ping-pong ratio {o[cfg]['pp_ratio']} "
                  f"(+{o[cfg]['us_added_per_round_trip']} us per round trip), "
                  f"bulk ratio {o[cfg]['bulk_ratio']}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
