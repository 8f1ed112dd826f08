"""A deliberately naive reference interpreter of HTTPRoute matching (Gateway API spec).

Role: the oracle of ``test_routing_machine``. It is written from the spec text, not from
rauta's translator or router, and imports nothing from ``rauta``: it reads raw HTTPRoute
dicts exactly as a user would write them, brute-forces every (route, rule, match,
hostname) that matches one request, and picks the winner by the spec's precedence.

Scope (what the state machine generates):
- one or more Gateways (all of rauta's class, HTTP listeners, ``allowedRoutes`` All), whose
  listeners have hostnames (exact, wildcard or none) on a few ports, no two listeners with
  the same port and hostname (so no listener conflicts);
- routes with parentRefs to those Gateways (with or without a sectionName), hostnames
  (exact or wildcard) and rules whose filters may be unsupported or invalid;
- request paths are normalised apart from ``;``/``#``; query parameters and headers are
  not repeated.

Listener choice (GatewaySpec "Listeners that are distinct only by Hostname" and listener
isolation): among the listeners on the request's port whose hostname accepts the Host,
the most specific handles the request: an exact hostname, then wildcards with more labels
to the right of the ``*``, then no hostname. Only routes attached to *that* listener count:
a parentRef names its Gateway (and the listener, when it has a sectionName), and a route
with hostnames attaches only where one of them intersects the listener's hostname. The
hostname a route serves under a listener (its "matching hostname") is the intersection:
the more specific of the two names, or the listener's hostname for a route without
hostnames.

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

A rule whose matches rauta cannot program (a regular expression that does not compile in
RE2 syntax: unbalanced, a backreference or lookaround) is dropped. A rule whose matches
are fine but whose filters are unsupported (ExtensionRef, an unknown type) or invalid
(ReplacePrefixMatch with a match that is not a PathPrefix) stays in its precedence place
and answers 500: the spec says such a filter MUST NOT be skipped and its requests MUST get
an error, whether or not the route has other, valid rules.

Answers: a port no listener uses is a 404; then a path with ``;`` (path parameters) or
``#`` (a fragment) is a 400 before any routing; no listener for the Host, or no matching
rule, is a 404; the winning rule answers 500 when its
filters are invalid, else it forwards.
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
    hostname: str  # the matching hostname, "" when neither route nor listener has one
    invalid: bool = False  # the rule's filters are unsupported or invalid: a 500


@dataclass(frozen=True)
class Outcome:
    status: int  # 0: forwarded by ``winner``; 400, 404, or 500 (``winner`` is the rule)
    winner: Winner | None = None


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


# RE2 has neither backreferences nor lookaround; Python's re has both.
_NOT_RE2 = ("\\1", "\\2", "(?=", "(?!", "(?<=", "(?<!")


def regex_is_valid(pattern: str) -> bool:
    if any(bad in pattern for bad in _NOT_RE2):
        return False
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def rule_is_valid(rule: dict[str, Any]) -> bool:
    """Can the rule's matches be programmed at all?"""
    for m in _matches_of(rule):
        kind, value = _path_of(m)
        patterns = [value] if kind == "RegularExpression" else []
        patterns += [
            h["value"]
            for h in m.get("headers", []) + m.get("queryParams", [])
            if h.get("type") == "RegularExpression"
        ]
        if not all(regex_is_valid(p) for p in patterns):
            return False
    return True


# Filter type -> the field that carries its configuration (HTTPRouteFilter).
KNOWN_FILTERS = {"RequestHeaderModifier": "requestHeaderModifier",
                 "ResponseHeaderModifier": "responseHeaderModifier",
                 "RequestRedirect": "requestRedirect", "URLRewrite": "urlRewrite",
                 "RequestMirror": "requestMirror"}


def filters_are_valid(rule: dict[str, Any]) -> bool:
    """Only the filters the machine generates: known types with their field, and
    ReplacePrefixMatch only when every match of the rule is a PathPrefix."""
    for f in rule.get("filters") or []:
        kind = f.get("type")
        if kind not in KNOWN_FILTERS:
            return False  # ExtensionRef (rauta supports none) or an unknown type
        field = KNOWN_FILTERS[kind]
        if field not in f:
            return False
        path = (f[field] or {}).get("path") or {}
        if path.get("type") == "ReplacePrefixMatch" and any(
            _path_of(m)[0] != "PathPrefix" for m in _matches_of(rule)
        ):
            return False
    return True


