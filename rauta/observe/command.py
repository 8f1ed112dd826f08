"""``rauta observe``: the kernel observer on its own, without a cluster or a proxy.

Role: the standalone command. It compiles and loads ``bpf/observer.c``
(``rauta.observe.kernel.KernelObserver``), attaches the XDP program through BPF links to
``--iface`` (inside ``--netns``) and to the other end of each veth it finds, and prints
one JSON line per captured event (``output.event_json``: ``http`` request/response pairs
and ``connect`` events), followed in the same stream by the anomalies the ``Pipeline``
(``xdp`` mode) finds in them (``output.anomaly_json``).

Rules:
- Without a cluster there are no EndpointSlices. By default every endpoint is watched:
  the kernel's filter switch (``config[0]`` in ``bpf/observer.c``) is set to 2, open
  (the program loads closed: watched endpoints only, and none yet), so XDP
  reports every HTTP/1.x exchange it sees and the tracepoints every TCP connect in every
  namespace (they are global). ``--watch IP:PORT[=SERVICE]`` (repeatable) fills the
  watched-endpoint map instead and turns the filter on; the optional name is reported
  as the Service of the endpoint's events.
- Where BPF cannot be used, one line on stderr names the reason (``bpf_available()``) and
  the exit code is 3; a bad option (no such interface or namespace, a bad ``--watch``) is
  exit 2. Never a traceback.
- SIGINT and SIGTERM stop the loop; the links are closed on the way out (the kernel
  detaches the program; it would also on SIGKILL, a link dies with its process).
- Bounded runs for tests and scripts: ``--duration S`` and ``--count N`` (events).
- ``--metrics HOST:PORT`` serves the pipeline's registry (``rauta_observer_*``, the
  kernel's histograms and counters included) over HTTP, as the observer DaemonSet in
  ``deploy/`` expects.
- ``attached ...`` on stderr means the program is on every interface listed; at exit a
  last stderr line gives the kernel's counters as JSON.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import IO, TYPE_CHECKING

import click

from rauta.observe.events import ConnectEvent, Endpoint, Event, HttpEvent

if TYPE_CHECKING:
    from rauta.observe.kernel import KernelObserver
    from rauta.observe.output import JsonLines
    from rauta.observe.pipeline import Pipeline

EXIT_USAGE = 2
EXIT_NO_BPF = 3


def parse_watch(value: str) -> tuple[Endpoint, str]:
    """``IP:PORT``, ``[IPv6]:PORT`` or either with ``=SERVICE``; ValueError when not."""
    spec, _, service = value.partition("=")
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not IP:PORT")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{value!r}: {host!r} is not an IP address") from None
    return Endpoint(str(ip), int(port)), service.strip()


def _check_watch(_ctx: object, _param: object, values: tuple[str, ...]
                 ) -> tuple[tuple[Endpoint, str], ...]:
    try:
        return tuple(parse_watch(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _name(ev: Event, services: dict[Endpoint, str]) -> Event:
    svc = services.get(ev.server)
    if not svc or ev.service:
        return ev
    return dataclasses.replace(ev, service=svc)


def _say(msg: str) -> None:
    click.echo(f"rauta: observe: {msg}", err=True)


def _check_metrics(_ctx: object, _param: object, value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT (e.g. 0.0.0.0:9902)")
    return host.strip("[]") or "0.0.0.0", int(port)


def run(ifaces: Sequence[str], netns: str | None, watch: Sequence[tuple[Endpoint, str]],
        transport: str, xdp_mode: str, window: float, out: IO[str], duration: float | None,
        count: int | None, peers: bool, ring_mib: int,
        metrics: tuple[str, int] | None = None) -> int:
    """The command's body; returns the exit code."""
    from rauta.observe.detect import DetectorSettings
    from rauta.observe.kernel import KernelObserver, bpf_available, bucket_bounds
    from rauta.observe.output import JsonLines
    from rauta.observe.pipeline import Pipeline
    from rauta.observe.xdplink import iface_exists

    reason = bpf_available()
    if reason:
        _say(f"BPF unavailable: {reason}")
        return EXIT_NO_BPF
    for iface in ifaces:
        missing = iface_exists(iface, netns)
        if missing:
            _say(missing)
            return EXIT_USAGE
    stop = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        t0 = time.monotonic()
        try:
            obs = KernelObserver(transport=transport, ring_mib=ring_mib,  # type: ignore[arg-type]
                                 xdp_mode=xdp_mode,  # type: ignore[arg-type]
                                 filter=True if watch else None)
        except Exception as exc:  # bcc raises plain Exception on a compile/load failure
            _say(f"cannot load bpf/observer.c: {str(exc).splitlines()[0] if str(exc) else exc!r}")
            return EXIT_NO_BPF
        try:
            if watch:  # before the attach: nothing unwatched is reported
                obs.watch({ep: i + 1 for i, (ep, _) in enumerate(watch)})
            try:
                ends = obs.attach_ends(ifaces, netns, peers=peers)
            except OSError as exc:
                _say(f"cannot attach: {exc.strerror or exc}")
                return EXIT_NO_BPF
            services = {ep: name for ep, name in watch if name}
            listed = ", ".join(f"{i}" + (f" (netns {n})" if n else "") for i, n in ends)
            _say(f"attached {xdp_mode} XDP to {listed} in {time.monotonic() - t0:.2f} s; "
                 f"transport {transport}; watching "
                 + (", ".join(f"{e.ip}:{e.port}" for e, _ in watch) if watch
                    else "every endpoint (kernel filter off)"))
            if len(ends) == 1 and peers:
                _say("no veth peer found: only traffic arriving on the given end is seen "
                     "(name both ends with --iface to pair requests with responses)")
            lines = JsonLines(out)
            pipe = Pipeline("xdp", kernel=obs, json_out=lines, bucket_bounds=bucket_bounds(),
                            settings=DetectorSettings(window_ns=int(window * 1e9)))
            if metrics is not None:
                from prometheus_client import start_http_server

                try:
                    start_http_server(metrics[1], metrics[0], registry=pipe.metrics.registry)
                except OSError as exc:
                    _say(f"cannot serve metrics on {metrics[0]}:{metrics[1]}: "
                         f"{exc.strerror or exc}")
                    return EXIT_USAGE
                _say(f"metrics on http://{metrics[0]}:{metrics[1]}/metrics")
            printed = _loop(obs, pipe, lines, services, stop, duration, count)
            lines.write(pipe.detector.flush())
            counters = obs.counters()
        finally:
            obs.close()
        click.echo(json.dumps({"printed": printed, "counters": counters},
                              separators=(",", ":")), err=True)
        return 0
    except BrokenPipeError:
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _loop(obs: KernelObserver, pipe: Pipeline, lines: JsonLines,
          services: dict[Endpoint, str], stop: threading.Event, duration: float | None,
          count: int | None) -> int:
    """Poll, print, analyse until stopped, ``duration`` passed or ``count`` printed."""
    end = time.monotonic() + duration if duration is not None else None
    printed = 0
    while not stop.is_set():
        left = 0.1 if end is None else min(0.1, end - time.monotonic())
        if left <= 0:
            break
        evs: list[Event] = [_name(e, services) for e in obs.poll(int(left * 1000))
                            if isinstance(e, HttpEvent | ConnectEvent)]
        if count is not None:
            evs = evs[: count - printed]
        lines.write_events(evs)
        printed += len(evs)
        pipe.process(evs)
        if count is not None and printed >= count:
            break
    return printed


