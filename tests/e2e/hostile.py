"""Hostile HTTP/1.x requests, an h11-based checker and h11 recording backends.

Shared by ``tests/e2e/test_differential.py``, ``tests/e2e/test_nginx_strictness.py`` and
``tests/unit/proxy/test_framing.py``. This module is an *oracle*: it never imports
anything from ``rauta``.

- ``Req`` is a structured request (method, target, version, header list, body, what
  follows the body) that renders to raw bytes; ``FAMILIES`` holds the base cases of each
  family (smuggling/framing, versions/methods, parser strictness, target/host, headers),
  each tagged with the hardening issue's point number.
- ``requests()`` is a hypothesis strategy: a base case plus up to three mutations
  (insert/duplicate/case-flip/whitespace-inject headers, swap framing, append a smuggled
  request, change the version, inject CR/LF/NUL/obs-fold, absolute-form targets,
  fragments, path parameters, bad hosts). ``sample(seed, n)`` draws a fixed-seed sample
  of the same mutations without hypothesis (for the nginx comparison).
- ``parse_requests(data)`` reads the bytes one backend connection received with
  ``h11.Connection(h11.SERVER)`` and returns the requests or the protocol error.
- ``RecordingBackend`` is a threaded h11 server that logs every request it parses (with a
  unique id, echoed in ``X-Request-Id`` and the body) and every protocol error.
- ``expected_backend(req)`` is the routing rule of the test config as h11 reads a
  request: Host ``h.test`` + path ``/public`` (element-wise prefix) -> ``A``;
  Host ``other.test`` -> ``B``; anything else -> no backend.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import h11
from hypothesis import strategies as st

# ---------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Req:
    method: bytes = b"GET"
    target: bytes = b"/public/x"
    version: bytes = b"HTTP/1.1"
    headers: tuple[tuple[bytes, bytes], ...] = ((b"Host", b"h.test"),)
    body: bytes = b""
    after: bytes = b""          # raw bytes sent after the body (pipelined / smuggled)
    eol: bytes = b"\r\n"
    sep: bytes = b": "          # between name and value
    line: bytes | None = None   # a raw request line replacing method/target/version

    def render(self) -> bytes:
        first = self.line if self.line is not None else (
            self.method + b" " + self.target + (b" " + self.version if self.version else b""))
        head = first + self.eol
        for n, v in self.headers:
            head += n + self.sep + v + self.eol
        return head + self.eol + self.body + self.after


def chunked(payload: bytes, *, size: bytes | None = None, ext: bytes = b"",
            data_end: bytes = b"\r\n") -> bytes:
    if not payload:
        return b"0\r\n\r\n"
    sz = size if size is not None else format(len(payload), "x").encode()
    return sz + ext + b"\r\n" + payload + data_end + b"0\r\n\r\n"


def H(host: bytes = b"h.test", *extra: tuple[bytes, bytes]) -> tuple[tuple[bytes, bytes], ...]:
    return ((b"Host", host), *extra)


SMUGGLED = b"GET /admin HTTP/1.1\r\nHost: h.test\r\n\r\n"
SMUGGLED_B = b"GET /public/smuggled HTTP/1.1\r\nHost: other.test\r\n\r\n"
NEXT_OK = b"GET /public/next HTTP/1.1\r\nHost: h.test\r\n\r\n"


def cl(body: bytes) -> tuple[bytes, bytes]:
    return (b"Content-Length", str(len(body)).encode())


TE = (b"Transfer-Encoding", b"chunked")
BODY = b"hello=world"


@dataclass(frozen=True)
class Case:
    family: str
    name: str
    req: Req
    point: str = ""

    @property
    def raw(self) -> bytes:
        return self.req.render()


def _post(*extra: tuple[bytes, bytes], body: bytes = BODY, target: bytes = b"/public/p",
          version: bytes = b"HTTP/1.1", after: bytes = b"", host: bytes = b"h.test") -> Req:
    return Req(method=b"POST", target=target, version=version, headers=H(host, *extra),
               body=body, after=after)


def _families() -> dict[str, list[Case]]:
    f: dict[str, list[Case]] = {}

    def add(family: str, name: str, req: Req, point: str = "") -> None:
        f.setdefault(family, []).append(Case(family, name, req, point))

    s = "smuggling"
    add(s, "get", Req())
    add(s, "post-cl", _post(cl(BODY)))
    add(s, "post-chunked", _post(TE, body=chunked(BODY)))
    add(s, "pipelined-gets", Req(after=NEXT_OK))
    add(s, "conn-content-length", _post((b"Connection", b"content-length"), cl(SMUGGLED),
                                        body=SMUGGLED), "1")
    add(s, "conn-transfer-encoding", _post((b"Connection", b"transfer-encoding"), TE,
                                           body=chunked(SMUGGLED)), "1")
    add(s, "http10-chunked", _post((b"Connection", b"keep-alive"), TE, body=chunked(BODY),
                                   version=b"HTTP/1.0", after=SMUGGLED), "2")
    add(s, "te-gzip-chunked", _post((b"Transfer-Encoding", b"gzip, chunked"),
                                    body=chunked(BODY), after=SMUGGLED), "4")
    add(s, "te-identity", _post((b"Transfer-Encoding", b"identity"), cl(BODY)), "4")
    add(s, "te-chunked-gzip", _post((b"Transfer-Encoding", b"chunked, gzip"),
                                    body=chunked(BODY), after=SMUGGLED), "4")
    add(s, "te-Chunked-case", _post((b"Transfer-Encoding", b"ChUnKeD"), body=chunked(BODY)),
        "4")
    add(s, "cl-leading-zeros", _post((b"Content-Length", b"00011"), body=BODY), "5")
    add(s, "cl-and-te", _post(cl(BODY), TE, body=chunked(SMUGGLED)), "8")
    add(s, "te-and-cl", _post(TE, (b"Content-Length", b"4"), body=chunked(SMUGGLED)), "8")
    add(s, "dup-cl-same", _post(cl(BODY), cl(BODY)), "8")
    add(s, "dup-cl-diff", _post(cl(BODY), (b"Content-Length", b"3")), "8")
    add(s, "cl-plus", _post((b"Content-Length", b"+11")), "8")
    add(s, "cl-minus", _post((b"Content-Length", b"-5")), "8")
    add(s, "cl-nonnumeric", _post((b"Content-Length", b"11x")), "8")
    add(s, "cl-list", _post((b"Content-Length", b"11, 11")), "8")
    add(s, "chunk-size-zz", _post(TE, body=chunked(BODY, size=b"zz"), after=SMUGGLED), "8")
    add(s, "chunk-size-huge", _post(TE, body=chunked(BODY, size=b"FFFFFFFFFFFFFFFFFFFF")),
        "8")
    add(s, "chunk-ext-garbage", _post(TE, body=chunked(BODY, ext=b";\x01bad\x7f")), "8")
    add(s, "chunk-no-crlf", _post(TE, body=chunked(BODY, data_end=b"XX")), "8")
    add(s, "underscore-te", _post((b"Transfer_Encoding", b"chunked"), cl(BODY)), "6")
    add(s, "underscore-cl", _post((b"Content_Length", b"4"), cl(BODY)), "6")
    add(s, "smuggle-in-body", _post(cl(SMUGGLED), body=SMUGGLED))

    v = "versions"
    add(v, "http10-keepalive", Req(version=b"HTTP/1.0",
                                   headers=H(b"h.test", (b"Connection", b"keep-alive"))))
    for ver in (b"HTTP/2.0", b"HTTP/1.2", b"HTTP/3.0"):
        add(v, ver.decode().lower(), Req(version=ver, after=SMUGGLED), "7")
    add(v, "http09", Req(line=b"GET /public/x", headers=(), after=SMUGGLED), "7")
    add(v, "trace", Req(method=b"TRACE"), "7")
    add(v, "connect", Req(method=b"CONNECT", target=b"h.test:443",
                          headers=H(b"h.test:443"), after=SMUGGLED), "3")
    add(v, "http10-expect", _post((b"Expect", b"100-continue"), cl(BODY),
                                  version=b"HTTP/1.0"), "18")
    add(v, "options", Req(method=b"OPTIONS"))
    add(v, "lowercase-method", Req(method=b"get"))

    p = "parser"
    add(p, "obs-fold", Req(headers=H(b"h.test", (b"X-A", b"1"), (b" X-Fold", b"y"))), "8")
    add(p, "obs-fold-tab", Req(headers=H(b"h.test", (b"X-A", b"1"), (b"\tTransfer-Encoding",
                                                                       b"chunked"))), "8")
    add(p, "bare-lf", Req(eol=b"\n"), "8")
    add(p, "bare-cr", Req(headers=H(b"h.test\rX-B: 2")), "8")
    add(p, "nul-value", Req(headers=H(b"h.test", (b"X-A", b"a\x00b"))), "8")
    add(p, "ctl-value", Req(headers=H(b"h.test", (b"X-A", b"a\x01b"))), "8")
    add(p, "del-value", Req(headers=H(b"h.test", (b"X-A", b"a\x7fb"))), "8")
    add(p, "nul-name", Req(headers=H(b"h.test", (b"X-\x00A", b"1"))), "8")
    add(p, "space-before-colon", Req(headers=((b"Host ", b"h.test"),)), "8")
    add(p, "space-in-name", Req(headers=H(b"h.test", (b"X A", b"1"))), "8")
    add(p, "missing-name", Req(headers=H(b"h.test", (b"", b"x"))), "8")
    add(p, "line-extra-space", Req(line=b"GET  /public/x HTTP/1.1"), "8")
    add(p, "line-trailing-space", Req(line=b"GET /public/x HTTP/1.1 "), "8")
    add(p, "line-tab", Req(line=b"GET\t/public/x HTTP/1.1"), "8")

    t = "target"
    add(t, "absolute-form", Req(target=b"http://other.test/admin"), "11")
    add(t, "absolute-userinfo", Req(target=b"http://u@other.test/"), "11")
    for bad in (b"evil.com@good.com", b"evil.com/x?", b"h.test:99999", b"h.test:abc",
                b"h..test", b".h.test", b"h test", b""):
        add(t, f"host-{bad.decode() or 'empty'}", Req(headers=H(bad)), "12")
    add(t, "two-hosts", Req(headers=H(b"h.test", (b"Host", b"other.test"))), "12")
    for good in (b"h.test", b"h.test:8080", b"h.test.", b"[::1]:8080", b"127.0.0.1",
                 b"H.TEST", b"other.test"):
        add(t, f"host-ok-{good.decode()}", Req(headers=H(good)), "12")
    add(t, "fragment", Req(target=b"/admin#x"), "13")
    add(t, "fragment-public", Req(target=b"/public/a#x"), "13")
    add(t, "fragment-dotdot", Req(target=b"/#/../admin"), "13")
    add(t, "path-params", Req(target=b"/admin;jsessionid=x"), "13")
    add(t, "path-params-public", Req(target=b"/public;jsessionid=x"), "13")
    add(t, "dotdot", Req(target=b"/public/../admin"))
    add(t, "dotdot-encoded", Req(target=b"/public/%2e%2e/admin"))
    add(t, "public-exact", Req(target=b"/public"))
    add(t, "publicity", Req(target=b"/publicity"))
    add(t, "query", Req(target=b"/public/q?a=1&b=%20"))

    h = "headers"
    add(h, "underscore-x", Req(headers=H(b"h.test", (b"X_Foo", b"1"))), "6")
    add(h, "xff-spoof", Req(headers=H(b"h.test", (b"X-Forwarded-For", b"6.6.6.6"),
                                      (b"Forwarded", b"for=6.6.6.6"),
                                      (b"X-Real-IP", b"6.6.6.6"))), "19")
    add(h, "many-headers", Req(headers=H(b"h.test", *((f"X-H{i}".encode(), b"v")
                                                       for i in range(200)))), "15")
    add(h, "conn-close", Req(headers=H(b"h.test", (b"Connection", b"close")), after=NEXT_OK))
    add(h, "conn-host", Req(headers=H(b"h.test", (b"Connection", b"host"))))
    add(h, "expect-11", _post((b"Expect", b"100-continue"), cl(BODY)), "18")
    add(h, "upgrade", Req(headers=H(b"h.test", (b"Connection", b"upgrade"),
                                    (b"Upgrade", b"websocket"))))
    return f


FAMILIES: dict[str, list[Case]] = _families()


def base_cases() -> list[Case]:
    return [c for cases in FAMILIES.values() for c in cases]


# ---------------------------------------------------------------------- mutations

_FRAMING_NAMES = {b"content-length", b"transfer-encoding", b"transfer_encoding",
                  b"content_length"}
INSERT_POOL: tuple[tuple[bytes, bytes], ...] = (
    TE, (b"Content-Length", b"4"), (b"Content-Length", b"0"), (b"Connection", b"close"),
    (b"Connection", b"content-length"), (b"Connection", b"transfer-encoding"),
    (b"Host", b"other.test"), (b"Host", b"h.test"), (b"Transfer_Encoding", b"chunked"),
    (b"Content_Length", b"3"), (b"X_Foo", b"1"), (b"Expect", b"100-continue"),
    (b"X-Forwarded-For", b"6.6.6.6"), (b"Transfer-Encoding", b"gzip, chunked"),
    (b"Transfer-Encoding", b"chunked, gzip"), (b"Transfer-Encoding", b"identity"),
    (b"Content-Length", b"+4"), (b"Content-Length", b"0004"), (b"Upgrade", b"h2c"),
    (b"Connection", b"keep-alive"), (b"Transfer-Encoding", b" chunked"),
    (b"Transfer-Encoding", b"chunked\t"), (b"Transfer-Encoding", b"xchunked"),
)
VERSIONS = (b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9", b"HTTP/3.0",
            b"http/1.1", b"HTTP/1.10", b"HTTP/01.1", b"")
METHODS = (b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT",
           b"get", b"G\x00T", b"GE T", b"PURGE")
TARGETS = (b"/public/x", b"/public", b"/publicx", b"/admin", b"/public/../admin",
           b"/public/%2e%2e/admin", b"/public/%2F..%2Fadmin", b"http://other.test/admin",
           b"http://h.test/public/a", b"http://u@other.test/", b"HTTP://OTHER.TEST/x",
           b"/public/a#frag", b"/#/../admin", b"/public;jsessionid=x", b"/public/a;p=1/b",
           b"*", b"public/x", b"//public/x", b"/public/x?q=/../admin", b"/public\\..\\admin")
BAD_HOSTS = (b"evil.com@good.com", b"evil.com/x?", b"h.test:99999", b"h.test:abc", b"h..test",
             b".h.test", b"h test", b"", b"h.test\x00", b"h.test, other.test", b"other.test:80",
             b"OTHER.TEST", b"h.test.", b"[::1]:8080", b"h.test:", b"h.test:-1")
INJECT = (b"\r", b"\n", b"\x00", b"\r\n", b"\n ", b"\t", b"\x0b", b"\x7f", b" ")


def _flip(b: bytes, rnd: random.Random) -> bytes:
    return bytes(c ^ 0x20 if 65 <= (c & ~0x20) <= 90 and rnd.random() < 0.5 else c for c in b)


def _set_header(headers: list[tuple[bytes, bytes]], name: bytes, value: bytes) -> None:
    for i, (n, _) in enumerate(headers):
        if n.lower() == name.lower():
            headers[i] = (n, value)
            return
    headers.append((name, value))


def _reframe(req: Req, mode: str, payload: bytes) -> Req:
    headers = [(n, v) for n, v in req.headers if n.lower().strip() not in _FRAMING_NAMES]
    if mode == "cl":
        headers.append(cl(payload))
        body = payload
    elif mode == "chunked":
        headers.append(TE)
        body = chunked(payload)
    elif mode == "both":
        headers += [cl(payload), TE]
        body = chunked(payload)
    else:
        body = b""
    method = b"POST" if mode != "none" and req.method == b"GET" else req.method
    return replace(req, headers=tuple(headers), body=body, method=method)


def mutate(req: Req, kind: str, rnd: random.Random) -> Req:
    """One mutation of ``kind``, with its choices drawn from ``rnd``."""
    headers = list(req.headers)
    if kind == "insert":
        headers.insert(rnd.randint(0, len(headers)), rnd.choice(INSERT_POOL))
        return replace(req, headers=tuple(headers))
    if kind == "duplicate" and headers:
        i = rnd.randrange(len(headers))
        headers.insert(rnd.randint(0, len(headers)), headers[i])
        return replace(req, headers=tuple(headers))
    if kind == "case-flip" and headers:
        i = rnd.randrange(len(headers))
        headers[i] = (_flip(headers[i][0], rnd), _flip(headers[i][1], rnd))
        return replace(req, headers=tuple(headers))
    if kind == "whitespace" and headers:
        i = rnd.randrange(len(headers))
        n, v = headers[i]
        where = rnd.choice(("name-end", "name-start", "value", "name-mid"))
        ws = rnd.choice((b" ", b"\t"))
        if where == "name-end":
            n = n + ws
        elif where == "name-start":
            n = ws + n
        elif where == "name-mid" and len(n) > 1:
            k = rnd.randrange(1, len(n))
            n = n[:k] + ws + n[k:]
        else:
            v = ws + v + ws
        headers[i] = (n, v)
        return replace(req, headers=tuple(headers))
    if kind == "framing":
        return _reframe(req, rnd.choice(("cl", "chunked", "both", "none")),
                        rnd.choice((BODY, SMUGGLED, b"x", b"")))
    if kind == "smuggle":
        smug = rnd.choice((SMUGGLED, SMUGGLED_B, NEXT_OK,
                           b"POST /public/s HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5\r\n\r\n"))
        if rnd.random() < 0.5:
            return replace(req, after=req.after + smug)
        return _reframe(req, rnd.choice(("cl", "chunked")), smug)
    if kind == "version":
        return replace(req, version=rnd.choice(VERSIONS), line=None)
    if kind == "method":
        return replace(req, method=rnd.choice(METHODS), line=None)
    if kind == "inject" and headers:
        i = rnd.randrange(len(headers))
        n, v = headers[i]
        b = rnd.choice(INJECT)
        if rnd.random() < 0.5 and n:
            k = rnd.randrange(len(n) + 1)
            n = n[:k] + b + n[k:]
        else:
            k = rnd.randrange(len(v) + 1)
            v = v[:k] + b + v[k:]
        headers[i] = (n, v)
        return replace(req, headers=tuple(headers))
    if kind == "obs-fold" and headers:
        i = rnd.randrange(len(headers))
        n, v = headers[i]
        headers.insert(i + 1, (rnd.choice((b" ", b"\t")) + rnd.choice((b"x", b"chunked")), b""))
        headers[i] = (n, v)
        return replace(req, headers=tuple(headers))
    if kind == "eol":
        return replace(req, eol=rnd.choice((b"\n", b"\r\r\n", b"\r")))
    if kind == "target":
        return replace(req, target=rnd.choice(TARGETS), line=None)
    if kind == "fragment":
        return replace(req, target=req.target + rnd.choice((b"#x", b"#/../admin", b"#")),
                       line=None)
    if kind == "params":
        return replace(req, target=req.target + rnd.choice((b";jsessionid=x", b";")),
                       line=None)
    if kind == "host":
        bad = rnd.choice(BAD_HOSTS)
        if not any(n.lower() == b"host" for n, _ in headers):
            headers.insert(0, (b"Host", bad))
        else:
            headers = [(n, bad) if n.lower() == b"host" else (n, v) for n, v in headers]
        return replace(req, headers=tuple(headers))
    if kind == "drop-host":
        return replace(req, headers=tuple((n, v) for n, v in headers if n.lower() != b"host"))
    return req


MUTATIONS = ("insert", "duplicate", "case-flip", "whitespace", "framing", "smuggle", "version",
             "method", "inject", "obs-fold", "eol", "target", "fragment", "params", "host",
             "drop-host")


@dataclass(frozen=True)
class Mutated:
    base: Case
    steps: tuple[str, ...]
    req: Req

    @property
    def raw(self) -> bytes:
        return self.req.render()

    @property
    def family(self) -> str:
        return self.base.family

    @property
    def name(self) -> str:
        return "+".join((self.base.name, *self.steps))


def apply_mutations(case: Case, steps: list[tuple[str, int]]) -> Mutated:
    req = case.req
    for kind, seed in steps:
        req = mutate(req, kind, random.Random(seed))
    return Mutated(case, tuple(k for k, _ in steps), req)


@st.composite
def requests(draw: st.DrawFn, families: tuple[str, ...] | None = None) -> Mutated:
    """A base case from ``families`` (all by default) with up to three mutations."""
    pool = [c for c in base_cases() if families is None or c.family in families]
    case = draw(st.sampled_from(pool))
    steps = draw(st.lists(st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 2**32 - 1)),
                          max_size=3))
    return apply_mutations(case, steps)


def sample(seed: int, n: int) -> list[Mutated]:
    """The base cases unmutated, then ``n`` fixed-seed mutations of them."""
    rnd = random.Random(seed)
    out = [Mutated(c, (), c.req) for c in base_cases()]
    cases = base_cases()
    for _ in range(n):
        case = rnd.choice(cases)
        steps = [(rnd.choice(MUTATIONS), rnd.getrandbits(32)) for _ in range(rnd.randint(1, 3))]
        out.append(apply_mutations(case, steps))
    return out


# ---------------------------------------------------------------------- h11 checker


@dataclass
class Parsed:
    method: str
    target: str
    headers: list[tuple[str, str]]     # names as sent
    body: bytes = b""
    version: str = "1.1"

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


def parsed(ev: h11.Request) -> Parsed:
    """A request head as h11 read it (its body is added as Data events arrive)."""
    return Parsed(ev.method.decode("latin-1"), ev.target.decode("latin-1"),
                  [(n.decode("latin-1"), v.decode("latin-1")) for n, v in ev.headers.raw_items()],
                  version=ev.http_version.decode())


def parse_requests(data: bytes, *, eof: bool = False) -> tuple[list[Parsed], str | None]:
    """The requests in ``data`` (one backend connection's bytes) as h11 reads them, and the
    protocol error (or ``"incomplete"`` when bytes are left over), or None."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    out: list[Parsed] = []
    cur: Parsed | None = None
    while True:
        try:
            ev = conn.next_event()
        except h11.RemoteProtocolError as e:
            return out, f"protocol error: {e}"
        if isinstance(ev, h11.Request):
            cur = parsed(ev)
        elif isinstance(ev, h11.Data) and cur is not None:
            cur.body += bytes(ev.data)
        elif isinstance(ev, h11.EndOfMessage) and cur is not None:
            out.append(cur)
            cur = None
            with contextlib.suppress(h11.LocalProtocolError):
                conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                conn.send(h11.EndOfMessage())
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
            else:
                return out, None
        elif ev is h11.NEED_DATA:
            left = conn.trailing_data[0]
            return out, ("incomplete" if cur is not None or left else None)
        elif isinstance(ev, h11.ConnectionClosed) or ev is h11.PAUSED:
            return out, None


def parse_responses(data: bytes, n_max: int = 50) -> tuple[list[tuple[int, list[tuple[str, str]], bytes]], str | None]:
    """The responses in ``data`` (what a client received), read with an h11 client; final
    responses only (1xx are skipped, but counted under status 100..199 entries too)."""
    conn = h11.Connection(h11.CLIENT)
    out: list[tuple[int, list[tuple[str, str]], bytes]] = []
    conn.receive_data(data)
    conn.receive_data(b"")
    for _ in range(n_max):
        try:
            conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
            conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return out, None
        status, headers, body = 0, [], b""
        while True:
            try:
                ev = conn.next_event()
            except h11.RemoteProtocolError as e:
                return out, f"protocol error: {e}"
            if isinstance(ev, h11.InformationalResponse):
                out.append((ev.status_code, [], b""))
            elif isinstance(ev, h11.Response):
                status = ev.status_code
                headers = [(k.decode("latin-1"), v.decode("latin-1"))
                           for k, v in ev.headers.raw_items()]
            elif isinstance(ev, h11.Data):
                body += bytes(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                out.append((status, headers, body))
                break
            else:  # NEED_DATA after EOF, ConnectionClosed
                if status:
                    return out, "truncated response"
                return out, None
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            return out, None
    return out, None


# ---------------------------------------------------------------------- routing oracle

_DOTS = re.compile(r"%2e", re.IGNORECASE)


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    for seg in path.split("/")[1:]:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    trailing = path.endswith(("/.", "/..")) and out
    return "/" + "/".join(out) + ("/" if trailing else "")


def norm_host(host: str | None) -> str | None:
    if host is None:
        return None
    h = host.strip().lower()
    if h.startswith("["):
        h = h[: h.find("]") + 1]
    elif ":" in h:
        h = h.rsplit(":", 1)[0]
    return h[:-1] if h.endswith(".") else h


def request_path(target: str) -> str:
    if not target.startswith("/"):
        target = urlsplit(target).path or "/"
    path = target.split("?", 1)[0].split("#", 1)[0]
    path = re.sub("/{2,}", "/", _DOTS.sub(".", path))
    return _remove_dot_segments(path)


def request_host(p: Parsed) -> str | None:
    if not p.target.startswith("/") and "://" in p.target:
        return norm_host(urlsplit(p.target).netloc)
    hosts = p.all("Host")
    return norm_host(hosts[0]) if len(hosts) == 1 else None


def expected_backend(p: Parsed) -> str | None:
    """Which backend the test config's rules send ``p`` to, as h11 read it (None: 404)."""
    host = request_host(p)
    path = request_path(p.target)
    if host == "h.test" and (path == "/public" or path.startswith("/public/")):
        return "A"
    if host == "other.test":
        return "B"
    return None


# ---------------------------------------------------------------------- backends


@dataclass
class Logged:
    backend: str
    id: int
    conn: int
    req: Parsed


EOF_INSIDE = "eof inside a request:"  # the proxy gave up on a request: not a protocol error
_IDS = itertools.count(1)
_IDS_LOCK = threading.Lock()


def next_id() -> int:
    with _IDS_LOCK:
        return next(_IDS)


@dataclass
class RecordingBackend:
    """A threaded h11 server on 127.0.0.1: answers each request 200 with ``X-Backend``,
    ``X-Request-Id`` (unique across every backend of the process) and a body
    ``<name> <id> <target>``; logs requests, raw bytes per connection and protocol
    errors."""

    name: str
    port: int = 0
    log: list[Logged] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    raw: dict[int, bytearray] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> RecordingBackend:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self.port = self._sock.getsockname()[1]
        self._sock.listen(128)
        self._stop = False
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        for c in list(self._conns):
            with contextlib.suppress(OSError):
                c.close()

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return len(self.log), len(self.errors)

    def since(self, snap: tuple[int, int]) -> tuple[list[Logged], list[str]]:
        with self.lock:
            return list(self.log[snap[0]:]), list(self.errors[snap[1]:])

    def _accept(self) -> None:
        n = 0
        while not self._stop:
            try:
                c, _ = self._sock.accept()
            except OSError:
                return
            n += 1
            self._conns.append(c)
            threading.Thread(target=self._serve, args=(c, n), daemon=True).start()

    def _serve(self, sock: socket.socket, cid: int) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        raw = self.raw.setdefault(cid, bytearray())
        cur: Parsed | None = None
        try:
            while True:
                try:
                    ev = conn.next_event()
                except h11.RemoteProtocolError as e:
                    with self.lock:
                        self.errors.append(f"{self.name} conn {cid}: {e}; bytes {bytes(raw)!r}")
                    return
                if ev is h11.NEED_DATA:
                    data = sock.recv(1 << 16)
                    raw += data
                    conn.receive_data(data)
                    if not data:
                        if cur is not None or conn.their_state not in (h11.IDLE, h11.DONE,
                                                                         h11.MUST_CLOSE):
                            with self.lock:
                                self.errors.append(f"{EOF_INSIDE} {self.name} conn {cid}: "
                                                   f"bytes {bytes(raw)!r}")
                        return
                    continue
                if isinstance(ev, h11.Request):
                    cur = parsed(ev)
                elif isinstance(ev, h11.Data) and cur is not None:
                    cur.body += bytes(ev.data)
                elif isinstance(ev, h11.EndOfMessage) and cur is not None:
                    rid = next_id()
                    with self.lock:
                        self.log.append(Logged(self.name, rid, cid, cur))
                    body = f"{self.name} {rid} {cur.target}".encode("latin-1")
                    cur = None
                    sock.sendall(conn.send(h11.Response(status_code=200, headers=[
                        ("X-Backend", self.name), ("X-Request-Id", str(rid)),
                        ("Content-Length", str(len(body)))])) or b"")
                    sock.sendall(conn.send(h11.Data(data=body)) or b"")
                    sock.sendall(conn.send(h11.EndOfMessage()) or b"")
                    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                        conn.start_next_cycle()
                    else:
                        return
                elif isinstance(ev, h11.ConnectionClosed):
                    return
        except (OSError, h11.LocalProtocolError):
            return
        finally:
            with contextlib.suppress(OSError):
                sock.close()


# ---------------------------------------------------------------------- client


def exchange(port: int, raw: bytes, *, quiet: float = 0.08, limit: float = 5.0,
             more: callable | None = None) -> tuple[bytes, bool]:  # type: ignore[valid-type]
    """Send ``raw`` on a fresh connection to 127.0.0.1:``port``; read until the server
    closes, or ``quiet`` s pass without data and ``more()`` (if given) says nothing else
    is expected, or ``limit`` s in all. Returns (bytes received, closed by the server)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=limit)
    got = bytearray()
    closed = False
    try:
        with contextlib.suppress(OSError):
            s.sendall(raw)
        deadline = time.monotonic() + limit
        s.settimeout(quiet)
        while time.monotonic() < deadline:
            try:
                data = s.recv(1 << 16)
            except TimeoutError:
                if more is None or not more(bytes(got)):
                    break
                continue
            except OSError:
                closed = True
                break
            if not data:
                closed = True
                break
            got += data
    finally:
        s.close()
    return bytes(got), closed


def backend_ids(responses: list[tuple[int, list[tuple[str, str]], bytes]]) -> list[int]:
    out = []
    for status, headers, _ in responses:
        rid = next((v for n, v in headers if n.lower() == "x-request-id"), None)
        if status == 200 and rid is not None and rid.isdigit():
            out.append(int(rid))
    return out


def scan_ids(data: bytes) -> list[int]:
    """Backend ids in raw client bytes (a fallback when the responses do not parse)."""
    return [int(m) for m in re.findall(rb"(?im)^X-Request-Id: *(\d+)\r?$", data)]


# ---------------------------------------------------------------------- rauta serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_objects(listen: int, a_port: int, b_port: int) -> list[dict]:
    """The test config as Gateway API YAML objects: ``h.test`` PathPrefix ``/public`` ->
    service a (backend A), ``other.test`` PathPrefix ``/`` -> service b (backend B)."""
    objs: list[dict] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": {"name": "rauta"}, "spec": {"controllerName": "rauta.io/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "rauta",
                  "listeners": [{"name": "http", "port": listen, "protocol": "HTTP"}]}},
    ]
    for svc, host, prefix, port in (("a", "h.test", "/public", a_port),
                                    ("b", "other.test", "/", b_port)):
        objs += [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": "default"},
             "spec": {"ports": [{"name": "http", "port": 80}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": f"{svc}-1", "namespace": "default",
                          "labels": {"kubernetes.io/service-name": svc}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": port}],
             "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]},
            {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": f"route-{svc}", "namespace": "default"},
             "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [host],
                      "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                                 "backendRefs": [{"name": svc, "port": 80}]}]}},
        ]
    return objs


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    import ctypes
    import signal
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class RautaServe:
    """``python -m rauta.cli serve`` on the test config, as a subprocess of the checkout at
    ``repo``; waits until a request to ``other.test`` is answered by backend B."""

    def __init__(self, repo: str, workdir: str, a_port: int, b_port: int) -> None:
        import yaml  # the YAML is written by the test, not by rauta
        self.port, self.admin = free_port(), free_port()
        self.config = f"{workdir}/rauta.yaml"
        with open(self.config, "w") as fh:
            yaml.safe_dump_all(gateway_objects(self.port, a_port, b_port), fh, sort_keys=False)
        self.repo = repo
        self.log = f"{workdir}/rauta.log"
        self.proc = None

    def start(self, timeout: float = 30.0) -> RautaServe:
        import os
        import subprocess
        import sys
        env = {**os.environ, "PYTHONPATH": self.repo}
        self._fh = open(self.log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rauta.cli", "serve", "--config", self.config,
             "--admin", f"127.0.0.1:{self.admin}", "--grace", "1"],
            cwd=self.repo, env=env, stdin=subprocess.DEVNULL, stdout=self._fh,
            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)  # noqa: PLW1509
        deadline = time.monotonic() + timeout
        probe = b"GET /ready HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rauta serve exited: {open(self.log).read()[-2000:]}")
            with contextlib.suppress(OSError):
                data, _ = exchange(self.port, probe, quiet=0.5, limit=2)
                if b"X-Backend: B" in data:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"rauta serve not ready: {open(self.log).read()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        with contextlib.suppress(Exception):
            self._fh.close()


# ---------------------------------------------------------------------- one case end to end


@dataclass
class Outcome:
    """What one raw request did: the client's responses, what each backend logged."""

    responses: list[tuple[int, list[tuple[str, str]], bytes]]
    client_error: str | None
    closed: bool
    logged: list[Logged]
    backend_errors: list[str]
    client_bytes: bytes = b""

    @property
    def forwarded(self) -> int:
        return len(self.logged)

    @property
    def backends(self) -> set[str]:
        return {e.backend for e in self.logged}

    @property
    def statuses(self) -> list[int]:
        return [s for s, _, _ in self.responses]


def run_case(port: int, raw: bytes, backends: list[RecordingBackend], *,
             quiet: float = 0.08) -> Outcome:
    """Send ``raw`` on a fresh connection; read until close or quiet, waiting longer (up
    to 3 s) while a backend has logged a request whose response the client has not seen."""
    snaps = [b.snapshot() for b in backends]

    def pending(got: bytes) -> bool:
        logged = {e.id for b, s in zip(backends, snaps, strict=True) for e in b.since(s)[0]}
        return not logged <= set(scan_ids(got))

    data, closed = exchange(port, raw, quiet=quiet, limit=3.0, more=pending)
    time.sleep(0.01)
    logged: list[Logged] = []
    errors: list[str] = []
    for b, s in zip(backends, snaps, strict=True):
        lg, er = b.since(s)
        logged += lg
        errors += er
    responses, err = parse_responses(data)
    return Outcome(responses, err, closed, sorted(logged, key=lambda e: e.id), errors, data)
