"""The kernel observer: loads bpf/observer.c with bcc, attaches it, reads its events.

Role: the capture side of ``rauta observe``. ``KernelObserver`` compiles the XDP
program and the connect tracepoints once, attaches the one XDP program to any number
of interfaces (all sharing its maps: the request/response flow map must see both veth
ends), keeps the watched-endpoint and flow→route maps, and turns the kernel's records
into ``events.HttpEvent`` / ``events.ConnectEvent`` (``rauta.observe.decode``).
``bpf_available()`` says why BPF cannot be used here, for tests to skip with.

Rules:
- XDP attaches through BPF links (``rauta.observe.xdplink``): the program leaves the
  interface when this process dies. The loader stays in the root namespace and enters
  a target namespace only around the attach.
- Transports: ``ring`` (one BPF ring buffer, read in batches through mmap by
  ``rauta.observe.ringbuf``) or ``perf`` (bcc's per-CPU perf buffers). Every lost
  record is counted: ``ring_drops`` in the kernel, ``perf_lost`` here.
- Counters and histograms are read from per-CPU maps and summed; they are exact even
  when events were dropped.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from rauta.observe import decode
from rauta.observe.events import ConnectEvent, Endpoint, HttpEvent
from rauta.observe.ringbuf import RingReader, open_ring
from rauta.observe.xdplink import attach_xdp, veth_peer

SOURCE = Path(__file__).resolve().parents[2] / "bpf" / "observer.c"

POLL_STEP_MS = 5
FILTER_OFF = 2  # config[0] value that reports every endpoint (bpf/observer.c)
PERF_WAKEUP = 64

Transport = Literal["ring", "perf"]
XdpMode = Literal["generic", "native"]
RawBatch = tuple[list[Any], list[bytes]]


def bpf_available() -> str | None:
    """None when the observer can be loaded here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "not root (BPF needs CAP_BPF/CAP_SYS_ADMIN)"
    try:
        import bcc  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as e:
        return f"bcc not importable ({e}); run scripts/setup-bpf.sh"
    build = Path("/lib/modules") / os.uname().release / "build"
    if not build.exists():
        return f"no kernel headers at {build}; run scripts/setup-bpf.sh"
    if not Path("/sys/kernel/tracing/events/sock/inet_sock_set_state").exists():
        return "tracefs not mounted at /sys/kernel/tracing; run scripts/setup-bpf.sh"
    try:
        ctypes.CDLL("libbpf.so.1")
    except OSError as e:
        return f"libbpf.so.1 not loadable ({e})"
    if not SOURCE.exists():
        return f"{SOURCE} missing"
    return None


def bucket_bounds() -> tuple[float, ...]:
    """Upper bounds in seconds of the histogram buckets (the last is +Inf)."""
    return decode.bucket_bounds()


