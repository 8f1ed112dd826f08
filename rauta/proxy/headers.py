"""HTTP/1.1 header handling for the proxy, sans-IO.

Role: every transformation the data plane applies to a header list, the checks of the
request target and ``Host``, and the bytes of every message head it writes, as pure
functions over ``list[tuple[str, str]]`` (names in any case, values as received, decoded
as latin-1). ``server`` and ``upstream`` only parse and move bytes; what goes on the wire
is decided here and unit-tested without sockets.

Rules:
- Header names compare case-insensitively everywhere; the case and order of the headers
  that are kept are preserved.
- Hop-by-hop headers (RFC 9110 §7.6.1) never cross the proxy: ``Connection``,
  ``Keep-Alive``, ``Proxy-Connection``, ``TE``, ``Trailer``, ``Transfer-Encoding``,
  ``Upgrade``, and every name listed in a ``Connection`` header.
- Framing is never copied from one hop to the next: ``upstream_headers`` and
  ``response_headers`` drop ``Content-Length`` and ``Transfer-Encoding``, and the caller
  appends ``framing_headers`` (built from the parser's state) after every other header
  transformation. So ``Connection: content-length`` can never leave a body unframed.
- ``Connection`` can never remove ``Host`` nor the forwarding headers the proxy builds
  (``X-Forwarded-For``, ``X-Real-IP``, ``Forwarded``, ``X-Forwarded-Proto``,
  ``X-Forwarded-Host``): such tokens are ignored.
- Upstream request headers, in this order: ``Host`` (the upstream host; no client
  ``Host`` ever follows), the client's other headers in their order (without hop-by-hop
  ones, framing, ``Expect``, which the proxy answers, and the five forwarding headers),
  then ``X-Forwarded-For``, ``X-Real-IP``, ``Forwarded``, ``X-Forwarded-Proto``,
  ``X-Forwarded-Host`` (the last omitted when the forwarded host is empty).
- Forwarding, ``trusted_hops=0`` (the default: rauta is the edge): every client
  ``X-Forwarded-For``, ``X-Real-IP`` and ``Forwarded`` line is dropped and replaced by
  ``X-Forwarded-For: <client>``, ``X-Real-IP: <client>`` and
  ``Forwarded: for=<node>;host=<host>;proto=<proto>`` (RFC 7239: an IPv6 node is
  ``"[...]"``, a value that is not a token is a quoted-string, ``host=`` is omitted when
  the host is empty). ``trusted_hops=N>0`` (N trusted proxies in front of rauta): the
  incoming X-Forwarded-For entries (all lines merged, entries stripped, empty ones
  dropped) get the client appended; ``X-Real-IP`` is ``(incoming + [client])[-(N+1)]``,
  or the leftmost entry when the chain is shorter; the incoming ``Forwarded`` elements
  are kept and ours is appended after ``", "``; an incoming X-Real-IP is replaced.
  ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` are always replaced. Without a client
  address (``client_ip=""``) no entry is appended, X-Real-IP is omitted when there is
  nothing to name, and ``Forwarded`` says ``for=unknown``.
- Response headers (``response_headers``): the backend's headers without hop-by-hop
  headers, the names its ``Connection`` lists, ``Content-Length`` and
  ``Transfer-Encoding``.
- Per-request work is cached where the input repeats: what a ``Connection`` value lists
  (bounded LRU, keyed by the value and the names it may never remove) and whether a
  reason phrase is clean; a cached answer is the one the plain computation gives.
- ``Host`` (``parse_host``): a name of letters, digits, ``-``, ``_``, ``.`` (non-empty
  labels, one trailing dot allowed, at most 255 characters; an IPv4 address is such a
  name) or a bracketed IPv6 literal, then optionally ``:`` and 0-5 digits (value at most
  65535; an empty port means none). Anything else (``@``, ``/``, ``?``, ``#``, ``%``,
  ``\\``, spaces, controls, non-ASCII, empty) is invalid: the caller answers 400.
- Request target (``parse_target``): origin-form ``/path[?query]``, absolute-form
  ``http(s)://authority[/path][?query]`` (scheme in any case; the authority must pass
  ``parse_host`` and has no userinfo; it wins over ``Host``, RFC 9112 §3.2.2), or ``*``.
  A fragment (``#``), a space or control character, any other form or scheme is
  invalid: the caller answers 400. Bytes above 0x7F (sent by lenient clients) pass
  through. The query is returned untouched.
- A Gateway API ``HeaderModifier`` is applied as: ``set`` (replace every line with that
  name, or append when absent), then ``add`` (append ``","`` + value to the first
  existing line, as the spec's example shows, or append a new line when absent;
  ``Set-Cookie`` always gets its own line), then ``remove`` (drop every line with that
  name). Entries are ignored (defence in depth, the translator rejects most of them
  already) when the name is not an RFC 9110 token, when the value contains CR, LF or
  NUL (no header injection through configuration), and when the name is ``Host``,
  ``Content-Length`` or hop-by-hop (``set``, ``add`` and ``remove`` alike).
- Heads are encoded latin-1; a configured value outside latin-1 is sent as UTF-8 bytes.
- HTTP/2 (``h2_request_headers``, ``h2_response_headers``): a request's field block is
  split into pseudo-headers and regular headers (names as received, lower-case; values
  decoded latin-1), the names with ``_`` are dropped unless allowed, and ``cookie``
  crumbs are joined with ``"; "`` at the first crumb's place (RFC 9113 §8.2.3). A
  response block is ``:status`` then the headers with names lower-cased and without the
  connection-specific fields (RFC 9113 §8.2.2: every hop-by-hop name, so ``Connection``,
  ``Keep-Alive``, ``Proxy-Connection``, ``Transfer-Encoding``, ``Upgrade``, ``TE``).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from http import HTTPStatus

from rauta.model.config import HeaderModifier

Headers = list[tuple[str, str]]

HOP_BY_HOP = frozenset({
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
})

_PLAIN_OPTIONS = HOP_BY_HOP | {"close", ""}  # Connection values that name no extra header
_FORBIDDEN = ("\r", "\n", "\x00")
_REASONS = {s.value: s.phrase for s in HTTPStatus}
CHUNK_END = b"0\r\n\r\n"
CRLF = b"\r\n"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` ("Unknown" when it has none)."""
    return _REASONS.get(status, "Unknown")


