"""A deliberately naive reference interpreter of HTTPRoute matching (Gateway API spec).

Role: the oracle of ``test_routing_machine``. It is written from the spec text, not from
rauta's translator or router, and imports nothing from ``rauta``: it reads raw HTTPRoute
dicts exactly as a user would write them, brute-forces every (route, rule, match,
hostname) that matches one request, and picks the winner by the spec's precedence.

Scope (what the state machine generates):
- every route is attached to one Gateway listener with no hostname (so a route without
  hostnames accepts any host, counted as the empty hostname for precedence);
- request paths are already normalised; query parameters and headers are not repeated.

Precedence (smaller key wins), in the order the spec lists it:
 1. characters of the matching hostname when it is not a wildcard (0 for ``*.x``/none),
 2. characters of the matching hostname in total,
 3. path kind: Exact, then RegularExpression (rauta's documented placement), then PathPrefix,
 4. longer path value first (for PathPrefix a trailing ``/`` is ignored, as in matching;
    for RegularExpression the pattern's length),
 5. a method match beats none,
 6. more header matches, 7. more query-parameter matches (first entry per name counts),
 8. older creationTimestamp, 9. ``"{namespace}/{name}"`` alphabetically (as one string),
10. rule index, 11. match index.

A rule rauta cannot program (an uncompilable regular expression) is dropped, as the spec
asks for invalid rules (the route is PartiallyInvalid, or not Accepted when nothing is left).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

PATH_KIND_ORDER = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


@dataclass(frozen=True)
class Winner:
    route: str  # "namespace/name"
    rule_index: int
    match_index: int
    hostname: str  # the matching route hostname, "" when the route has none


# ------------------------------------------------------------------------ matching, naively


def host_of(host_header: str) -> str:
    """The Host header without a port, lower-cased (DNS names are case-insensitive)."""
    host = host_header.lower()
    if ":" in host:
        host = host.split(":")[0]
    return host


def hostname_matches(pattern: str, host: str) -> bool:
    if pattern == "":
        return True
    if pattern.startswith("*."):
        want = pattern.split(".")[1:]
        have = host.split(".")
        # at least one extra (non-empty) label in front of the suffix
        return len(have) > len(want) and have[-len(want) :] == want and all(have)
    return pattern == host


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s != ""]


def path_matches(kind: str, value: str, path: str) -> bool:
    if kind == "Exact":
        return path == value
    if kind == "PathPrefix":
        want = _segments(value)
        have = _segments(path)
        return have[: len(want)] == want
    return re.fullmatch(value, path) is not None


def _first_per_name(entries: list[dict[str, Any]], fold_case: bool) -> list[dict[str, Any]]:
    """Only the first entry of each (equivalent) name counts, as the spec says."""
    seen: set[str] = set()
    out = []
    for e in entries:
        name = e["name"].lower() if fold_case else e["name"]
        if name not in seen:
            seen.add(name)
            out.append(e)
    return out


def value_matches(kind: str, expected: str, actual: str | None) -> bool:
    if actual is None:
        return False
    if kind == "Exact":
        return actual == expected
    return re.fullmatch(expected, actual) is not None


# ------------------------------------------------------------------------ reading the dicts


def _path_of(match: dict[str, Any]) -> tuple[str, str]:
    path = match.get("path") or {}
    return path.get("type", "PathPrefix"), path.get("value", "/")


def _matches_of(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return list(rule.get("matches") or [{}])  # no matches: PathPrefix "/" (match everything)


def rule_is_valid(rule: dict[str, Any]) -> bool:
    for m in _matches_of(rule):
        kind, value = _path_of(m)
        patterns = [value] if kind == "RegularExpression" else []
        patterns += [
            h["value"]
            for h in m.get("headers", []) + m.get("queryParams", [])
            if h.get("type") == "RegularExpression"
        ]
        for p in patterns:
            try:
                re.compile(p)
            except re.error:
                return False
    return True


def _created(route: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(route["metadata"]["creationTimestamp"].replace("Z", "+00:00"))


# ------------------------------------------------------------------------ the oracle


def candidates(
    routes: list[dict[str, Any]],
    method: str,
    host_header: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
) -> list[tuple[tuple[Any, ...], Winner]]:
    """Every (precedence key, Winner) whose route, rule and match accept the request."""
    host = host_of(host_header)
    lower_headers = {k.lower(): v for k, v in headers.items()}
    out = []
    for route in routes:
        meta = route["metadata"]
        ns = meta.get("namespace") or "default"
        full_name = f"{ns}/{meta['name']}"
        spec = route.get("spec", {})
        route_hosts = [h.lower() for h in spec.get("hostnames") or []] or [""]
        rules = spec.get("rules")
        if rules is None:
            rules = [{}]
        for ri, rule in enumerate(rules):
            if not rule_is_valid(rule):
                continue
            for mi, m in enumerate(_matches_of(rule)):
                kind, value = _path_of(m)
                if not path_matches(kind, value, path):
                    continue
                if m.get("method") is not None and m["method"] != method:
                    continue
                hms = _first_per_name(m.get("headers", []), fold_case=True)
                if not all(
                    value_matches(
                        h.get("type", "Exact"), h["value"], lower_headers.get(h["name"].lower())
                    )
                    for h in hms
                ):
                    continue
                qms = _first_per_name(m.get("queryParams", []), fold_case=False)
                if not all(
                    value_matches(q.get("type", "Exact"), q["value"], query.get(q["name"]))
                    for q in qms
                ):
                    continue
                for rh in route_hosts:
                    if not hostname_matches(rh, host):
                        continue
                    non_wild = 0 if rh.startswith("*.") else len(rh)
                    length = len(value.rstrip("/")) if kind == "PathPrefix" else len(value)
                    key = (
                        -non_wild,
                        -len(rh),
                        PATH_KIND_ORDER[kind],
                        -length,
                        0 if m.get("method") is not None else 1,
                        -len(hms),
                        -len(qms),
                        _created(route),
                        full_name,
                        ri,
                        mi,
                    )
                    out.append((key, Winner(full_name, ri, mi, rh)))
    return out


def reference_route(
    routes: list[dict[str, Any]],
    method: str,
    host_header: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
) -> Winner | None:
    """The winning (route, rule, match) for the request, or None for a 404."""
    found = candidates(routes, method, host_header, path, query, headers)
    if not found:
        return None
    return min(found, key=lambda kw: kw[0])[1]
