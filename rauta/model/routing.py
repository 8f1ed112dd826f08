"""Request routing: one request and a RouterConfig in, one Decision out.

Role: the whole per-request decision of the data plane (which listener, which rule, redirect
or forward, which backend, which endpoint, what to rewrite). The proxy only parses bytes,
calls ``route`` and carries out the Decision, so every routing rule is unit-testable here.

Rules:
- Pure: no I/O, no clock, no randomness. Randomness enters only as the ``choice``
  argument; without it the choice comes from an xxhash of the flow key, so the same
  request from the same client connection always gets the same answer, in every process.
- Order of evaluation, each step answering at most once:
  1. no PortConfig for the request's (address, port) -> 404;
  2. ``normalize_path`` rejects the path -> 400 "bad request path" (see ``paths``): among
     others any ``#`` (a fragment never belongs in a request-target) and any ``;`` (path
     parameters are not supported: servlet containers would read ``/admin;x`` as
     ``/admin`` after a catch-all rule took it);
  3. listener isolation: the first ``ListenerRoutes`` whose hostname fits the Host (port
     ignored, ``""`` fits all) handles the request, the others are never consulted;
     none -> 404;
  4. the first rule of that listener (the translator's precedence order; found among the
     candidates of ``rule_index.RuleIndex``, a by-host, by-path superset, so the cost
     does not grow with the number of routes; where
     RegularExpression paths sit in that order is the translator's choice, this module
     simply honours the order it is given) whose hostname, method, path, headers and query
     all match wins; none -> 404 "no matching route";
  5. a rule the translator marked ``invalid`` (its filters or timeouts cannot be honoured)
     -> 500 "invalid rule", never a fall-through to a later rule;
  6. a RequestRedirect filter -> redirect; else weighted backend choice: no backends or
     all weights 0 -> 500; an invalid backend -> 500 "invalid backend"; a backend without
     ready endpoints -> 503 "no ready endpoints"; else a Maglev pick among its endpoints.
- Match semantics:
  - method: exact, case-sensitive (RFC 9110 methods are case-sensitive);
  - path: against the normalised path; Exact is string equality, PathPrefix is
    element-wise (``paths.prefix_matches``), RegularExpression is a full match (the whole
    value, as ``re.fullmatch`` would) in RE2 syntax (``compile_regex``);
  - headers: names case-insensitive; a header repeated in the request is matched as its
    values (each stripped of surrounding spaces/tabs) joined with "," (RFC 9110 §5.3);
    Exact compares case-sensitively, RegularExpression is a full match in RE2 syntax;
- Regular expressions (path, header, query) run on RE2 (``google-re2``), never on Python's
  backtracking ``re``: matching is linear in the input, so no pattern can stall the event
  loop (``/(a+)+`` against a long path costs what ``/a+`` costs). ``compile_regex`` compiles
  once (cached) with ``REGEX_MAX_MEM`` as RE2's memory budget; a pattern RE2 rejects
  (backreferences, lookaround, a repetition over 1000, a program over the budget) is an
  invalid match: the translator drops its rule (UnsupportedValue) and, should one reach
  the router anyway, it never matches. A value that is not valid UTF-8 text never matches.
  - query: ``urllib.parse.parse_qsl(query, keep_blank_values=True)``, so names and values
    are percent-decoded and "+" reads as a space; names are case-sensitive and only the
    first occurrence of a repeated parameter counts (the spec's recommendation).
- Backend choice: ``choice % total_weight`` walked over the cumulative weights of the
  rule's backends with weight > 0, in ``rule.backends`` order; invalid backends keep their
  share (and answer 500 for it). Endpoint choice: Maglev over the backend's endpoints,
  all weight 1, keyed by ``Endpoint.key``, looked up with the flow key.
- Flow key (``hash_on``): ``"flow"`` -> ``"METHOD PATH CLIENT_IP CLIENT_PORT"`` (PATH is the
  normalised path); ``"client-ip"`` -> the client IP; ``"header:NAME"`` -> that header's
  (joined) value, falling back to the flow key when the header is absent. Any other
  value is treated as ``"flow"``.
- Redirect Location (absolute URL): scheme = redirect scheme or the request's; host = the
  redirect hostname or the request Host without its port; port = the redirect port, else
  the well-known port of the redirect scheme when one is configured, else the listener
  port (the Gateway API RequestRedirect rules: ``PortConfig.public_port`` when the port
  is an internal one of ``--gateway-services``, else the port that accepted it); ``:80`` is omitted for http and ``:443``
  for https; path = ReplaceFullPath, ReplacePrefixMatch (over the rule's PathPrefix value)
  or the normalised path; the query is kept untouched.
- Forward: ``upstream_host`` is the URLRewrite hostname or the Host header exactly as
  received (with its port); ``upstream_path`` is the normalised path after any URLRewrite,
  plus ``"?" + query`` when the query is not empty. Header modifiers are listed rule-level
  first, then backend-level, for requests and responses alike; apply them in that order.
- Redirects carry the rule-level response header modifier; error decisions carry none.
- Steps 2-4 are memoised per PortConfig (by identity), keyed by the raw (Host, path),
  when their outcome depends on nothing else: every rule tested up to the winner matches
  on hostname and path only (``_select``). The memo holds at most ``MEMO_MAX`` entries
  and is emptied when full; ``prepare`` keeps the memos of the config it prepares and of
  the one serving, no older. A memoised Decision equals a fresh one (hypothesis,
  ``tests/unit/model/test_routing_memo.py``).
"""

