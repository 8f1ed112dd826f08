"""Hostname matching and intersection, as the Gateway API defines them.

Role: pure helpers shared by attachment (listener × route hostnames) and request routing.

Rules:
- Hostnames compare case-insensitively; callers pass them lower-cased or these functions do.
- ``*.example.com`` matches any name with at least one more label before ``example.com``
  (``a.example.com``, ``a.b.example.com``) and never ``example.com`` itself.
- ``""`` (or ``None``) stands for "no hostname": it matches everything.
- A port in a Host header is ignored (``strip_port``).
"""

from __future__ import annotations


def strip_port(host: str) -> str:
    """Drop a ``:port`` suffix from a Host value and lower-case it (IPv6 literals kept)."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end >= 0 else host
    colon = host.rfind(":")
    if colon >= 0 and host[colon + 1 :].isdigit():
        host = host[:colon]
    return host.rstrip(".")


def is_wildcard(pattern: str) -> bool:
    return pattern.startswith("*.")


def matches(pattern: str | None, host: str) -> bool:
    """Does the hostname ``pattern`` (exact, wildcard or empty) accept the concrete ``host``?"""
    if not pattern:
        return True
    pattern = pattern.lower()
    if is_wildcard(pattern):
        suffix = pattern[1:]  # ".example.com"
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == pattern


def intersect(listener: str | None, route: str) -> str | None:
    """The hostname a route hostname contributes under a listener hostname, or None.

    The result is the more specific of the two when one includes the other:
    listener ``*.example.com`` × route ``foo.example.com`` → ``foo.example.com``;
    listener ``foo.example.com`` × route ``*.example.com`` → ``foo.example.com``;
    listener ``*.example.com`` × route ``*.foo.example.com`` → ``*.foo.example.com``.
    """
    route = route.lower()
    if not listener:
        return route
    listener = listener.lower()
    if listener == route:
        return route
    if is_wildcard(listener) and matches(listener, route.removeprefix("*.") if is_wildcard(
            route) else route):
        if is_wildcard(route):
            # *.a.example.com under *.example.com: the route's own wildcard is narrower.
            return route if len(route) > len(listener) else None
        return route
    if is_wildcard(route) and matches(route, listener):
        return listener
    return None


def specificity(hostname: str) -> tuple[int, int]:
    """Precedence key: (characters of a non-wildcard name, total characters), larger wins."""
    return (0 if is_wildcard(hostname) or not hostname else len(hostname), len(hostname))


def valid_hostname(name: str, *, wildcard: bool = True) -> bool:
    """A lower-case RFC 1123 DNS name (``*.`` prefix allowed when ``wildcard``)."""
    body = name[2:] if wildcard and name.startswith("*.") else name
    if not body or len(name) > 253 or name != name.lower():
        return False
    labels = body.split(".")
    return all(
        0 < len(lbl) <= 63 and lbl[0].isalnum() and lbl[-1].isalnum()
        and all(c.isalnum() or c == "-" for c in lbl) and lbl.isascii()
        for lbl in labels
    ) and not body.replace(".", "").isdigit()


def effective(listener: str, route_names: tuple[str, ...]) -> tuple[str, ...]:
    """The hostnames a route serves under a listener (sorted, de-duplicated)."""
    if not route_names:
        return (listener,)
    out = {h for h in (intersect(listener or None, r) for r in route_names) if h}
    return tuple(sorted(out))
