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
    new: dict[int, HostIndex] = {}
    for port in config.ports:
        for lis in port.listeners:
            if len(lis.rules) < MIN_RULES:
                continue
            index = old.get(id(lis))
            if index is None or index.listener is not lis:
                index = _PREVIOUS.get(id(lis))
            new[id(lis)] = index if index is not None and index.listener is lis else HostIndex(lis)
    _INDEX, _PREVIOUS = new, old
    return len(new)
