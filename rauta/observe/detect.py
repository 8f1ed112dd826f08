"""Anomaly detectors over attributed events: slow responses, error spikes, connect failures.

Role: the pure decision layer of the observer. It consumes attributed ``HttpEvent`` and
``ConnectEvent`` values in time order and emits ``Anomaly`` values; it knows nothing of
capture or output.

Rules:
- Deterministic given the event stream: time is the events' ``end_ns``, never a clock.
- Windows are fixed (``window_ns``, default 10 s), aligned to multiples of the window;
  a window is judged when the first event of a later window arrives (or ``flush``).
- Baselines are per (route, rule, backend): a ``DDSketch`` of latencies (no hand-rolled
  quantiles) plus request/5xx counts. Only windows judged normal are merged into the
  baseline, so an anomaly never becomes the new normal.
- slow_response: window p99 > ``slow_factor`` × baseline p99, once the baseline has
  ``warmup_windows`` windows and ``min_samples`` samples and the window ``min_window``.
- error_spike: window 5xx rate > p + 3·sqrt(p(1−p)/n) and at least ``min_errors`` 5xx
  and rate ≥ ``min_rate`` (binomial: a 0 → 1 error move never fires).
- One anomaly per condition per key while it lasts; ``resolved`` when a judged window
  is normal again for that condition.
- connect_failure: one anomaly per failed connect (refused / timeout / failed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from ddsketch import DDSketch

from rauta.observe.events import ConnectEvent, Event, HttpEvent

Key = tuple[str, str, str]  # (route, rule, backend)


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One detector output: a condition starting (or ``resolved``) on one key."""

    type: str  # slow_response | error_spike | connect_failure | resolved
    route: str
    rule: str
    backend: str
    service: str
    pod: str
    observed: float  # p99 seconds, 5xx rate, or connect duration seconds
    baseline: float
    window_start_ns: int
    window_end_ns: int
    ts_ns: int
    condition: str = ""  # for resolved: which condition cleared; for connect: the outcome
    endpoint: str = ""  # connect_failure: "ip:port"


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    window_ns: int = 10_000_000_000
    slow_factor: float = 2.0
    warmup_windows: int = 3
    min_samples: int = 100
    min_window: int = 20
    sigmas: float = 3.0
    min_errors: int = 5
    min_rate: float = 0.05
    relative_accuracy: float = 0.01


@dataclass
class _State:
    base: DDSketch
    base_n: int = 0
    base_err: int = 0
    base_windows: int = 0
    win: DDSketch | None = None
    win_n: int = 0
    win_err: int = 0
    service: str = ""
    pod: str = ""
    active: set[str] = field(default_factory=set)


class Detector:
    """Feed events with ``observe``; it returns the anomalies they complete."""

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()
        self._states: dict[Key, _State] = {}
        self._window: int | None = None  # start of the current window, ns

    def _sketch(self) -> DDSketch:
        return DDSketch(relative_accuracy=self.settings.relative_accuracy)

    def observe(self, event: Event) -> list[Anomaly]:
        out: list[Anomaly] = []
        w = self.settings.window_ns
        start = event.end_ns - event.end_ns % w
        if self._window is None:
            self._window = start
        elif start > self._window:
            out.extend(self._close(self._window, start))
            self._window = start
        if isinstance(event, ConnectEvent):
            if event.outcome != "established":
                out.append(
                    Anomaly(
                        type="connect_failure", route="", rule="", backend="",
                        service=event.service, pod=event.pod,
                        observed=event.duration_ns / 1e9, baseline=0.0,
                        window_start_ns=self._window, window_end_ns=self._window + w,
                        ts_ns=event.end_ns, condition=event.outcome,
                        endpoint=f"{event.server.ip}:{event.server.port}",
                    )
                )
            return out
        self._add(event)
        return out

    def _add(self, ev: HttpEvent) -> None:
        key = (ev.route, ev.rule, ev.backend)
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = _State(base=self._sketch())
        if st.win is None:
            st.win = self._sketch()
        st.win.add(max(ev.latency_ns, 1) / 1e9)
        st.win_n += 1
        if ev.status >= 500:
            st.win_err += 1
        st.service = ev.service or st.service
        st.pod = ev.pod or st.pod

    def observe_all(self, events: Iterable[Event]) -> list[Anomaly]:
        out: list[Anomaly] = []
        for ev in events:
            out.extend(self.observe(ev))
        return out

    def flush(self) -> list[Anomaly]:
        """Judge the current window now (end of stream)."""
        if self._window is None:
            return []
        out = self._close(self._window, self._window + self.settings.window_ns)
        self._window += self.settings.window_ns
        return out

    def _close(self, wstart: int, next_start: int) -> list[Anomaly]:
        out: list[Anomaly] = []
        wend = wstart + self.settings.window_ns
        for key in sorted(self._states):
            st = self._states[key]
            out.extend(self._judge(key, st, wstart, wend))
        # Empty windows in between judge nothing (no traffic is not evidence).
        del next_start
        return out

    def _judge(self, key: Key, st: _State, wstart: int, wend: int) -> list[Anomaly]:
        s = self.settings
        win, n, err = st.win, st.win_n, st.win_err
        st.win, st.win_n, st.win_err = None, 0, 0
        if win is None or n == 0:
            return []
        out: list[Anomaly] = []

        def emit(kind: str, observed: float, baseline: float, cond: str = "") -> None:
            out.append(
                Anomaly(
                    type=kind, route=key[0], rule=key[1], backend=key[2],
                    service=st.service, pod=st.pod, observed=observed,
                    baseline=baseline, window_start_ns=wstart, window_end_ns=wend,
                    ts_ns=wend, condition=cond,
                )
            )

        warm = st.base_windows >= s.warmup_windows and st.base_n >= s.min_samples
        slow = err_spike = False
        p99 = float(win.get_quantile_value(0.99) or 0.0)
        base99 = float(st.base.get_quantile_value(0.99) or 0.0) if st.base_n else 0.0
        p = st.base_err / st.base_n if st.base_n else 0.0
        rate = err / n
        if warm and n >= s.min_window:
            slow = p99 > s.slow_factor * base99
            limit = p + s.sigmas * math.sqrt(max(p * (1 - p), 1e-12) / n)
            err_spike = err >= s.min_errors and rate >= s.min_rate and rate > limit
        for cond, bad, obs, base in (
            ("slow_response", slow, p99, base99),
            ("error_spike", err_spike, rate, p),
        ):
            if bad and cond not in st.active:
                st.active.add(cond)
                emit(cond, obs, base)
            elif not bad and cond in st.active and warm and n >= s.min_window:
                st.active.discard(cond)
                emit("resolved", obs, base, cond)
        if not slow and not err_spike:
            st.base.merge(win)
            st.base_n += n
            st.base_err += err
            st.base_windows += 1
        return out


def breakdown(ev: HttpEvent) -> dict[str, float]:
    """Latency components in seconds, where the event carries them.

    ``backend``: an XDP upstream event's latency (request seen at the backend-side end →
    response seen at the proxy-side end); ``network``: the connect time of the exchange's
    connection; ``proxy_lag``: when the proxy's parser saw the response head minus when
    the kernel saw it (the event loop's lag).
    """
    out: dict[str, float] = {}
    if ev.source == "xdp" and ev.leg == "upstream":
        out["backend"] = ev.latency_ns / 1e9
    if ev.connect_ns:
        out["network"] = ev.connect_ns / 1e9
    if ev.proxy_seen_ns and ev.source == "xdp":
        out["proxy_lag"] = max(ev.proxy_seen_ns - ev.end_ns, 0) / 1e9
    return out