def _created(route: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(route["metadata"]["creationTimestamp"].replace("Z", "+00:00"))


# ------------------------------------------------------------------------ the oracle


def _wild_suffix(name: str) -> str:
    return name[1:]  # "*.example.com" -> ".example.com"


def intersection(listener: str, route_host: str) -> str | None:
    """The matching hostname of a route hostname under a listener hostname, or None."""
    if listener == "" or listener == route_host:
        return route_host
    lw, rw = listener.startswith("*."), route_host.startswith("*.")
    if lw and rw:
        ls, rs = _wild_suffix(listener), _wild_suffix(route_host)
        if rs.endswith(ls):
            return route_host  # the route's wildcard is the narrower one
        if ls.endswith(rs):
            return listener
        return None
    if lw:
        return route_host if hostname_matches(listener, route_host) else None
    if rw:
        return listener if hostname_matches(route_host, listener) else None
    return None


def _listener_rank(hostname: str) -> tuple[int, int]:
    """Smaller first: exact names, then wildcards with more labels, then none."""
    if hostname == "":
        return (2, 0)
    if hostname.startswith("*."):
        return (1, -hostname.count("."))
    return (0, 0)


def select_listener(
    gateways: list[dict[str, Any]], port: int, host: str
) -> tuple[str, str, str] | None:
    """(gateway "ns/name", listener name, listener hostname) that handles the request."""
    found = []
    for gw in gateways:
        meta = gw["metadata"]
        for lis in gw["spec"]["listeners"]:
            hostname = (lis.get("hostname") or "").lower()
            if lis["port"] == port and hostname_matches(hostname, host):
                found.append((_listener_rank(hostname), f"{meta['namespace']}/{meta['name']}",
                              lis["name"], hostname))
    if not found:
        return None
    best = min(found)
    return best[1], best[2], best[3]


def attached_hostnames(route: dict[str, Any], gateway: str, listener: str,
                       listener_host: str) -> list[str]:
    """The matching hostnames of ``route`` under that listener; [] when not attached."""
    spec = route.get("spec", {})
    ns = route["metadata"].get("namespace") or "default"
    refs = [
        r for r in spec.get("parentRefs") or []
        if f"{r.get('namespace') or ns}/{r['name']}" == gateway
        and r.get("sectionName") in (None, listener)
    ]
    if not refs:
        return []
    route_hosts = [h.lower() for h in spec.get("hostnames") or []]
    if not route_hosts:
        return [listener_host]
    out = {x for x in (intersection(listener_host, h) for h in route_hosts) if x is not None}
    return sorted(out)


def candidates(
    routes: list[dict[str, Any]],
    method: str,
    host_header: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    listener: tuple[str, str, str],
) -> list[tuple[tuple[Any, ...], Winner]]:
    """Every (precedence key, Winner) whose route, rule and match accept the request, on
    ``listener`` = (gateway "ns/name", listener name, listener hostname)."""
    host = host_of(host_header)
    lower_headers = {k.lower(): v for k, v in headers.items()}
    out = []
    for route in routes:
        meta = route["metadata"]
        ns = meta.get("namespace") or "default"
        full_name = f"{ns}/{meta['name']}"
        spec = route.get("spec", {})
        route_hosts = attached_hostnames(route, *listener)
        rules = spec.get("rules")
        if rules is None:
            rules = [{}]
        for ri, rule in enumerate(rules):
            if not rule_is_valid(rule):
                continue
            invalid = not filters_are_valid(rule)
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
                    out.append((key, Winner(full_name, ri, mi, rh, invalid)))
    return out


def reference_outcome(
    gateways: list[dict[str, Any]],
    routes: list[dict[str, Any]],
    port: int,
    method: str,
    host_header: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
) -> Outcome:
    """What the Gateways should answer to one request (see the module doc)."""
    if not any(lis["port"] == port for gw in gateways for lis in gw["spec"]["listeners"]):
        return Outcome(404)  # nothing listens on that port
    if ";" in path or "#" in path:
        return Outcome(400)
    listener = select_listener(gateways, port, host_of(host_header))
    if listener is None:
        return Outcome(404)
    found = candidates(routes, method, host_header, path, query, headers, listener)
    if not found:
        return Outcome(404)
    winner = min(found, key=lambda kw: kw[0])[1]
    return Outcome(500 if winner.invalid else 0, winner)