from __future__ import annotations

import functools
from typing import Any, Literal, NamedTuple, Protocol, cast
from urllib.parse import parse_qsl

import re2  # type: ignore[import-untyped]
import xxhash

from rauta.model import maglev
from rauta.model.config import (
    Backend,
    Endpoint,
    HeaderModifier,
    ListenerRoutes,
    Match,
    Mirror,
    PathMatch,
    PathModifier,
    PortConfig,
    RouterConfig,
    Rule,
    Timeouts,
)
from rauta.model.hostnames import matches as host_matches
from rauta.model.hostnames import strip_port
from rauta.model.paths import normalize_path, prefix_matches, replace_prefix
from rauta.model.rule_index import index_for, port_index
from rauta.model.rule_index import prepare as prepare_rule_index

CHOICE_SEED = 0x72617574  # "raut": keeps the weighted choice independent of Maglev's hash
_DEFAULT_PORTS = {"http": 80, "https": 443}


class RequestView(NamedTuple):
    """What routing needs to know about one request, exactly as received. (A NamedTuple:
    immutable like the frozen dataclasses, and built per request in a third of the time.)"""

    method: str
    host: str  # Host header, may carry a port
    path: str  # raw path, without the query
    query: str  # raw query without "?", "" when none
    headers: tuple[tuple[str, str], ...]  # as received, any name case
    port: int  # listener port the request arrived on
    scheme: str = "http"
    address: str = ""  # the PortConfig address whose socket accepted it ("": listen host)
    client_ip: str = ""
    client_port: int = 0


class Decision(NamedTuple):
    """What the proxy must do with a request (a NamedTuple, for the same reason)."""

    kind: Literal["forward", "redirect", "error"]
    status: int = 0  # 0 for forward, 3xx for redirect, 4xx/5xx for error
    reason: str = ""  # short plain text for error bodies
    port: PortConfig | None = None
    listener: ListenerRoutes | None = None
    rule: Rule | None = None
    backend: Backend | None = None
    endpoint: Endpoint | None = None
    upstream_path: str = ""
    upstream_host: str = ""
    location: str | None = None
    request_headers: tuple[HeaderModifier, ...] = ()
    response_headers: tuple[HeaderModifier, ...] = ()
    mirrors: tuple[Mirror, ...] = ()
    timeouts: Timeouts | None = None


REGEX_MAX_MEM = 1 << 20  # RE2's budget per pattern (program + DFA cache), bytes


class Regex(Protocol):
    """The part of a compiled RE2 pattern routing uses."""

    programsize: int

    def fullmatch(self, text: str) -> object | None: ...


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a bad pattern is reported in status, not on stderr
    options.max_mem = REGEX_MAX_MEM
    return options


_RE2_OPTIONS = _options()


def regex_error(pattern: str) -> str | None:
    """Why RE2 cannot compile ``pattern`` (within ``REGEX_MAX_MEM``), or None."""
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        return detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    return None


