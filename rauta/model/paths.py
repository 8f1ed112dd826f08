"""Request path normalisation and the Gateway API path operations built on it.

Role: turn the raw request-target path into the one canonical form that every path match
(Exact, PathPrefix, RegularExpression), every rewrite and every redirect sees, so that
``/public/../admin`` can never be routed by a ``/public`` prefix rule and then reach
``/admin`` on the backend.

Rules:
- Pure string functions, no I/O; the same input always gives the same output.
- ``normalize_path`` either returns a canonical path or ``None`` (the proxy answers 400).
  Its output always starts with ``/``, never contains ``//``, ``/./`` or ``/../``, never
  ends with ``/.`` or ``/..``, and ``normalize_path(normalize_path(p)) == normalize_path(p)``.
- Rejected (``None``): a path not starting with ``/``; any ASCII control character (NUL,
  CR, LF, TAB, ... DEL) or a raw backslash; a raw ``#``; a raw ``;``; a malformed escape
  (``%`` not followed by two hex digits); an encoded NUL (``%00``); an encoded slash
  ``%2F``/``%2f`` or backslash ``%5C``/``%5c``.
  Encoded slashes are rejected rather than passed through: some backends decode ``%2F``
  to ``/`` and some do not, so ``/public%2F..%2Fadmin`` would mean different things to the
  router and to the backend. A 400 is the only answer that is safe for every backend.
  A raw ``\\`` is rejected for the same reason (several servers treat it as ``/``).
  A raw ``#`` starts a fragment, which RFC 9112 never allows in a request-target: routing
  ``/admin#x`` by its full text would send it to the ``/`` rule, while ``/#/../admin``
  would climb to ``/admin``; no reading is safe, so it is a 400.
  A raw ``;`` starts path parameters (``/admin;jsessionid=x``), which rauta does not
  support: servlet containers (Tomcat, Jetty, Spring) strip them and serve ``/admin``,
  so a ``/admin`` rule would be bypassed through a catch-all. Rejecting every ``;``
  also covers dot segments with parameters (``/..;/``). Escaped forms (``%3B``, ``%23``)
  are kept as escapes and mean a literal character to every backend.
  Route match values go through the same function, so a PathPrefix/Exact value with a
  ``#`` or ``;`` is an invalid match.
- Percent-decoding happens once, and only for RFC 3986 unreserved characters
  (``A-Z a-z 0-9 - . _ ~``); every other escape is kept, with its hex digits upper-cased
  (``%3a`` -> ``%3A``). So ``%2e%2e`` becomes ``..`` *before* dot-segment removal, while
  ``%25`` stays ``%25`` (no double decoding).
- Then runs of ``/`` are merged and dot-segments are removed (RFC 3986 §5.2.4), never
  climbing above the root. A trailing ``/`` is kept, and a final ``.`` or ``..`` segment
  leaves a trailing ``/`` as the RFC says (``/a/b/..`` -> ``/a/``).
- Matching is case-sensitive. Route match values (Exact/PathPrefix) should be passed
  through ``normalize_path`` by the translator too, so both sides share one form.
"""

from __future__ import annotations

import re

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
_FORBIDDEN_ESCAPES = frozenset({0x00, 0x2F, 0x5C})  # NUL, "/", "\"
_BAD_RAW = re.compile(r"[\x00-\x1f\x7f\\#;]")  # CTLs, backslash, fragment, path parameters
_SLASHES = re.compile(r"/{2,}")


def _decode_unreserved(path: str) -> str | None:
    """Decode %XX of unreserved characters, upper-case the rest; None when malformed."""
    parts = path.split("%")
    out = [parts[0]]
    for part in parts[1:]:
        if len(part) < 2 or part[0] not in _HEX or part[1] not in _HEX:
            return None
        byte = int(part[:2], 16)
        if byte in _FORBIDDEN_ESCAPES:
            return None
        char = chr(byte)
        if char in _UNRESERVED:
            out.append(char)
        else:
            out.append("%")
            out.append(part[:2].upper())
        out.append(part[2:])
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path without empty segments; never above root."""
    segments = path.split("/")[1:]
    stack: list[str] = []
    trailing = False
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        if seg == "..":
            if stack:
                stack.pop()
            trailing = i == last
        elif seg == ".":
            trailing = i == last
        elif seg == "":
            trailing = i == last  # only the last segment can be empty here
        else:
            stack.append(seg)
            trailing = False
    if not stack:
        return "/"
    return "/" + "/".join(stack) + ("/" if trailing else "")


def normalize_path(raw: str) -> str | None:
    """The canonical form of a raw request path (no query), or None when it is invalid.

    ``/public/../admin`` -> ``/admin``; ``/public/%2e%2e/admin`` -> ``/admin``;
    ``//a///b`` -> ``/a/b``; ``/a/./b/`` -> ``/a/b/``; ``/a%2Fb`` -> None;
    ``/admin#x`` -> None (a fragment); ``/admin;jsessionid=x`` and ``/public/..;/admin``
    -> None (path parameters are not supported).
    """
    if not raw.startswith("/") or _BAD_RAW.search(raw):
        return None
    path = raw
    if "%" in path:
        decoded = _decode_unreserved(path)
        if decoded is None:
            return None
        path = decoded
    if "//" in path:
        path = _SLASHES.sub("/", path)
    if "/." in path:
        path = _remove_dot_segments(path)
    return path


def prefix_matches(prefix: str, path: str) -> bool:
    """Gateway API PathPrefix: element-wise, a trailing ``/`` on the prefix is ignored.

    ``/abc`` matches ``/abc``, ``/abc/`` and ``/abc/def`` but not ``/abcd``; ``/``
    matches every path. ``path`` is expected to be normalised already.
    """
    base = prefix.rstrip("/")
    if not base:
        return path.startswith("/")
    return path == base or path.startswith(base + "/")


def replace_prefix(path: str, matched_prefix: str, replacement: str) -> str:
    """ReplacePrefixMatch (URLRewrite and RequestRedirect), per the Gateway API table.

    The matched prefix (trailing ``/`` ignored) is cut off element-wise and the
    replacement (trailing ``/`` ignored) put in its place; an empty result is ``/``::

        path      prefix  replacement  result
        /foo/bar  /foo    /xyz         /xyz/bar
        /foo/bar  /foo/   /xyz/        /xyz/bar
        /foo      /foo    /xyz         /xyz
        /foo/     /foo    /xyz         /xyz/
        /foo/bar  /foo    ""           /bar
        /foo/bar  /foo    /            /bar
        /foo      /foo    /            /

    A path the prefix does not match is returned unchanged. A replacement without a
    leading ``/`` gets one, so the result is always an absolute path.
    """
    if not prefix_matches(matched_prefix, path):
        return path
    rest = path[len(matched_prefix.rstrip("/")) :]
    result = replacement.rstrip("/") + rest
    if not result.startswith("/"):
        result = "/" + result
    return result