def get(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The value of the first header called ``name`` (any case), or None."""
    name = name.lower()
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def get_all(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    """Every value of the headers called ``name`` (any case), in order."""
    name = name.lower()
    return [v for n, v in headers if n.lower() == name]


def connection_tokens(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The lower-cased option names listed in every ``Connection`` header."""
    tokens: set[str] = set()
    for n, v in headers:
        if n.lower() == "connection":
            tokens.update(t.strip().lower() for t in v.split(",") if t.strip())
    return frozenset(tokens)


def has_token(headers: Iterable[tuple[str, str]], name: str, token: str) -> bool:
    """Does a ``name`` header list ``token`` among its comma-separated values (any case)?"""
    token = token.lower()
    return any(t.strip().lower() == token for v in get_all(headers, name) for t in v.split(","))


@functools.lru_cache(maxsize=1024)
def _listed_names(listed: str, never: frozenset[str]) -> frozenset[str]:
    """The lower-cased names a ``Connection`` value lists, minus ``never`` (cached: nearly
    every message says just ``keep-alive`` or ``close``)."""
    return frozenset(t.strip().lower() for t in listed.split(",")) - never


def _drop_listed(headers: Headers, listed: str, never: frozenset[str]) -> Headers:
    """``headers`` without the names a ``Connection`` value lists (except ``never``)."""
    tokens = _listed_names(listed, never)
    if not tokens:
        return headers
    return [h for h in headers if h[0].lower() not in tokens]


def strip_hop_by_hop(headers: Iterable[tuple[str, str]], *, also: Iterable[str] = ()) -> Headers:
    """``headers`` without hop-by-hop headers, names listed in Connection, and ``also``."""
    drop = HOP_BY_HOP.union(a.lower() for a in also) if also else HOP_BY_HOP
    out: Headers = []
    listed: str | None = None
    for h in headers:
        low = h[0].lower()
        if low in drop:
            if low == "connection":
                listed = h[1] if listed is None else f"{listed},{h[1]}"
            continue
        out.append(h)
    if listed:
        out = _drop_listed(out, listed, _PLAIN_OPTIONS)
    return out


# Names whose lines upstream_headers never copies from the client.
_FORWARDING = frozenset({"x-forwarded-for", "x-real-ip", "forwarded",
                         "x-forwarded-proto", "x-forwarded-host"})
_UPSTREAM_DROP = HOP_BY_HOP | _FORWARDING | {"host", "content-length", "expect"}
# Connection tokens that never remove anything (besides plain options and hop-by-hop names).
_UNLISTABLE = _PLAIN_OPTIONS | _FORWARDING | {"host"}
_RESPONSE_DROP = HOP_BY_HOP | {"content-length"}
_TCHAR = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _is_token(text: str) -> bool:
    return bool(text) and not text.strip(_TCHAR)


def _fwd_value(text: str) -> str:
    """``text`` as an RFC 7239 value: a token as is, anything else a quoted-string."""
    if _is_token(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@functools.lru_cache(maxsize=4096)
def forwarded_element(client_ip: str, host: str, proto: str) -> str:
    """Our RFC 7239 ``Forwarded`` element: ``for=<node>;host=<host>;proto=<proto>``.

    An IPv6 node is bracketed and quoted (``for="[2001:db8::1]"``); no address is
    ``for=unknown``; ``host=`` is left out when ``host`` is empty.
    """
    if not client_ip:
        node = "unknown"
    elif ":" in client_ip and not client_ip.startswith("["):
        node = _fwd_value(f"[{client_ip}]")
    else:
        node = _fwd_value(client_ip)
    if host:
        return f"for={node};host={_fwd_value(host)};proto={_fwd_value(proto)}"
    return f"for={node};proto={_fwd_value(proto)}"


def upstream_headers(headers: Iterable[tuple[str, str]], *, host: str, client_ip: str,
                     proto: str, forwarded_host: str, trusted_hops: int = 0) -> Headers:
    """The headers a client request carries upstream, before modifiers and framing.

    ``("Host", host)`` first, then the client's headers without hop-by-hop ones, the names
    its ``Connection`` lists (never ``Host`` nor a forwarding header), ``Host``,
    ``Content-Length``, ``Expect`` and the forwarding headers, then X-Forwarded-For,
    X-Real-IP, Forwarded, X-Forwarded-Proto and X-Forwarded-Host as the module doc says
    for ``trusted_hops``. One pass over ``headers``; a second one over the kept headers
    only when ``Connection`` lists a name to remove. The caller appends
    ``framing_headers`` after the route's modifiers.
    """
    out: Headers = [("Host", host)]
    listed: str | None = None
    chain: list[str] | None = None
    fwd: list[str] | None = None
    for h in headers:
        low = h[0].lower()
        if low not in _UPSTREAM_DROP:
            out.append(h)
        elif low == "connection":
            listed = h[1] if listed is None else f"{listed},{h[1]}"
        elif trusted_hops > 0:
            if low == "x-forwarded-for":
                if chain is None:
                    chain = []
                chain.extend(p for p in (e.strip() for e in h[1].split(",")) if p)
            elif low == "forwarded":
                value = h[1].strip()
                if value:
                    if fwd is None:
                        fwd = []
                    fwd.append(value)
    if listed:
        out = _drop_listed(out, listed, _UNLISTABLE)  # never Host: it is unlistable
    if trusted_hops > 0:
        entries = chain if chain is not None else []
        if client_ip:
            entries.append(client_ip)
        if entries:
            out.append(("X-Forwarded-For", ", ".join(entries)))
            out.append(("X-Real-IP", entries[max(0, len(entries) - trusted_hops - 1)]))
        ours = forwarded_element(client_ip, forwarded_host, proto)
        out.append(("Forwarded", ", ".join([*fwd, ours]) if fwd else ours))
    else:
        if client_ip:
            out.append(("X-Forwarded-For", client_ip))
            out.append(("X-Real-IP", client_ip))
        out.append(("Forwarded", forwarded_element(client_ip, forwarded_host, proto)))
    out.append(("X-Forwarded-Proto", proto))
    if forwarded_host:
        out.append(("X-Forwarded-Host", forwarded_host))
    return out


def response_headers(headers: Iterable[tuple[str, str]]) -> Headers:
    """A backend response's headers as they go to the client, before modifiers and framing.

    Without hop-by-hop headers, the names its ``Connection`` lists, ``Content-Length``
    and ``Transfer-Encoding``. One pass; a second one over the kept headers only when
    ``Connection`` lists a name to remove.
    """
    out: Headers = []
    listed: str | None = None
    for h in headers:
        low = h[0].lower()
        if low not in _RESPONSE_DROP:
            out.append(h)
        elif low == "connection":
            listed = h[1] if listed is None else f"{listed},{h[1]}"
    if listed:
        out = _drop_listed(out, listed, _PLAIN_OPTIONS)
    return out


_CHUNKED: Headers = [("Transfer-Encoding", "chunked")]


def framing_headers(length: int | None, chunked: bool) -> Headers:
    """The framing header of a message body, from the parser's state (a new list).

    ``Transfer-Encoding: chunked`` when ``chunked``, else ``Content-Length: <length>``,
    else ``[]`` (no body).
    """
    if chunked:
        return list(_CHUNKED)
    if length is not None:
        return [("Content-Length", str(length))]
    return []


_NAME_CHARS = "-_.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_IPV6_CHARS = ":.0123456789ABCDEFabcdef"


@functools.lru_cache(maxsize=4096)
def parse_host(value: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of a ``Host`` value (or a target's authority), or None if invalid.

    ``host`` is the text exactly as received without the ``:port`` part (brackets of an
    IPv6 literal included); ``port`` is None when absent or empty. Syntax: module doc.
    """
    if not value.isascii():
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[:end + 1], value[end + 1:]
        inner = value[1:end]
        if not inner or inner.strip(_IPV6_CHARS):
            return None
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return None
        if not rest:
            return host, None
        if rest[0] != ":":
            return None
        port = rest[1:]
    else:
        host, colon, port = value.partition(":")
        if (not host or len(host) > 255 or host.strip(_NAME_CHARS) or host[0] == "."
                or ".." in host):
            return None
        if not colon:
            return host, None
    if not port:
        return host, None
    if len(port) > 5 or not port.isdigit():
        return None
    number = int(port)
    return (host, number) if number <= 65535 else None


def _bad_target_chars(target: str) -> bool:
    if " " in target or "#" in target:
        return True
    if target.isascii():
        return not target.isprintable()
    return any(c < " " or c == "\x7f" for c in target)


def parse_target(target: str) -> tuple[str | None, str, str] | None:
    """``(authority, path, query)`` of a request target, or None if invalid (answer 400).

    Origin-form ``/p?q`` gives ``(None, "/p", "q")``; absolute-form ``http://a:1/p?q``
    gives ``("a:1", "/p", "q")`` (path ``/`` when empty); ``*`` gives ``(None, "*", "")``
    (the caller allows it for OPTIONS only). The query is returned untouched, without
    the ``?``. Rules: module doc.
    """
    if (target[:1] == "/" and "#" not in target and " " not in target and target.isascii()
            and target.isprintable()):
        path, _, query = target.partition("?")  # the common case, in C calls only
        return None, path, query
    if not target or _bad_target_chars(target):
        return None
    if target[0] == "/":
        path, _, query = target.partition("?")
        return None, path, query
    if target == "*":
        return None, "*", ""
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    cut = len(rest)
    for mark in ("/", "?"):
        i = rest.find(mark, 0, cut)
        if i >= 0:
            cut = i
    authority, rest = rest[:cut], rest[cut:]
    if "@" in authority or parse_host(authority) is None:
        return None
    path, _, query = rest.partition("?")
    return authority, path or "/", query


def _clean(*texts: str) -> bool:
    return not any(bad in t for t in texts for bad in _FORBIDDEN)


# Names no route modifier may set, add or remove: the proxy alone decides them.
_PROTECTED = HOP_BY_HOP | {"host", "content-length"}


def _usable(name: str, value: str = "") -> bool:
    """May a modifier touch header ``name`` with ``value``? (See module doc.)"""
    return _is_token(name) and name.lower() not in _PROTECTED and _clean(value)


def apply_modifier(headers: Headers, modifier: HeaderModifier | None) -> Headers:
    """``headers`` after one HeaderModifier (set, then add, then remove; see module doc).

    Entries naming ``Host``, ``Content-Length`` or a hop-by-hop header, with a name that
    is not a token, or with CR, LF or NUL in the value are ignored.
    """
    if modifier is None:
        return headers
    out = list(headers)
    for h in modifier.set:
        if not _usable(h.name, h.value):
            continue
        low = h.name.lower()
        idx = next((i for i, (n, _) in enumerate(out) if n.lower() == low), None)
        if idx is None:
            out.append((h.name, h.value))
        else:
            out[idx] = (out[idx][0], h.value)
            out = [p for i, p in enumerate(out) if i == idx or p[0].lower() != low]
    for h in modifier.add:
        if not _usable(h.name, h.value):
            continue
        low = h.name.lower()
        idx = None if low == "set-cookie" else next(
            (i for i, (n, _) in enumerate(out) if n.lower() == low), None)
        if idx is None:
            out.append((h.name, h.value))
        else:
            name, value = out[idx]
            out[idx] = (name, f"{value},{h.value}" if value else h.value)
    if modifier.remove:
        gone = {r.lower() for r in modifier.remove if _usable(r)}
        if gone:
            out = [(n, v) for n, v in out if n.lower() not in gone]
    return out


def apply_modifiers(headers: Headers, modifiers: Sequence[HeaderModifier]) -> Headers:
    """Apply each modifier in order (the Decision lists rule-level before backend-level)."""
    for m in modifiers:
        headers = apply_modifier(headers, m)
    return headers


def _enc(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def _head(first: str, headers: Iterable[tuple[str, str]]) -> bytes:
    if not isinstance(headers, (list, tuple)):
        headers = list(headers)  # iterated twice when a value is outside latin-1
    try:
        return (first + "\r\n" + "".join([f"{n}: {v}\r\n" for n, v in headers])
                + "\r\n").encode("latin-1")
    except UnicodeEncodeError:  # rare: a configured value outside latin-1
        return b"".join([_enc(first + "\r\n"), *[_enc(f"{n}: {v}\r\n") for n, v in headers],
                         b"\r\n"])


@functools.lru_cache(maxsize=256)
def _clean_reason(reason: str) -> bool:
    """Is ``reason`` non-empty and free of CR, LF and NUL? (cached: backends reuse a few)"""
    return bool(reason) and _clean(reason)


def request_head(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """``METHOD target HTTP/1.1`` plus headers, as bytes (headers must carry framing)."""
    return _head(f"{method} {target} HTTP/1.1", headers)


def response_head(status: int, reason: str, headers: Iterable[tuple[str, str]],
                  version: str = "1.1") -> bytes:
    """``HTTP/x.y status reason`` plus headers, as bytes."""
    reason = reason if _clean_reason(reason) else reason_phrase(status)
    return _head(f"HTTP/{version} {status} {reason}", headers)


def simple_response(status: int, body: str = "", *, keep_alive: bool = True,
                    version: str = "1.1", headers: Iterable[tuple[str, str]] = (),
                    head_only: bool = False) -> bytes:
    """A complete proxy-generated response with a short plain-text body.

    ``Connection`` is written as needed for the client's version: ``close`` when the
    connection will close, ``keep-alive`` for an HTTP/1.0 client that keeps it.
    """
    payload = (body + "\n").encode("utf-8") if body else b""
    out: Headers = list(headers)
    if payload:
        out.append(("Content-Type", "text/plain; charset=utf-8"))
    out.append(("Content-Length", str(len(payload))))
    out.extend(connection_header(keep_alive, version))
    return response_head(status, "", out, version) + (b"" if head_only else payload)


def connection_header(keep_alive: bool, version: str) -> Headers:
    """The ``Connection`` header a response needs, if any, for the client's version."""
    if not keep_alive:
        return [("Connection", "close")]
    if version == "1.0":
        return [("Connection", "keep-alive")]
    return []


def chunk(data: bytes) -> tuple[bytes, bytes, bytes]:
    """The three pieces of one chunk of chunked transfer coding (for ``writelines``)."""
    return (b"%x\r\n" % len(data), data, CRLF)


def content_length(headers: Iterable[tuple[str, str]]) -> int | None:
    """The Content-Length value, or None when absent or not a plain decimal number."""
    value = get(headers, "content-length")
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() else None


def h2_request_headers(fields: Iterable[tuple[bytes, bytes]], *, underscores: bool
                       ) -> tuple[dict[str, str], Headers, int, int]:
    """``(pseudo, headers, size, count)`` of an HTTP/2 request's field block.

    ``size`` counts every field as an HTTP/1 head line would (name, value and 4 bytes);
    ``count`` is the number of regular fields received (before any is dropped). Syntax
    was checked by the h2 library; rules: module doc.
    """
    pseudo: dict[str, str] = {}
    out: Headers = []
    size = count = 0
    cookie_at = -1
    for raw_name, raw_value in fields:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        size += len(name) + len(value) + 4
        if name[:1] == ":":
            pseudo[name] = value
            continue
        count += 1
        if "_" in name and not underscores:
            continue  # dropped, as nginx does: some backends read "_" as "-"
        if name == "cookie":
            if cookie_at >= 0:
                out[cookie_at] = ("cookie", f"{out[cookie_at][1]}; {value}")
                continue
            cookie_at = len(out)
        out.append((name, value))
    return pseudo, out, size, count


def h2_response_headers(status: int, headers: Iterable[tuple[str, str]]
                        ) -> list[tuple[bytes, bytes]]:
    """The HTTP/2 field block of a response head (see the module doc)."""
    out = [(b":status", str(status).encode("ascii"))]
    for name, value in headers:
        low = name.lower()
        if low not in HOP_BY_HOP:
            out.append((_enc(low), _enc(value)))
    return out


def h2_simple_response(status: int, text: str, headers: Iterable[tuple[str, str]] = (),
                       head_only: bool = False) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The HTTP/2 field block and body of a proxy-made answer (``simple_response``'s)."""
    payload = (text + "\n").encode("utf-8") if text else b""
    out: Headers = list(headers)
    if payload:
        out.append(("content-type", "text/plain; charset=utf-8"))
    out.append(("content-length", str(len(payload))))
    return h2_response_headers(status, out), b"" if head_only else payload


def split_target(target: str) -> tuple[str, str]:
    """``(path, query)`` of an origin-form request target; the query is kept untouched.

    An absolute-form target (``http://host/p?q``) yields its path and query; ``*`` and
    anything else without a leading ``/`` is returned as the path (routing answers 400).
    """
    if "://" in target and not target.startswith("/"):
        rest = target.split("://", 1)[1]
        cut = [i for i in (rest.find("/"), rest.find("?")) if i >= 0]
        target = rest[min(cut):] if cut else "/"
        if target.startswith("?"):
            target = "/" + target
    path, sep, query = target.partition("?")
    return path, query if sep else ""
