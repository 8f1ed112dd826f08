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
- Patched, not rebuilt, when a listener changed in place: ``prepare`` finds the serving
  generation's listener of the same (address, port, gateway, listener, hostname); when
  the rule tuples have the same length and at most ``PATCH_MAX`` positions hold a new
  Rule object (the incremental translator reuses the others), only those positions are
  re-filed, in copies of the buckets they touch (``RuleIndex.patched``). The serving
  index is never written. A patched index answers exactly as a full build of the new
  rules (hypothesis, same test file).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from rauta.model.config import ListenerRoutes, PortConfig, RouterConfig, Rule
from rauta.model.hostnames import is_wildcard


class _PathIndex:
    __slots__ = ("exact", "prefix", "other")

    def __init__(self) -> None:
        self.exact: dict[str, list[int]] = {}
        self.prefix: dict[str, list[int]] = {}
        self.other: list[int] = []

    def _list(self, rule: Rule) -> tuple[dict[str, list[int]] | None, str]:
        match = rule.match.path
        if match.type == "Exact":
            return self.exact, match.value
        if match.type == "PathPrefix":
            return self.prefix, match.value.rstrip("/")
        return None, ""

    def add(self, pos: int, rule: Rule, *, keep_order: bool = False) -> None:
        """File ``pos``: appended (a build adds positions in ascending order), or inserted
        in order with ``keep_order`` (a patch). Lists are never shared with a copy: a
        patch replaces the list it edits."""
        table, key = self._list(rule)
        if table is None:
            if keep_order:
                self.other = _inserted(self.other, pos)
            else:
                self.other.append(pos)
            return
        got = table.get(key)
        if not keep_order and got is not None:
            got.append(pos)
        else:
            table[key] = _inserted(got or [], pos)

    def remove(self, pos: int, rule: Rule) -> None:
        """Unfile ``pos`` (filed for ``rule``), replacing the list it was in."""
        table, key = self._list(rule)
        if table is None:
            self.other = [p for p in self.other if p != pos]
            return
        left = [p for p in table[key] if p != pos]
        if left:
            table[key] = left
        else:
            del table[key]

    def empty(self) -> bool:
        return not (self.exact or self.prefix or self.other)

    def copy(self) -> _PathIndex:
        """A copy whose dicts are new (their lists are shared until replaced)."""
        out = _PathIndex()
        out.exact, out.prefix, out.other = dict(self.exact), dict(self.prefix), self.other
        return out

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


def _inserted(positions: list[int], pos: int) -> list[int]:
    """A new ascending list: ``positions`` with ``pos`` added."""
    out = list(positions)
    bisect.insort(out, pos)
    return out


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

    def patched(self, old: tuple[Rule, ...], new: tuple[Rule, ...]) -> RuleIndex | None:
        """The index of ``new``, built from this index of ``old`` by re-filing only the
        positions whose Rule object changed; None when a full build is the better choice
        (the lengths differ, or more than ``PATCH_MAX`` positions changed). This index is
        left untouched: every bucket the patch edits is copied first (copy on write)."""
        if len(old) != len(new):
            return None
        changed = [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a is not b]
        if len(changed) > PATCH_MAX:
            return None
        out = RuleIndex.__new__(RuleIndex)
        out._any, out._exact, out._suffix = self._any, dict(self._exact), dict(self._suffix)
        copied: set[int] = set()  # ids of the buckets already copied for ``out``
        for pos in changed:
            out._bucket(old[pos], copied).remove(pos, old[pos])
            out._bucket(new[pos], copied).add(pos, new[pos], keep_order=True)
        for table in (out._exact, out._suffix):  # a name no rule uses any more
            for key in [k for k, b in table.items() if id(b) in copied and b.empty()]:
                del table[key]
        return out

    def _bucket(self, rule: Rule, copied: set[int]) -> _PathIndex:
        """The bucket of ``rule``'s hostname in this (patched) index, copied on first use."""
        name = rule.hostname.lower()
        if not name:
            table, key = None, ""
            bucket = self._any
        else:
            table, key = ((self._suffix, name[1:]) if is_wildcard(name)
                          else (self._exact, name))
            bucket = table.get(key) or _PathIndex()
        if id(bucket) not in copied:
            bucket = bucket.copy()
            copied.add(id(bucket))
            if table is None:
                self._any = bucket
            else:
                table[key] = bucket
        return bucket


# A patch re-files at most this many changed positions; beyond it a full build is as fast.
PATCH_MAX = 64

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
    global _RULES, _PORTS, _LAST, _LAST_CONFIG
    rules: dict[int, tuple[ListenerRoutes, RuleIndex]] = {}
    # The serving generation's listeners by name: a listener that changed is most often
    # the same one with a few Rule objects replaced, and its index is then patched.
    before = {_listener_key(p, lis): entry for p in _LAST_CONFIG for lis, entry in
              ((lis, _LAST[0].get(id(lis))) for lis in p.listeners)
              if entry is not None and entry[0] is lis}
    for port in config.ports:
        for lis in port.listeners:
            old = _RULES.get(id(lis))
            if old is None or old[0] is not lis:
                prev = before.get(_listener_key(port, lis))
                index = (prev[1].patched(prev[0].rules, lis.rules)
                         if prev is not None else None)
                old = (lis, index if index is not None else RuleIndex(lis.rules))
            rules[id(lis)] = old
    table = {(p.address, p.port): p for p in reversed(config.ports)}
    last_rules, last_ports = _LAST
    _RULES = {**last_rules, **rules}
    _PORTS = {**last_ports, id(config): (config, table)}
    _LAST = (rules, {id(config): (config, table)})
    _LAST_CONFIG = config.ports
    return len(rules)


def _listener_key(port: PortConfig, lis: ListenerRoutes) -> tuple[str, int, str, str, str]:
    return (port.address, port.port, lis.gateway, lis.listener, lis.hostname)


# What the last ``prepare`` built (its config's entries only): the serving generation
# the next ``prepare`` keeps.
_LAST: tuple[dict[int, tuple[ListenerRoutes, RuleIndex]],
             dict[int, tuple[RouterConfig, dict[tuple[str, int], PortConfig]]]] = ({}, {})
_LAST_CONFIG: tuple[PortConfig, ...] = ()