@functools.lru_cache(maxsize=4096)
def compile_regex(pattern: str) -> Regex | None:
    """The compiled RE2 pattern, or None when RE2 rejects it (it then never matches)."""
    try:
        return cast(Regex, re2.compile(pattern, _RE2_OPTIONS))
    except re2.error:
        return None


def _fullmatch(pattern: str, value: str) -> bool:
    compiled = compile_regex(pattern)
    if compiled is None:
        return False
    try:
        return compiled.fullmatch(value) is not None
    except UnicodeEncodeError:  # lone surrogates: not text RE2 can read
        return False


class _Lazy:
    """Per-request views of headers and query, built only when a rule needs them."""

    __slots__ = ("_req", "_headers", "_query")

    def __init__(self, req: RequestView) -> None:
        self._req = req
        self._headers: dict[str, str] | None = None
        self._query: dict[str, str] | None = None

    def headers(self) -> dict[str, str]:
        if self._headers is None:
            values: dict[str, list[str]] = {}
            for name, value in self._req.headers:
                values.setdefault(name.lower(), []).append(value.strip(" \t"))
            self._headers = {name: ",".join(vs) for name, vs in values.items()}
        return self._headers

    def query(self) -> dict[str, str]:
        if self._query is None:
            params: dict[str, str] = {}
            for name, value in parse_qsl(self._req.query, keep_blank_values=True):
                params.setdefault(name, value)
            self._query = params
        return self._query


def _path_matches(match: PathMatch, path: str) -> bool:
    if match.type == "PathPrefix":
        return prefix_matches(match.value, path)
    if match.type == "Exact":
        return path == match.value
    return _fullmatch(match.value, path)


def _value_matches(kind: str, expected: str, actual: str) -> bool:
    if kind == "Exact":
        return actual == expected
    return _fullmatch(expected, actual)


def _rule_matches(rule: Rule, host: str, path: str, req: RequestView, lazy: _Lazy) -> bool:
    match: Match = rule.match
    if match.method is not None and match.method != req.method:
        return False
    if rule.hostname and not host_matches(rule.hostname, host):
        return False
    if not _path_matches(match.path, path):
        return False
    if match.headers:
        headers = lazy.headers()
        for hm in match.headers:
            value = headers.get(hm.name.lower())
            if value is None or not _value_matches(hm.type, hm.value, value):
                return False
    if match.query:
        query = lazy.query()
        for qm in match.query:
            value = query.get(qm.name)
            if value is None or not _value_matches(qm.type, qm.value, value):
                return False
    return True


def _modified_path(modifier: PathModifier | None, rule: Rule, path: str) -> str:
    """Apply a ReplaceFullPath / ReplacePrefixMatch modifier to the normalised path."""
    if modifier is None:
        return path
    if modifier.type == "ReplaceFullPath":
        return modifier.value or "/"
    if rule.match.path.type != "PathPrefix":
        return path  # the translator rejects this combination; leave the path alone
    return replace_prefix(path, rule.match.path.value, modifier.value)


def flow_key(req: RequestView, path: str, hash_on: str, lazy: _Lazy | None = None) -> bytes:
    """The bytes hashed for the weighted choice and the Maglev lookup (see module doc)."""
    if hash_on == "client-ip":
        key = req.client_ip
    elif hash_on.startswith("header:"):
        headers = (lazy or _Lazy(req)).headers()
        value = headers.get(hash_on[len("header:") :].strip().lower())
        key = value if value is not None else _flow(req, path)
    else:
        key = _flow(req, path)
    return key.encode("utf-8", "surrogatepass")


def _flow(req: RequestView, path: str) -> str:
    return f"{req.method} {path} {req.client_ip} {req.client_port}"


def pick_weighted(backends: tuple[Backend, ...], choice: int) -> Backend | None:
    """The backend owning slot ``choice % total_weight``; None when all weights are 0."""
    total = sum(b.weight for b in backends if b.weight > 0)
    if total <= 0:
        return None
    slot = choice % total
    for backend in backends:
        if backend.weight <= 0:
            continue
        if slot < backend.weight:
            return backend
        slot -= backend.weight
    return None  # unreachable


