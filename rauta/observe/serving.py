"""The observer inside ``rauta serve``: the proxy as the event source (``--observe=proxy``).

Role: build a ``Pipeline`` in proxy mode for a running ``Proxy``, hand the proxy its hook,
keep the pipeline's attribution in step with the config the proxy routes with, and run
the pipeline until stopped.

Rules:
- Only ``proxy`` mode is offered. The XDP capture (``xdp``, ``both``) is not wired in yet;
  the command line refuses those modes rather than pretending.
- Anomalies go out as JSON lines (``output.anomaly_json``) to ``out`` (stdout for
  ``-``); the ``rauta_observer_*`` series join the admin server's registry.
- The pipeline sees each new RouterConfig within ``follow_every`` seconds of the proxy
  applying it (the proxy's ``config`` is compared by identity: one assignment per apply).
- On stop, events still queued are processed, so nothing seen is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import IO

from prometheus_client import CollectorRegistry

from rauta.observe.detect import DetectorSettings
from rauta.observe.output import JsonLines, Metrics
from rauta.observe.pipeline import Pipeline
from rauta.proxy.manager import Proxy

MODES = ("proxy",)


def open_out(out: str) -> IO[str]:
    """``-`` is stdout; anything else is a file opened for appending."""
    return sys.stdout if out == "-" else open(out, "a", encoding="utf-8")  # noqa: SIM115


def proxy_pipeline(proxy: Proxy, registry: CollectorRegistry, stream: IO[str],
                   window_s: float = 10.0) -> Pipeline:
    """A proxy-mode Pipeline wired to ``proxy``; its metrics go to ``registry``."""
    settings = DetectorSettings(window_ns=int(window_s * 1e9))
    pipe = Pipeline("proxy", config=proxy.config, json_out=JsonLines(stream),
                    metrics=Metrics(registry=registry), settings=settings)
    proxy.observer = pipe.hook
    return pipe


async def run_observer(proxy: Proxy, pipe: Pipeline, stop: asyncio.Event,
                       follow_every: float = 0.2) -> None:
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