class KernelObserver:
    """One loaded observer program: attach, watch, poll, read metrics, close."""

    def __init__(
        self,
        transport: Transport = "ring",
        ring_mib: int = 32,
        xdp_mode: XdpMode = "generic",
        flow_entries: int = 16384,
        filter: bool | None = None,
    ) -> None:
        if transport not in ("ring", "perf"):
            raise ValueError(f"transport must be 'ring' or 'perf', not {transport!r}")
        if ring_mib < 1 or ring_mib & (ring_mib - 1):
            raise ValueError("ring_mib must be a power of two")
        reason = bpf_available()
        if reason:
            raise RuntimeError(f"BPF unavailable: {reason}")
        from bcc import BPF

        self.transport = transport
        self.xdp_mode = xdp_mode
        self._filter_forced = filter
        self._pages = ring_mib * 1024 * 1024 // os.sysconf("SC_PAGE_SIZE")
        cflags = [
            "-Wno-unused-function",
            f"-DRING_PAGES={self._pages}",
            f"-DFLOW_ENTRIES={flow_entries}",
        ]
        if transport == "perf":
            cflags.append("-DUSE_PERF")
        self._bpf: Any = BPF(src_file=str(SOURCE).encode(), cflags=cflags)
        self._prog = self._bpf.load_func(b"xdp_observer", BPF.XDP)
        self._links: list[tuple[str, str | None, int]] = []
        self._watch_keys: set[bytes] = set()
        self._perf_raw: list[bytes] = []
        self.perf_lost = 0
        self._ring: RingReader | None = None
        self._maps: tuple[Any, Any] | None = None
        events = self._bpf[b"events"]
        if transport == "ring":
            size = self._pages * os.sysconf("SC_PAGE_SIZE")
            self._ring, cons, prod = open_ring(events.map_fd, size, (decode.HTTP_SIZE, decode.HTTP_DTYPE))
            self._maps = (cons, prod)
        else:
            def on_event(_cpu: int, data: Any, size: int) -> None:
                self._perf_raw.append(ctypes.string_at(data, size))

            def on_lost(n: int) -> None:
                self.perf_lost += n

            events.open_perf_buffer(on_event, page_cnt=self._pages, lost_cb=on_lost,
                                   wakeup_events=PERF_WAKEUP)
        self._set_filter()

    # ---- attach ----

    def attach(self, iface: str, netns: str | None = None) -> None:
        """Attach the XDP program to ``iface`` (in ``netns``: a name or a path)."""
        fd = attach_xdp(self._prog.fd, iface, netns, self.xdp_mode)
        self._links.append((iface, netns, fd))

    def attach_ends(self, ifaces: Iterable[str], netns: str | None = None,
                    peers: bool = True) -> list[tuple[str, str | None]]:
        """Attach to each of ``ifaces`` (in ``netns``) and, with ``peers``, to its veth
        peer where ``xdplink.veth_peer`` finds it; returns the (iface, netns) attached,
        each once. XDP sees only what arrives on an end, so a request/response pair needs
        both ends of the veth it crosses."""
        ends: list[tuple[str, str | None]] = []
        for iface in ifaces:
            ends.append((iface, netns))
            peer = veth_peer(iface, netns) if peers else None
            if peer is not None:
                ends.append(peer)
        done: list[tuple[str, str | None]] = []
        for end in ends:
            if end not in done and end not in [(i, n) for i, n, _ in self._links]:
                self.attach(*end)
                done.append(end)
        return done

    def detach_all(self) -> None:
        for _iface, _ns, fd in self._links:
            os.close(fd)
        self._links.clear()

    # ---- maps userspace writes ----

    def watch(self, endpoints: Mapping[Endpoint, int], listeners: Iterable[Endpoint] = ()) -> None:
        """Replace the watched set: server endpoints (EndpointSlices) → id, and listeners.

        New entries are written before stale ones are removed, so an endpoint present in
        both the old and the new set is never briefly unwatched.
        """
        t = self._bpf[b"watched"]
        new: dict[bytes, bytes] = {decode.watch_key(ep): decode.watch_val(i) for ep, i in endpoints.items()}
        for ep in listeners:
            new[decode.watch_key(ep)] = decode.watch_val(0, listener=True)
        for k, v in new.items():
            t[t.Key.from_buffer_copy(k)] = t.Leaf.from_buffer_copy(v)
        for k in self._watch_keys - new.keys():
            try:
                del t[t.Key.from_buffer_copy(k)]
            except KeyError:
                pass
        self._watch_keys = set(new)
        self._set_filter()

    def _set_filter(self) -> None:
        on = self._filter_forced
        if on is None:
            on = bool(self._watch_keys)
        # config[0]: 0 (as loaded) or 1 = watched endpoints only, 2 = every endpoint. The
        # program starts closed, so nothing unwatched is recorded before this runs.
        t = self._bpf[b"config"]
        was_off = t[t.Key(0)].value == FILTER_OFF
        t[t.Key(0)] = t.Leaf(1 if on else FILTER_OFF)
        if on and was_off:
            # Connects begun while the filter was open may be to endpoints not watched.
            self._bpf[b"syns"].clear()

    def set_flow_route(self, client: Endpoint, server: Endpoint, route_id: int) -> None:
        t = self._bpf[b"flow_route"]
        t[t.Key.from_buffer_copy(decode.flow_key(client, server))] = t.Leaf(route_id & 0x7FFFFFFF)

    def clear_flow_route(self, client: Endpoint, server: Endpoint) -> None:
        t = self._bpf[b"flow_route"]
        try:
            del t[t.Key.from_buffer_copy(decode.flow_key(client, server))]
        except KeyError:
            pass

    # ---- events ----

    def poll_raw(self, timeout_ms: int = 0) -> RawBatch:
        """Undecoded records: (arrays of HTTP records, other raw records).

        The kernel does not wake the reader per record (ring: BPF_RB_NO_WAKEUP; perf:
        a wakeup every PERF_WAKEUP records): this reads what is there and, when nothing
        is, sleeps in steps of at most POLL_STEP_MS until ``timeout_ms`` has passed.
        """
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            if self._ring is not None:
                b = self._ring.read()
                arrays, others = b.arrays, b.others
            else:
                self._bpf.perf_buffer_consume()
                arrays, others = [], self._perf_raw
                self._perf_raw = []
            left = deadline - time.monotonic()
            if arrays or others or left <= 0:
                return arrays, others
            time.sleep(min(left, POLL_STEP_MS / 1000))

    def poll(self, timeout_ms: int = 0) -> list[HttpEvent | ConnectEvent]:
        """The events that arrived, waiting up to ``timeout_ms`` when there are none."""
        arrays, others = self.poll_raw(timeout_ms)
        out: list[HttpEvent | ConnectEvent] = []
        for a in arrays:
            out.extend(decode.http_events(a))
        out.extend(decode.decode_records(others))
        out.sort(key=lambda e: e.end_ns)
        return out

    # ---- metrics ----

    def counters(self) -> dict[str, int]:
        t = self._bpf[b"counters"]
        out = {name: int(sum(t[t.Key(i)])) for i, name in enumerate(decode.COUNTERS)}
        out["perf_lost"] = self.perf_lost
        # The analysis pipeline reads every "lost*" key as a transport's loss total.
        out["lost_ringbuf" if self.transport == "ring" else "lost_perf"] = (
            out["ring_drops"] + self.perf_lost)
        return out

    def histograms(self) -> dict[tuple[int, int], list[int]]:
        """(route_id, status class) → counts per bucket (``bucket_bounds()``), summed over CPUs."""
        out: dict[tuple[int, int], list[int]] = {}
        for k, per_cpu in self._bpf[b"hist"].items():
            counts = [0] * decode.NBUCKETS
            for leaf in per_cpu:
                for i in range(decode.NBUCKETS):
                    counts[i] += int(leaf.b[i])
            out[(int(k.route_id), int(k.cls))] = counts
        return dict(sorted(out.items()))

    def close(self) -> None:
        self.detach_all()
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._maps is not None:
            for m in self._maps:
                m.close()
            self._maps = None
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None

    def __enter__(self) -> KernelObserver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