_ENDPOINT_INDEX: dict[
    int, tuple[tuple[Endpoint, ...], maglev.MaglevTable, dict[str, Endpoint]]
] = {}
_ENDPOINT_INDEX_MAX = 1024


def _endpoint_index(
    endpoints: tuple[Endpoint, ...],
) -> tuple[maglev.MaglevTable, dict[str, Endpoint]]:
    """Maglev table and key map of an endpoints tuple, cached by identity (configs are
    immutable and reused across requests, so this is a dict lookup on the hot path)."""
    entry = _ENDPOINT_INDEX.get(id(endpoints))
    if entry is not None and entry[0] is endpoints:
        return entry[1], entry[2]
    by_key = {e.key: e for e in endpoints}
    table = maglev.cached(tuple((key, 1) for key in by_key))
    if len(_ENDPOINT_INDEX) < _ENDPOINT_INDEX_MAX:  # unprepared configs: a bounded cache
        # The entry holds ``endpoints`` itself, so its id cannot be reused while cached.
        _ENDPOINT_INDEX[id(endpoints)] = (endpoints, table, by_key)
    return table, by_key


# The endpoint sets (two or more endpoints) of every Rule the last ``prepare`` saw, by
# identity. A config that reuses the previous one's Rule objects (the incremental
# translator does) is then prepared in time proportional to what changed, plus one dict
# lookup per rule. An entry holds its Rule, so that id cannot be reused while cached.
_RuleEntry = tuple[Rule, tuple[tuple[Endpoint, ...], ...], frozenset[tuple[str, int]]]
_RULE_SETS: dict[int, _RuleEntry] = {}
# The config prepared last and every (address, port) its backends and mirrors may send to.
_PREPARED: tuple[RouterConfig | None, frozenset[tuple[str, int]]] = (None, frozenset())
# The sets the last ``prepare`` built for its own config: the next one keeps them.
_LAST_SETS: dict[int, tuple[tuple[Endpoint, ...], maglev.MaglevTable, dict[str, Endpoint]]] = {}


def _rule_entry(rule: Rule) -> _RuleEntry:
    backends = (*rule.backends, *(m.backend for m in rule.filters.mirrors))
    return (rule, tuple(b.endpoints for b in backends if len(b.endpoints) >= 2),
            frozenset((e.address, e.port) for b in backends for e in b.endpoints))


def endpoint_keys(config: RouterConfig) -> frozenset[tuple[str, int]]:
    """Every ``(address, port)`` a backend or mirror of ``config`` may send to: computed
    by ``prepare`` (off the event loop) for the config it prepared, else here."""
    prepared, keys = _PREPARED
    if prepared is config:
        return keys
    out: set[tuple[str, int]] = set()
    for port in config.ports:
        for lis in port.listeners:
            for rule in lis.rules:
                hit = _RULE_SETS.get(id(rule))
                out.update(hit[2] if hit is not None and hit[0] is rule else _rule_entry(rule)[2])
    return frozenset(out)


def prepare(config: RouterConfig) -> int:
    """Build the Maglev table of every endpoint set ``config`` uses, ahead of traffic.

    The proxy calls this off its event loop before installing a config, so no request
    pays for a table build (a few ms at M = 65537). The index then holds the sets of this
    config and of the one prepared before it (still serving until the swap), replacing
    the previous index in one assignment. Returns
    the number of sets. It also builds the rule and port indexes (``rule_index``) and the
    config's ``endpoint_keys``.
    """
    global _ENDPOINT_INDEX, _RULE_SETS, _PREPARED, _LAST_SETS
    old, old_rules = _ENDPOINT_INDEX, _RULE_SETS
    new: dict[int, tuple[tuple[Endpoint, ...], maglev.MaglevTable, dict[str, Endpoint]]] = {}
    rule_sets: dict[int, _RuleEntry] = {}
    keys: set[tuple[str, int]] = set()
    for port in config.ports:
        for lis in port.listeners:
            for rule in lis.rules:
                hit = old_rules.get(id(rule))
                found = hit if hit is not None and hit[0] is rule else _rule_entry(rule)
                rule_sets[id(rule)] = found
                keys.update(found[2])
                for eps in found[1]:
                    if id(eps) in new:
                        continue
                    entry = old.get(id(eps))
                    if entry is None or entry[0] is not eps:
                        by_key = {e.key: e for e in eps}
                        entry = (eps, maglev.cached(tuple((k, 1) for k in by_key)), by_key)
                    new[id(eps)] = entry
    # Two generations: this config's sets and those of the config still serving until
    # the swap (its requests would otherwise build Maglev tables on the event loop).
    _ENDPOINT_INDEX, _RULE_SETS = {**_LAST_SETS, **new}, rule_sets
    _LAST_SETS = new
    serving = _PREPARED[0]
    _PREPARED = (config, frozenset(keys))
    prepare_rule_index(config)
    _keep_memos((*config.ports, *(serving.ports if serving is not None else ())))
    return len(new)


