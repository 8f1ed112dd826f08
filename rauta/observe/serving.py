"""The observer inside ``rauta serve`` and ``rauta controller`` (``--observe proxy|xdp|both``).

Role: build a ``Pipeline`` for a running ``Proxy``: in ``proxy`` mode the proxy's own
upstream exchanges are the events; in ``xdp`` mode the kernel observer's (XDP on the
``--observe-iface`` interfaces and their veth peers, plus the connect tracepoints); in
``both`` the kernel's events are joined on the upstream 4-tuple with what the proxy
recorded (route, rule, backendRef, request start), and the proxy tells the kernel each
connection's route id (``set_flow_route``) so the in-kernel histograms are per route.
It hands the proxy its hook, keeps the pipeline's attribution and the kernel's
watched-endpoint map in step with the config the proxy routes with, and runs the
pipeline until stopped.

Rules:
- The command line calls ``configure`` once (``cli.observe_settings``) with the mode and
  the kernel options; ``proxy_pipeline``'s explicit parameters win over it. So the
  serve/controller call sites stay ``proxy_pipeline(proxy, registry, stream, window)``.
- ``check`` says in one line why a mode cannot run here (BPF unavailable, no interface,
  no namespace), for the command line to refuse before starting.
- The kernel program is compiled, loaded and attached in ``proxy_pipeline`` (1.5–3 s),
  before the caller serves, so nothing the proxy forwards goes unseen. Its filter is
  always on: only the RouterConfig's endpoints (from EndpointSlices) are watched, and
  an empty config watches nothing.
- Kernel polling runs in a worker thread (``Pipeline.run``); events are processed in
  bounded batches on the loop, which yields between batches.
- Anomalies go out as JSON lines (``output.anomaly_json``) to ``out`` (stdout for
  ``-``); the ``rauta_observer_*`` series (kernel ones included) join the admin
  server's registry.
- The pipeline sees each new RouterConfig within ``follow_every`` seconds (50 ms) of the
  proxy applying it (the proxy's ``config`` is compared by identity: one assignment per
  apply). Until then the kernel does not watch a new endpoint: connects to it and
  exchanges on them in that gap are not seen by the kernel.
- On stop, events still queued are processed, then the links are closed (the kernel
  detaches the program; it also would if the process died).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from prometheus_client import CollectorRegistry

from rauta.observe.detect import DetectorSettings
from rauta.observe.output import JsonLines, Metrics
from rauta.observe.pipeline import KernelSource, Pipeline
from rauta.proxy.manager import Proxy

MODES = ("proxy", "xdp", "both")
log = logging.getLogger("rauta.observe")


@dataclass(frozen=True, slots=True)
class KernelOptions:
    """Where and how the kernel observer attaches (``--observe-iface``/``-netns``)."""

    ifaces: tuple[str, ...] = ()
    netns: str | None = None
    transport: str = "ring"
    xdp_mode: str = "generic"
    peers: bool = True


@dataclass(frozen=True, slots=True)
class Configured:
    mode: str = "proxy"
    kernel: KernelOptions = KernelOptions()


_configured = Configured()


def configure(mode: str | None, kernel: KernelOptions | None = None) -> None:
    """The command line's choice, used by ``proxy_pipeline`` when not told otherwise."""
    global _configured
    _configured = Configured(mode or "proxy", kernel or KernelOptions())


def check(mode: str | None, kernel: KernelOptions) -> str | None:
    """None when ``mode`` can run with ``kernel`` here; else the reason, one line."""
    if mode not in ("xdp", "both"):
        return None
    from rauta.observe.kernel import bpf_available
    from rauta.observe.xdplink import iface_exists

    if not kernel.ifaces:
        return f"--observe {mode} needs --observe-iface (the interface toward the backends)"
    reason = bpf_available()
    if reason:
        return f"--observe {mode}: BPF unavailable: {reason}"
    for iface in kernel.ifaces:
        missing = iface_exists(iface, kernel.netns)
        if missing:
            return f"--observe-iface: {missing}"
    return None


def open_out(out: str) -> IO[str]:
    """``-`` is stdout; anything else is a file opened for appending."""
    return sys.stdout if out == "-" else open(out, "a", encoding="utf-8")  # noqa: SIM115


def load_kernel(opts: KernelOptions) -> Any:
    """A KernelObserver with its filter on, attached to ``opts.ifaces`` (and peers)."""
    from rauta.observe.kernel import KernelObserver

    obs = KernelObserver(transport=opts.transport,  # type: ignore[arg-type]
                         xdp_mode=opts.xdp_mode, filter=True)  # type: ignore[arg-type]
    try:
        ends = obs.attach_ends(opts.ifaces, opts.netns, peers=opts.peers)
    except BaseException:
        obs.close()
        raise
    log.info("observer: XDP (%s, %s transport) attached to %s", opts.xdp_mode, opts.transport,
             ", ".join(i + (f" (netns {n})" if n else "") for i, n in ends))
    return obs


def proxy_pipeline(proxy: Proxy, registry: CollectorRegistry, stream: IO[str],
                   window_s: float = 10.0, *, mode: str | None = None,
                   kernel_options: KernelOptions | None = None,
                   kernel: KernelSource | None = None,
                   pods: Mapping[str, str] | None = None) -> Pipeline:
    """A Pipeline wired to ``proxy``; its metrics go to ``registry``.

    ``mode`` and ``kernel_options`` default to what ``configure`` was told; ``kernel``
    is a ready kernel source (tests), else one is loaded for the xdp and both modes.
    ``pods`` maps endpoint "ip:port" to its Pod, "namespace/name".
    """
    mode = mode or _configured.mode
    if mode not in MODES:
        raise ValueError(f"observe mode must be one of {MODES}, not {mode!r}")
    if mode in ("xdp", "both") and kernel is None:
        kernel = load_kernel(kernel_options or _configured.kernel)
    bounds: Sequence[float] = ()
    if kernel is not None:
        from rauta.observe.decode import bucket_bounds

        bounds = bucket_bounds()
    settings = DetectorSettings(window_ns=int(window_s * 1e9))
    pipe = Pipeline(mode, config=proxy.config, kernel=kernel, json_out=JsonLines(stream),  # type: ignore[arg-type]
                    metrics=Metrics(registry=registry), settings=settings,
                    bucket_bounds=bounds, pods=pods)
    proxy.observer = pipe.hook
    return pipe


async def run_observer(proxy: Proxy, pipe: Pipeline, stop: asyncio.Event,
                       follow_every: float = 0.05) -> None:
    """Run ``pipe`` and feed it the proxy's config until ``stop`` is set."""
    async def follow() -> None:
        seen = None
        while not stop.is_set():
            if proxy.config is not seen:
                seen = proxy.config
                pipe.update_config(seen)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), follow_every)

    follower = asyncio.create_task(follow(), name="observer-config")
    try:
        await pipe.run(stop)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        proxy.observer = None
        if pipe.kernel is not None:
            pipe.kernel.close()
