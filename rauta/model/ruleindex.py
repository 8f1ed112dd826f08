"""Per-listener rule index by request host: which of a listener's rules can match a Host.

Role: a data-plane accelerator for ``routing.route``. A rule whose (matching) hostname is
exact can only match a request whose Host is that name; rules with a wildcard hostname
or none may match any Host. So the rules that can match Host ``h`` are the rules with
hostname ``h`` and every non-exact one, in the listener's order; with thousands of routes
each on its own hostname that is a handful instead of thousands.

Rules:
- Pure: an index is a function of the ``ListenerRoutes`` alone; ``candidates`` returns a
  subsequence of ``listener.rules`` in its order that contains every rule whose hostname
  can accept the host (``hostnames.matches``), so the first matching rule is the same as
  in a scan of all rules. Nothing here assumes the translator's precedence order.
- Indexes are cached by the identity of the ``ListenerRoutes`` (an entry holds it, so its
  id cannot be reused while cached). ``prepare`` builds them for a whole config off the
  event loop and replaces the cache in one assignment, reusing the index of every
  listener that is the same object as before (the incremental translator keeps
  unchanged listeners) and keeping the previous generation, which serves until the new
  config is installed; a listener not prepared is indexed on first use (bounded cache).
  A new version of a listener indexed before (same gateway, name and hostname) is
  derived from the old index when few of its rules changed (``derived``).
- Small listeners are not indexed: scanning them is as fast.
- Merged candidate tuples (exact rules of a host interleaved with the non-exact ones)
  are built on first use per host and kept, at most ``MERGED_MAX`` per listener.
- Candidate sequences are shared: callers never modify them.
"""

from __future__ import annotations

from collections.abc import Sequence
from heapq import merge

from rauta.model.config import ListenerRoutes, RouterConfig, Rule

MIN_RULES = 32  # listeners with fewer rules are scanned, not indexed
MERGED_MAX = 4096
_CACHE_MAX = 1024


class HostIndex:
    """The candidate rules of one listener per request host."""

    __slots__ = ("listener", "exact", "wild", "positions", "merged", "_wild_positions")

    def __init__(self, listener: ListenerRoutes) -> None:
        self.listener = listener
        rules = listener.rules
        exact: dict[str, list[Rule]] = {}
        positions: dict[str, list[int]] = {}
        wild: list[int] = []
        for i, rule in enumerate(rules):
            host = rule.hostname
            if host and not host.startswith("*."):
                host = host.lower()
                got = exact.get(host)
                if got is None:
                    exact[host] = [rule]
                    positions[host] = [i]
                else:
                    got.append(rule)
                    positions[host].append(i)
            else:
                wild.append(i)
        self.wild: Sequence[Rule] = tuple(rules[i] for i in wild)
        # Without non-exact rules a host's candidates are its own rules, ready now.
        self.exact: dict[str, list[Rule]] = {} if wild else exact
        self.positions = positions if wild else {}
        self._wild_positions = tuple(wild)
        self.merged: dict[str, Sequence[Rule]] = {}

    def candidates(self, host: str) -> Sequence[Rule]:
        """The listener's rules that can match ``host`` (lower-case, no port), in order."""
        if not self.positions:
            return self.exact.get(host, self.wild)
        hit = self.merged.get(host)
        if hit is not None:
            return hit
        mine = self.positions.get(host)
        if mine is None:
            return self.wild
        rules = self.listener.rules
        out = tuple(rules[i] for i in merge(mine, self._wild_positions))
        if len(self.merged) < MERGED_MAX:
            self.merged[host] = out
        return out


DERIVE_MAX = 64  # at most this many rules added + removed: derive, else build afresh


def derived(old: HostIndex, listener: ListenerRoutes) -> HostIndex | None:
    """The index of ``listener`` from the index of an earlier version of it, in time
    proportional to the rules that changed (plus a few C-speed passes over the rules):
    when both have only exact hostnames, few rules were added or removed and the rules
    they share keep their relative order. None when that does not hold (build afresh).
    Equal to ``HostIndex(listener)``."""
    if old.positions or old.wild:
        return None
    rules, before = listener.rules, old.listener.rules
    where = dict(zip(map(id, rules), range(len(rules)), strict=True))  # id -> position
    was = dict(zip(map(id, before), range(len(before)), strict=True))
    if len(where) != len(rules) or len(was) != len(before):
        return None  # a rule object listed twice: keep it simple
    added, removed = where.keys() - was.keys(), was.keys() - where.keys()
    if len(added) + len(removed) > DERIVE_MAX:
        return None
    # The shared rules must keep their order, or some host's list would be out of order.
    kept = [p for p in map(where.get, map(id, before)) if p is not None]
    if kept != sorted(kept):
        return None
    new_rules = [rules[where[i]] for i in added]
    touched = {before[was[i]].hostname.lower() for i in removed}
    for rule in new_rules:
        if not rule.hostname or rule.hostname.startswith("*."):
            return None
        touched.add(rule.hostname.lower())
    exact = old.exact.copy()  # untouched hosts share their (never modified) lists
    for host in touched:
        mine = [r for r in old.exact.get(host, ()) if id(r) in where]
        mine.extend(r for r in new_rules if r.hostname.lower() == host)
        mine.sort(key=lambda r: where[id(r)])
        if mine:
            exact[host] = mine
        else:
            exact.pop(host, None)
    index = HostIndex.__new__(HostIndex)
    index.listener, index.exact, index.wild, index.positions = listener, exact, (), {}
    index._wild_positions, index.merged = (), {}
    return index


_INDEX: dict[int, HostIndex] = {}  # the listeners of the config prepared last
_PREVIOUS: dict[int, HostIndex] = {}  # ... and of the one before (still serving meanwhile)


def candidates(listener: ListenerRoutes, host: str) -> Sequence[Rule]:
    """``listener.rules`` narrowed to those that can match ``host`` (see the module doc)."""
    if len(listener.rules) < MIN_RULES:
        return listener.rules
    index = _INDEX.get(id(listener))
    if index is None or index.listener is not listener:
        index = _PREVIOUS.get(id(listener))
        if index is None or index.listener is not listener:
            index = HostIndex(listener)
            if len(_INDEX) < _CACHE_MAX:
                _INDEX[id(listener)] = index
    return index.candidates(host)


def prepare(config: RouterConfig) -> int:
    """Index every large listener of ``config`` (reusing identical ones); the number.
    The previous config's indexes are kept one more generation: requests keep being
    routed with it until the new one is installed."""
    global _INDEX, _PREVIOUS
    old = _INDEX
    by_place = {(i.listener.gateway, i.listener.listener, i.listener.hostname): i
                for i in old.values()}
    new: dict[int, HostIndex] = {}
    for port in config.ports:
        for lis in port.listeners:
            if len(lis.rules) < MIN_RULES:
                continue
            index = old.get(id(lis))
            if index is None or index.listener is not lis:
                index = _PREVIOUS.get(id(lis))
            if index is None or index.listener is not lis:
                # A new version of a listener indexed before: derive from that one.
                earlier = by_place.get((lis.gateway, lis.listener, lis.hostname))
                index = (derived(earlier, lis) if earlier is not None else None) or HostIndex(lis)
            new[id(lis)] = index
    _INDEX, _PREVIOUS = new, old
    return len(new)