def pick_endpoint(endpoints: tuple[Endpoint, ...], key: bytes) -> Endpoint:
    """The Maglev choice among ``endpoints`` (non-empty) for the flow ``key``."""
    if len(endpoints) == 1:
        return endpoints[0]
    table, by_key = _endpoint_index(endpoints)
    return by_key[table.lookup_key(key)]


def _location(req: RequestView, host: str, path: str, rule: Rule,
              listener_port: int) -> str:
    redirect = rule.filters.redirect
    assert redirect is not None
    scheme = redirect.scheme or req.scheme
    hostname = redirect.hostname or host
    if redirect.port is not None:
        port = redirect.port
    elif redirect.scheme:
        port = _DEFAULT_PORTS.get(redirect.scheme, listener_port)
    else:
        port = listener_port
    netloc = hostname if _DEFAULT_PORTS.get(scheme) == port else f"{hostname}:{port}"
    new_path = _modified_path(redirect.path, rule, path)
    query = f"?{req.query}" if req.query else ""
    return f"{scheme}://{netloc}{new_path}{query}"


# (normalised path, host without port, listener, rule, cacheable) of one (Host, path):
# steps 2-4 of the module rules.
_Selected = tuple[str | None, str, ListenerRoutes | None, Rule | None, bool]
MEMO_MAX = 4096  # (Host, path) outcomes kept per PortConfig; the memo is emptied when full
_MEMO: dict[int, tuple[PortConfig, dict[tuple[str, str], _Selected]]] = {}


def _memo_for(port: PortConfig) -> dict[tuple[str, str], _Selected]:
    """The (Host, path) memo of ``port``, by identity (see ``_select``)."""
    entry = _MEMO.get(id(port))
    if entry is not None and entry[0] is port:
        return entry[1]
    memo: dict[tuple[str, str], _Selected] = {}
    if len(_MEMO) >= 64:  # ports never prepared (tests, tools): bounded, emptied when full
        _MEMO.clear()
    _MEMO[id(port)] = (port, memo)
    return memo


def _keep_memos(ports: tuple[PortConfig, ...]) -> None:
    """Keep the memos of ``ports`` (the config being prepared and the one serving), drop
    the rest. Only looks entries up, never iterates ``_MEMO``: the serving loop may be
    adding to it meanwhile."""
    global _MEMO
    kept: dict[int, tuple[PortConfig, dict[tuple[str, str], _Selected]]] = {}
    for port in ports:
        entry = _MEMO.get(id(port))
        if entry is not None and entry[0] is port:
            kept[id(port)] = entry
    _MEMO = kept


def _plain(rule: Rule) -> bool:
    """Does ``rule`` match on hostname and path only (no method, header or query)?"""
    match = rule.match
    return match.method is None and not match.headers and not match.query


def _select(port: PortConfig, req: RequestView) -> _Selected:
    """Steps 2-4: the normalised path (None: 400), the listener (None: 404) and the rule
    (None: 404) for ``req``, and whether that outcome is a function of the Host header
    and the path alone: true when every rule tested before the winner (and the winner)
    matches on hostname and path only. ``route`` then memoises it per PortConfig, keyed
    by the raw (Host, path), so a repeated request skips these steps; the memo is
    bounded (``MEMO_MAX``), so a flood of distinct paths costs at most a rebuild."""
    path = normalize_path(req.path)
    host = strip_port(req.host)
    if path is None:
        return None, host, None, None, True
    listener = next((lr for lr in port.listeners if host_matches(lr.hostname, host)), None)
    if listener is None:
        return path, host, None, None, True
    lazy = _Lazy(req)
    rules = listener.rules
    cacheable = True
    for i in index_for(listener).candidates(host, path):
        rule = rules[i]
        cacheable = cacheable and _plain(rule)
        if _rule_matches(rule, host, path, req, lazy):
            return path, host, listener, rule, cacheable
    return path, host, listener, None, cacheable