@click.command("observe")
@click.option("--iface", "ifaces", multiple=True, required=True, metavar="IF",
              help="Interface to attach the XDP program to (repeatable). The other end of "
                   "a veth is found and attached too (see --no-peer).")
@click.option("--netns", default=None, metavar="NS",
              help="Network namespace of the --iface interfaces: a name (ip netns) or a "
                   "path (/proc/PID/ns/net). The loader stays in its own namespace.")
@click.option("--no-peer", is_flag=True,
              help="Attach to the named interfaces only, not to their veth peers.")
@click.option("--watch", multiple=True, callback=_check_watch, metavar="IP:PORT[=SERVICE]",
              help="Report only these server endpoints (repeatable; the kernel filters). "
                   "Default: every endpoint.")
@click.option("--transport", type=click.Choice(["ring", "perf"]), default="ring",
              show_default=True,
              help="Kernel to user space: one ring buffer read in batches, or per-CPU perf "
                   "buffers (more CPU, no drops at 100k events/s).")
@click.option("--mode", "xdp_mode", type=click.Choice(["generic", "native"]),
              default="generic", show_default=True,
              help="XDP mode: generic (skb; right for veth) or native (driver).")
@click.option("--ring-mib", default=32, show_default=True,
              type=click.Choice(["1", "2", "4", "8", "16", "32", "64"]),
              help="Ring (or per-CPU perf buffer) size in MiB.")
@click.option("--window", default=10.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="The anomaly detectors' window in seconds.")
@click.option("--out", default="-", show_default=True, metavar="PATH",
              help="Where the JSON lines go ('-' is stdout; a file is appended to).")
@click.option("--metrics", default=None, callback=_check_metrics, metavar="HOST:PORT",
              help="Serve the rauta_observer_* series (kernel histograms and counters "
                   "included) on http://HOST:PORT/metrics.")
@click.option("--duration", default=None, type=click.FloatRange(0, min_open=True),
              metavar="S", help="Stop after S seconds.")
@click.option("--count", default=None, type=click.IntRange(1), metavar="N",
              help="Stop after N events.")
def observe_cmd(ifaces: tuple[str, ...], netns: str | None, no_peer: bool,
                watch: tuple[tuple[Endpoint, str], ...], transport: str, xdp_mode: str,
                ring_mib: str, window: float, out: str, metrics: tuple[str, int] | None,
                duration: float | None, count: int | None) -> None:
    """Print the HTTP exchanges and TCP connects the kernel sees on an interface.

    Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) and bcc (scripts/setup-bpf.sh).
    One JSON line per event (type http or connect), and anomaly lines (slow_response,
    error_spike, connect_failure, resolved) in the same stream."""
    from rauta.observe.serving import open_out

    try:
        stream = open_out(out)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {out}: {exc.strerror}",
                                 param_hint="--out") from None
    try:
        code = run(ifaces, netns, watch, transport, xdp_mode, window, stream, duration, count,
                   not no_peer, int(ring_mib), metrics)
    finally:
        if stream is not sys.stdout:
            stream.close()
    sys.exit(code)
