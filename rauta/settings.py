"""The data plane's settings in their groups, as one frozen value every mode is built from.

Role: what the command line's ``proxy_options`` (``rauta.cli``) collect, and what
``rauta.app.App`` builds the proxy from: hardening, limits, timeouts, the one drain
setting and the number of data-plane workers. ``serve``, ``controller`` and ``replay``
all make their Proxy through ``ProxySettings.build``, so no mode wires the Proxy's
keywords by hand.

Rules:
- Frozen dataclasses of plain values (picklable: a worker process receives them whole).
- The group fields are named exactly as the Proxy's keywords; ``proxy_kwargs`` is their
  union, and every Proxy keyword is in a group or is one of ``host``, ``hash_on``,
  ``access_log``, ``drain_seconds`` (``drain``), ``reuse_port`` (on when ``workers`` > 1)
  or ``registry`` (tests/unit/test_settings.py checks it).
- ``drain``: seconds requests in flight may finish, both on a port the config removed and
  at shutdown (one setting, where modes used to differ).
- The defaults are the Proxy's own (they follow nginx where nginx has the same knob).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from rauta.proxy.manager import Proxy


@dataclass(frozen=True)
class Hardening:
    """How strictly client requests are treated (see ``rauta.proxy.runtime``)."""

    trusted_hops: int = 0
    underscores_in_headers: bool = False
    allow_trace: bool = False


@dataclass(frozen=True)
class Limits:
    """Sizes and counts the proxy bounds."""

    max_connections: int = 10000
    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    max_idle_per_endpoint: int = 64


@dataclass(frozen=True)
class Timeouts:
    """Seconds; ``response_head_timeout`` 0 means none."""

    connect_timeout: float = 5.0
    upstream_idle_timeout: float = 60.0
    client_idle_timeout: float = 75.0
    head_timeout: float = 30.0
    response_head_timeout: float = 60.0
    body_timeout: float = 60.0
    send_timeout: float = 60.0
    lingering_timeout: float = 5.0
    lingering_time: float = 30.0


GROUPS = (Hardening, Limits, Timeouts)


@dataclass(frozen=True)
class ProxySettings:
    """Everything a data plane is built from (one per process; workers share it)."""

    host: str = "127.0.0.1"
    hash_on: str = "flow"
    access_log: str | None = None
    hardening: Hardening = field(default_factory=Hardening)
    limits: Limits = field(default_factory=Limits)
    timeouts: Timeouts = field(default_factory=Timeouts)
    drain: float = 10.0
    workers: int = 1

    @classmethod
    def from_flat(cls, values: Mapping[str, Any], **base: Any) -> ProxySettings:
        """From the command line's flat option values (group fields by name); ``base``
        sets the other fields (``host``, ``drain``, ...). An unknown name is an error."""
        known = {f.name for g in GROUPS for f in fields(g)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"not a proxy setting: {', '.join(unknown)}")
        def pick(group: type) -> dict[str, Any]:
            return {f.name: values[f.name] for f in fields(group) if f.name in values}

        return cls(hardening=Hardening(**pick(Hardening)), limits=Limits(**pick(Limits)),
                   timeouts=Timeouts(**pick(Timeouts)), **base)

    def proxy_kwargs(self) -> dict[str, Any]:
        """The Proxy's keywords (but ``registry``)."""
        return {"host": self.host, "hash_on": self.hash_on, "access_log": self.access_log,
                "drain_seconds": self.drain, "reuse_port": self.workers > 1,
                **asdict(self.hardening), **asdict(self.limits), **asdict(self.timeouts)}

    def build(self, registry: CollectorRegistry | None = None) -> Proxy:
        """One in-process Proxy with these settings."""
        from rauta.proxy.manager import Proxy

        return Proxy(registry=registry, **self.proxy_kwargs())