def _error(status: int, reason: str, port: PortConfig, listener: ListenerRoutes, rule: Rule,
           backend: Backend | None = None) -> Decision:
    return Decision(kind="error", status=status, reason=reason, port=port, listener=listener,
                    rule=rule, backend=backend)


def _modifiers(rule_level: HeaderModifier | None,
               backend_level: HeaderModifier | None) -> tuple[HeaderModifier, ...]:
    """The header modifiers to apply, rule-level first (without a generator per call)."""
    if rule_level is None:
        return () if backend_level is None else (backend_level,)
    return (rule_level,) if backend_level is None else (rule_level, backend_level)


def route(
    config: RouterConfig,
    req: RequestView,
    *,
    choice: int | None = None,
    hash_on: str = "flow",
) -> Decision:
    """Decide what to do with ``req`` under ``config`` (see the module doc for the rules)."""
    port = port_index(config).get((req.address, req.port))
    if port is None:
        return Decision(kind="error", status=404, reason="no listener on this port")
    memo = _memo_for(port)
    found = memo.get((req.host, req.path))
    if found is None:
        found = _select(port, req)
        if found[4]:  # the outcome depends on nothing but the Host and the path
            if len(memo) >= MEMO_MAX:
                memo.clear()
            memo[(req.host, req.path)] = found
    path, host, listener, rule, _ = found
    if path is None:
        return Decision(kind="error", status=400, reason="bad request path", port=port)
    if listener is None:
        return Decision(kind="error", status=404, reason="no matching route", port=port)
    if rule is None:
        return Decision(
            kind="error", status=404, reason="no matching route", port=port, listener=listener
        )
    if rule.invalid is not None:
        return Decision(kind="error", status=500, reason="invalid rule", port=port,
                        listener=listener, rule=rule)

    filters = rule.filters
    if filters.redirect is not None:
        return Decision(
            kind="redirect",
            status=filters.redirect.status_code,
            port=port,
            listener=listener,
            rule=rule,
            location=_location(req, host, path, rule,
                               port.public_port if port.public_port is not None else req.port),
            response_headers=(filters.response_headers,) if filters.response_headers else (),
        )

    backends = rule.backends
    if not backends:
        return _error(500, "no backends", port, listener, rule)
    key = b""  # the flow key, hashed only when a choice among several needs it
    if len(backends) == 1 and backends[0].weight > 0:
        backend: Backend | None = backends[0]  # the weighted choice of one is that one
    else:
        if choice is None:
            key = flow_key(req, path, hash_on)
            choice = xxhash.xxh64_intdigest(key, seed=CHOICE_SEED)
        backend = pick_weighted(backends, choice)
    if backend is None:
        return _error(500, "all backend weights are zero", port, listener, rule)
    if backend.invalid is not None:
        return _error(500, "invalid backend", port, listener, rule, backend)
    if not backend.endpoints:
        return _error(503, "no ready endpoints", port, listener, rule, backend)
    endpoints = backend.endpoints
    if len(endpoints) == 1:
        endpoint = endpoints[0]
    else:
        endpoint = pick_endpoint(endpoints, key or flow_key(req, path, hash_on))

    rewrite = filters.rewrite
    upstream_host = req.host
    upstream_path = path
    if rewrite is not None:
        upstream_host = rewrite.hostname or req.host
        upstream_path = _modified_path(rewrite.path, rule, path)
    if req.query:
        upstream_path = f"{upstream_path}?{req.query}"

    return Decision(
        kind="forward",
        status=0,
        port=port,
        listener=listener,
        rule=rule,
        backend=backend,
        endpoint=endpoint,
        upstream_path=upstream_path,
        upstream_host=upstream_host,
        request_headers=_modifiers(filters.request_headers, backend.request_headers),
        response_headers=_modifiers(filters.response_headers, backend.response_headers),
        mirrors=filters.mirrors,
        timeouts=rule.timeouts,
    )
