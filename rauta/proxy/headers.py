"""HTTP/1.1 header handling for the proxy, sans-IO.

Role: every transformation the data plane applies to a header list, and the bytes of every
message head it writes, as pure functions over ``list[tuple[str, str]]`` (names in any
case, values as received, decoded as latin-1). ``server`` and ``upstream`` only parse and
move bytes; what goes on the wire is decided here and unit-tested without sockets.

Rules:
- Header names compare case-insensitively everywhere; the case and order of the headers
  that are kept are preserved.
- Hop-by-hop headers (RFC 9110 §7.6.1) never cross the proxy: ``Connection``,
  ``Keep-Alive``, ``Proxy-Connection``, ``TE``, ``Trailer``, ``Transfer-Encoding``,
  ``Upgrade``, and every name listed in a ``Connection`` header. Message framing is
  re-created by the proxy for each hop (``Content-Length`` is end-to-end and kept).
- ``X-Forwarded-For``: the client address is appended to the values already present
  (several header lines are merged into one, ``", "``-separated); ``X-Forwarded-Proto``
  and ``X-Forwarded-Host`` are set (any value from the client is replaced).
- A Gateway API ``HeaderModifier`` is applied as: ``set`` (replace every line with that
  name, or append when absent), then ``add`` (append ``","`` + value to the first
  existing line, as the spec's example shows, or append a new line when absent;
  ``Set-Cookie`` always gets its own line), then ``remove`` (drop every line with that
  name). Modifiers whose name or value contain CR, LF or NUL are ignored (no header
  injection through configuration).
- Heads are encoded latin-1; a configured value outside latin-1 is sent as UTF-8 bytes.
"""

from __future__ import annotations

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
        tokens = {t.strip().lower() for t in listed.split(",")} - _PLAIN_OPTIONS
        if tokens:
            out = [h for h in out if h[0].lower() not in tokens]
    return out


def add_forwarded(headers: Headers, *, client_ip: str, proto: str, host: str) -> Headers:
    """Append the client to X-Forwarded-For; set X-Forwarded-Proto and X-Forwarded-Host."""
    chain: list[str] = []
    out: Headers = []
    for n, v in headers:
        low = n.lower()
        if low == "x-forwarded-for":
            chain.extend(p.strip() for p in v.split(",") if p.strip())
        elif low not in ("x-forwarded-proto", "x-forwarded-host"):
            out.append((n, v))
    _append_forwarded(out, chain, client_ip, proto, host)
    return out


def _append_forwarded(out: Headers, chain: list[str], client_ip: str, proto: str,
                      host: str) -> None:
    if client_ip:
        chain.append(client_ip)
    if chain:
        out.append(("X-Forwarded-For", ", ".join(chain)))
    out.append(("X-Forwarded-Proto", proto))
    if host:
        out.append(("X-Forwarded-Host", host))


_UPSTREAM_DROP = HOP_BY_HOP | {"host", "expect", "x-forwarded-proto", "x-forwarded-host"}


def upstream_headers(headers: Iterable[tuple[str, str]], *, host: str, client_ip: str,
                     proto: str, forwarded_host: str) -> Headers:
    """The headers a client request carries upstream, before modifiers and framing.

    In one pass, the same result as ``[("Host", host)]`` followed by
    ``add_forwarded(strip_hop_by_hop(headers, also=("host", "expect")), ...)``: the Host
    is replaced, ``Expect`` is answered by the proxy and never forwarded.
    """
    out: Headers = [("Host", host)]
    chain: list[str] = []
    listed: str | None = None
    for h in headers:
        low = h[0].lower()
        if low in _UPSTREAM_DROP:
            if low == "connection":
                listed = h[1] if listed is None else f"{listed},{h[1]}"
            continue
        if low == "x-forwarded-for":
            chain.extend(p.strip() for p in h[1].split(",") if p.strip())
            continue
        out.append(h)
    if listed:
        tokens = {t.strip().lower() for t in listed.split(",")} - _PLAIN_OPTIONS
        if tokens:
            out = [out[0], *(h for h in out[1:] if h[0].lower() not in tokens)]
            if "x-forwarded-for" in tokens:
                chain = []
    _append_forwarded(out, chain, client_ip, proto, forwarded_host)
    return out


def _clean(*texts: str) -> bool:
    return not any(bad in t for t in texts for bad in _FORBIDDEN)


def apply_modifier(headers: Headers, modifier: HeaderModifier | None) -> Headers:
    """``headers`` after one HeaderModifier (set, then add, then remove; see module doc)."""
    if modifier is None:
        return headers
    out = list(headers)
    for h in modifier.set:
        if not h.name or not _clean(h.name, h.value):
            continue
        low = h.name.lower()
        idx = next((i for i, (n, _) in enumerate(out) if n.lower() == low), None)
        if idx is None:
            out.append((h.name, h.value))
        else:
            out[idx] = (out[idx][0], h.value)
            out = [p for i, p in enumerate(out) if i == idx or p[0].lower() != low]
    for h in modifier.add:
        if not h.name or not _clean(h.name, h.value):
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
        gone = {r.lower() for r in modifier.remove}
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
    headers = list(headers)
    try:
        return "".join([first, "\r\n", *[f"{n}: {v}\r\n" for n, v in headers],
                        "\r\n"]).encode("latin-1")
    except UnicodeEncodeError:  # rare: a configured value outside latin-1
        return b"".join([_enc(first + "\r\n"), *[_enc(f"{n}: {v}\r\n") for n, v in headers],
                         b"\r\n"])


def request_head(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """``METHOD target HTTP/1.1`` plus headers, as bytes (headers must carry framing)."""
    return _head(f"{method} {target} HTTP/1.1", headers)


def response_head(status: int, reason: str, headers: Iterable[tuple[str, str]],
                  version: str = "1.1") -> bytes:
    """``HTTP/x.y status reason`` plus headers, as bytes."""
    reason = reason if reason and _clean(reason) else reason_phrase(status)
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
