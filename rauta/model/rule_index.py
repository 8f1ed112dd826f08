"""Rule and port indexes: the router's lookups in time independent of the route count.

Role: ``routing.route`` must find the first rule of a listener that matches a request, in
the translator's precedence order. A linear scan costs one match test per rule before the
winner, so with 5,000 routes on a listener every request paid thousands of tests. A
``RuleIndex`` narrows the scan to the rules that *could* match, by host and by path, and
``PortIndex`` finds a PortConfig by ``(address, port)`` with one dict lookup.

Rules:
- Pure and conservative: ``candidates(host, path)`` returns, in ascending precedence
  order, a superset of the positions of the rules whose hostname and path match; the
  router still runs its full match test (method, headers, query too) on each candidate,
  so the first candidate that passes is exactly the rule a linear scan would find. An
  index never decides a match by itself. (Tested against the linear scan with
  hypothesis: ``tests/unit/model/test_rule_index.py``.)
- Host buckets: a rule hostname ``""`` (any host) lands in the any-host bucket; an exact
  name in its own bucket; a wildcard ``*.example.com`` in the bucket of its suffix
  ``.example.com`` (it accepts any host that ends with the suffix and is longer). A host
  is looked up in its exact bucket, in the bucket of every suffix that starts at one of
  its dots, and in the any-host bucket. Names are lower-case (the router strips the port
  and lower-cases the Host; the translator lower-cases rule hostnames).
- Path buckets within a host bucket: Exact values by string; PathPrefix values by their
  base (trailing ``/`` removed, as ``paths.prefix_matches`` compares element-wise); a
  path is looked up at every element boundary (``/a``, ``/a/b``, then the whole path) and
  at the root base ``""``; RegularExpression rules are always candidates.
- Built once per frozen ``ListenerRoutes`` / ``RouterConfig`` and cached by identity
  (``index_for``/``port_index``), holding the object itself so an id is never reused
  while cached; ``routing.prepare`` builds them off the event loop before a config is
  installed, and the cache then holds that config's objects and those of the config
  still serving until the swap (two generations, never more).
"""

from __future__ import annotations

from collections.abc import Iterable

from rauta.model.config import ListenerRoutes, PortConfig, RouterConfig, Rule
from rauta.model.hostnames import is_wildcard


class _PathIndex:
    __slots__ = ("exact", "prefix", "other")

    def __init__(self) -> None:
        self.exact: dict[str, list[int]] = {}
        self.prefix: dict[str, list[int]] = {}
        self.other: list[int] = []

    def add(self, pos: int, rule: Rule) -> None:
        match = rule.match.path
        if match.type == "Exact":
            self.exact.setdefault(match.value, []).append(pos)
        elif match.type == "PathPrefix":
            self.prefix.setdefault(match.value.rstrip("/"), []).append(pos)
        else:
            self.other.append(pos)

    def collect(self, path: str, bases: Iterable[str], out: list[int]) -> None:
        got = self.exact.get(path)
        if got:
            out.extend(got)
        prefix = self.prefix
        if prefix:
            for base in bases:
                got = prefix.get(base)
                if got:
                    out.extend(got)
        if self.other:
            out.extend(self.other)


def _bases(path: str) -> list[str]:
    """Every PathPrefix base that can match ``path``: "", each element prefix, the path."""
    out = [""]
    start = 1
    while True:
        cut = path.find("/", start)
        if cut < 0:
            break
        out.append(path[:cut])
        start = cut + 1
    out.append(path)
    return out


class RuleIndex:
    """Candidate rules of one listener for a (host, path); see the module rules."""

    __slots__ = ("_any", "_exact", "_suffix")

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self._any = _PathIndex()
        self._exact: dict[str, _PathIndex] = {}
        self._suffix: dict[str, _PathIndex] = {}
        for pos, rule in enumerate(rules):
            name = rule.hostname.lower()
            if not name:
                bucket = self._any
            elif is_wildcard(name):
                bucket = self._suffix.setdefault(name[1:], _PathIndex())
            else:
                bucket = self._exact.setdefault(name, _PathIndex())
            bucket.add(pos, rule)

    def candidates(self, host: str, path: str) -> list[int]:
        """Positions of the rules that may match, ascending (precedence order)."""
        bases = _bases(path)
        out: list[int] = []
        self._any.collect(path, bases, out)
        if self._exact:
            exact = self._exact.get(host)
            if exact is not None:
                exact.collect(path, bases, out)
        if self._suffix:
            dot = host.find(".")
            while dot >= 0:
                bucket = self._suffix.get(host[dot:])
                if bucket is not None:
                    bucket.collect(path, bases, out)
                dot = host.find(".", dot + 1)
        out.sort()  # buckets and their lists are each ascending, not their concatenation
        return out


_RULES: dict[int, tuple[ListenerRoutes, RuleIndex]] = {}
_PORTS: dict[int, tuple[RouterConfig, dict[tuple[str, int], PortConfig]]] = {}
_MAX = 4096  # unprepared objects: a bounded cache


def index_for(listener: ListenerRoutes) -> RuleIndex:
    """The RuleIndex of ``listener``, cached by identity."""
    entry = _RULES.get(id(listener))
    if entry is not None and entry[0] is listener:
        return entry[1]
    index = RuleIndex(listener.rules)
    if len(_RULES) < _MAX:
        _RULES[id(listener)] = (listener, index)
    return index


def port_index(config: RouterConfig) -> dict[tuple[str, int], PortConfig]:
    """``(address, port)`` → PortConfig of ``config``, cached by identity."""
    entry = _PORTS.get(id(config))
    if entry is not None and entry[0] is config:
        return entry[1]
    table = {(p.address, p.port): p for p in reversed(config.ports)}  # first one wins
    if len(_PORTS) < 64:
        _PORTS[id(config)] = (config, table)
    return table


def prepare(config: RouterConfig) -> int:
    """Build every index ``config`` needs, off the event loop, before it is installed.
    Returns the number of listeners.

    The caches then hold two generations: ``config``'s objects and those of the config
    prepared before it, which keeps serving until the proxy swaps ``config`` in. Dropping
    the serving config's indexes here would make its next request rebuild them on the
    event loop (tens of ms for a listener with thousands of rules)."""
    global _RULES, _PORTS, _LAST
    rules: dict[int, tuple[ListenerRoutes, RuleIndex]] = {}
    for port in config.ports:
        for lis in port.listeners:
            old = _RULES.get(id(lis))
            rules[id(lis)] = old if old is not None and old[0] is lis else (lis,
                                                                            RuleIndex(lis.rules))
    table = {(p.address, p.port): p for p in reversed(config.ports)}
    last_rules, last_ports = _LAST
    _RULES = {**last_rules, **rules}
    _PORTS = {**last_ports, id(config): (config, table)}
    _LAST = (rules, {id(config): (config, table)})
    return len(rules)


# What the last ``prepare`` built (its config's entries only): the serving generation
# the next ``prepare`` keeps.
_LAST: tuple[dict[int, tuple[ListenerRoutes, RuleIndex]],
             dict[int, tuple[RouterConfig, dict[tuple[str, int], PortConfig]]]] = ({}, {})
