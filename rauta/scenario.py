"""The scenario format: replayable, recorded sequences of object events and expectations.

Role: the typed schema of ``scenarios/*.yaml`` (what ``rauta replay`` runs and, later,
``rauta record`` writes), plus placeholder expansion.

Format (YAML, one document)::

    name: weighted canary shift
    description: free text
    backends:                 # local echo servers (answer with their name), started first
      - name: v1              # bound on ${addr:v1}:${port:backends}
      - {name: flaky, status: 500, delay_ms: 0, start: false}
    steps:
      - name: create the route
        events:               # exactly what a Kubernetes watch delivers
          - {type: ADDED, object: {kind: HTTPRoute, metadata: {...}, spec: {...}}}
        start: [v2]           # start / stop backends at this step
        stop: [v1]
        probes:
          - key_header: x-user    # optional: request i carries x-user: key-<i>
            record: before        # optional: remember who answered each key
            request: {port: web, host: a.example.com, path: /, method: GET,
                      headers: {x-canary: "1"}, scheme: http, sni: a.example.com}
            count: 200
            expect:
              status: 200
              backend: v1                  # every answer came from v1
              backends: {v1: 0.9, v2: 0.1} # shares, within ``tolerance`` (default 0.05)
              headers: {x-echo-x-added: yes}
              location: http://b.example.com/
              body_contains: "..."
              same_as: before      # stickiness: same backend per key as recorded...
              moved_from: [v2]     # ...except keys that v2 answered then
              max_moved: 0.02      # ...and at most 2% of the others (Maglev's extra churn)
        statuses:             # conditions of the statuses rauta wrote, after this step
          - kind: HTTPRoute
            namespace: default
            name: web
            parent: gw        # route parents: by parentRef name (default: the first)
            conditions: {Accepted: "True", ResolvedRefs: "False/BackendNotFound"}
          - kind: Gateway
            namespace: infra
            name: gw
            listener: http    # a listener's conditions instead of the Gateway's
            conditions: {Programmed: "True"}
            attached_routes: 1

Placeholders, expanded in the whole document before parsing:
``${port:NAME}`` a free loopback TCP port per NAME (listener ports, the backend port);
``${addr:NAME}`` a distinct 127.0.0.x address per backend NAME. ``probes[].request.port``
may be a placeholder name (``web``) or a number.

Rules:
- Everything is explicit in the file; nothing depends on wall-clock time except bounded
  waits. Shares are checked with a tolerance because backend choice is weighted-random.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from rauta.loader import KubeYAMLLoader


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendSpec(Model):
    name: str
    status: int = 200
    delay_ms: int = 0
    start: bool = True


class ScenarioEvent(Model):
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    object: dict[str, Any]


class ProbeRequest(Model):
    port: int | str
    host: str = "localhost"
    path: str = "/"
    method: str = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = ""
    scheme: Literal["http", "https"] = "http"
    sni: str | None = None


class ProbeExpect(Model):
    status: int | None = None
    backend: str | None = None
    backends: dict[str, float] | None = None
    tolerance: float = 0.05
    headers: dict[str, str] = Field(default_factory=dict)
    location: str | None = None
    body_contains: str | None = None
    connect_error: bool = False  # the connection is expected to be refused
    # Stickiness: the answers of a probe recorded earlier (``Probe.record``) must be the
    # same per key, except for keys that were answered by one of ``moved_from``.
    same_as: str | None = None
    moved_from: list[str] = Field(default_factory=list)
    # Maglev is near-minimal, not minimal (NSDI'16 §3.4): allow this fraction of the other
    # keys to move too. 0 demands strictly minimal disruption.
    max_moved: float = 0.0


class Probe(Model):
    request: ProbeRequest
    count: int = 1
    # Send request i with header ``key_header: key-<i>`` (a flow key for hash_on header:X).
    key_header: str | None = None
    record: str | None = None  # remember which backend answered each key, under this name
    expect: ProbeExpect = Field(default_factory=ProbeExpect)


class StatusExpect(Model):
    kind: Literal["GatewayClass", "Gateway", "HTTPRoute"]
    namespace: str = ""
    name: str
    parent: str | None = None
    listener: str | None = None
    conditions: dict[str, str] = Field(default_factory=dict)
    attached_routes: int | None = None
    absent: bool = False  # rauta wrote no status for it (or removed ours)


class Step(Model):
    name: str
    events: list[ScenarioEvent] = Field(default_factory=list)
    start: list[str] = Field(default_factory=list)
    stop: list[str] = Field(default_factory=list)
    probes: list[Probe] = Field(default_factory=list)
    statuses: list[StatusExpect] = Field(default_factory=list)


class Scenario(Model):
    """A whole scenario; ``start``/``stop`` may only name declared backends."""

    name: str
    description: str = ""
    hash_on: str = "flow"  # the proxy's Maglev key (rauta serve --hash-on)
    backends: list[BackendSpec] = Field(default_factory=list)
    steps: list[Step]


_PLACEHOLDER = re.compile(r"\$\{(port|addr):([A-Za-z0-9_.-]+)\}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Placeholders:
    """Allocates ports and loopback addresses for ``${port:X}`` / ``${addr:X}``."""

    def __init__(self, port_alloc: Callable[[], int] = free_port) -> None:
        self.ports: dict[str, int] = {}
        self.addrs: dict[str, str] = {}
        self._alloc = port_alloc

    def port(self, name: str) -> int:
        if name not in self.ports:
            self.ports[name] = self._alloc()
        return self.ports[name]

    def addr(self, name: str) -> str:
        if name not in self.addrs:
            self.addrs[name] = f"127.0.0.{len(self.addrs) + 2}"
        return self.addrs[name]

    def expand(self, text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            return str(self.port(m.group(2))) if m.group(1) == "port" else self.addr(m.group(2))
        return _PLACEHOLDER.sub(sub, text)


class ScenarioError(Exception):
    """A scenario file that cannot be used; ``str()`` is one line."""


def load_scenario(text: str, placeholders: Placeholders, origin: str = "<scenario>") -> Scenario:
    try:
        data = yaml.load(placeholders.expand(text), Loader=KubeYAMLLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark is not None else origin
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(f"{where}: invalid YAML: {problem}") from None
    try:
        scenario = Scenario.model_validate(data)
    except Exception as exc:  # pydantic.ValidationError: keep it to one line
        errors = getattr(exc, "errors", None)
        if callable(errors):
            err = errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            where = f"{origin}: {loc}" if loc else origin
            raise ScenarioError(f"{where}: {err['msg']}") from None
        raise ScenarioError(f"{origin}: {exc}") from None
    declared = {b.name for b in scenario.backends}
    for i, step in enumerate(scenario.steps):
        for field, names in (("start", step.start), ("stop", step.stop)):
            for name in names:
                if name not in declared:
                    raise ScenarioError(f"{origin}: steps.{i}.{field}: backend {name!r} is not "
                                        "declared under backends")
    return scenario
