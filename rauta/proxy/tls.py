"""Server-side TLS for HTTPS listener ports: contexts from PEM bytes and SNI selection.

Role: turn a port's ``TLSCertificate`` list (listener hostname -> Secret names) plus the
caller's PEM material (``Mapping["namespace/name", (cert_pem, key_pem)]``) into one
``ssl.SSLContext`` per certificate hostname, and pick among them during the handshake.

Rules:
- SNI selection (``select_hostname``): the certificate whose hostname equals the SNI name
  wins; else the matching wildcard with the longest suffix (``*.example.com`` matches
  ``a.example.com`` and ``a.b.example.com``, never ``example.com``); else the default
  (hostname ``""``). Names compare case-insensitively.
- A handshake without SNI, or whose name matches nothing, uses the default certificate;
  when the port has no ``""`` certificate, the least specific one (the last in the
  port's most-specific-first order) serves as the default.
- Several Secrets for one hostname are all loaded into that hostname's context (e.g. one
  RSA and one ECDSA pair); a pair that fails to load is reported and skipped.
- ``PortTLS.update`` changes certificates in place: the listening socket keeps its
  context object, whose SNI callback reads the new table from then on, and whose default
  certificate is reloaded. Established connections are unaffected. (OpenSSL keeps one
  certificate per key type, so a default switching from RSA to ECDSA leaves the old RSA
  one usable for non-SNI handshakes until the port is re-created.)
- The SNI name the client sent is remembered on the ``SSLObject`` as ``rauta_sni`` so
  the HTTP layer can answer 421 Misdirected Request when a request's Host selects a
  different listener than the SNI name did (Gateway API: HTTPS listener isolation; a
  client re-using a connection for another host must be told to open a new one).
- ALPN offers ``h2`` and ``http/1.1`` on every context (the SNI callback may swap the
  handshake's context, and the one it ends with is the one that answers ALPN); a client
  that offers no ALPN speaks HTTP/1.1. ``server`` hands an ``h2`` connection to ``h2``.
- PEM bytes never touch the disk: they are loaded through anonymous memory files
  (``memfd_create``), with a private temporary directory as the fallback.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterable, Mapping, Sequence

from rauta.model.config import TLSCertificate
from rauta.model.hostnames import is_wildcard

Pem = tuple[bytes, bytes]
ALPN = ["h2", "http/1.1"]  # on every context: the SNI callback may swap the context


def select_hostname(hostnames: Iterable[str], server_name: str | None) -> str | None:
    """The certificate hostname to serve for ``server_name`` (see module doc), or None."""
    names = [h.lower() for h in hostnames]
    if server_name:
        sni = server_name.lower().rstrip(".")
        if sni in names:
            return sni
        best: str | None = None
        for h in names:
            if is_wildcard(h) and sni.endswith(h[1:]) and len(sni) > len(h) - 1:
                if best is None or len(h) > len(best):
                    best = h
        if best is not None:
            return best
    return "" if "" in names else None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def load_pem(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """Load one certificate chain and key, given as PEM bytes, into ``ctx``."""
    if hasattr(os, "memfd_create"):
        fds = [os.memfd_create("rauta-tls"), os.memfd_create("rauta-tls")]
        try:
            _write_all(fds[0], cert)
            _write_all(fds[1], key)
            ctx.load_cert_chain(f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}")
            return
        except FileNotFoundError:
            pass  # no /proc: fall back to a private temporary directory
        finally:
            for fd in fds:
                os.close(fd)
    with tempfile.TemporaryDirectory(prefix="rauta-tls-") as tmp:
        paths = (os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem"))
        for path, data in zip(paths, (cert, key), strict=True):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
        ctx.load_cert_chain(*paths)


def server_context() -> ssl.SSLContext:
    """A fresh server context: TLS 1.2+, ALPN ``h2`` then ``http/1.1``, no certificate yet."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(ALPN)
    return ctx


def context_from_pem(pairs: Sequence[Pem]) -> ssl.SSLContext:
    """A server context holding every ``(cert_pem, key_pem)`` pair; raises on bad PEM."""
    ctx = server_context()
    for cert, key in pairs:
        load_pem(ctx, cert, key)
    return ctx


def check_pair(cert: bytes, key: bytes) -> str | None:
    """Why a certificate/key PEM pair cannot serve TLS, or None when it loads."""
    try:
        load_pem(server_context(), cert, key)
    except (ssl.SSLError, OSError, ValueError) as exc:
        return f"cannot load the certificate and key: {exc}"
    return None


class PortTLS:
    """The TLS state of one HTTPS port; ``context`` is what the listening socket uses."""

    def __init__(self) -> None:
        self.context = server_context()
        self.context.sni_callback = self._on_sni
        self._by_host: dict[str, ssl.SSLContext] = {}
        self._default_pairs: tuple[Pem, ...] = ()
        self._signature: object = None  # what the installed contexts were built from

    @property
    def hostnames(self) -> tuple[str, ...]:
        return tuple(self._by_host)

    def update(self, certificates: Sequence[TLSCertificate],
               secrets: Mapping[str, Pem]) -> list[str]:
        """Install the certificates of a port; returns problems found (may be empty).

        Raises ``ValueError`` when no certificate at all could be loaded. Unchanged
        certificates and key material are not loaded again (a config change elsewhere, such
        as endpoint churn, costs nothing here).
        """
        signature = (tuple(certificates),
                     tuple((n, secrets.get(n)) for c in certificates for n in c.secrets))
        if signature == self._signature:
            return []
        problems: list[str] = []
        by_host: dict[str, ssl.SSLContext] = {}
        pairs_by_host: dict[str, list[Pem]] = {}
        for cert in certificates:
            host = cert.hostname.lower()
            if host in by_host:
                continue
            ctx = server_context()
            loaded: list[Pem] = []
            for name in cert.secrets:
                pem = secrets.get(name)
                if pem is None:
                    problems.append(f"secret {name} not supplied")
                    continue
                try:
                    load_pem(ctx, pem[0], pem[1])
                except (ssl.SSLError, OSError, ValueError) as exc:
                    problems.append(f"secret {name}: {exc}")
                    continue
                loaded.append(pem)
            if loaded:
                by_host[host] = ctx
                pairs_by_host[host] = loaded
        if not by_host:
            raise ValueError("no usable certificate: " + ("; ".join(problems) or "none given"))
        default = "" if "" in by_host else list(by_host)[-1]
        default_pairs = tuple(pairs_by_host[default])
        if default_pairs != self._default_pairs:
            for cert_pem, key_pem in default_pairs:
                load_pem(self.context, cert_pem, key_pem)
            self._default_pairs = default_pairs
        self._by_host = by_host
        self._signature = signature
        return problems

    def _on_sni(self, sslobj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                _ctx: ssl.SSLContext) -> None:
        with contextlib.suppress(AttributeError):
            sslobj.rauta_sni = server_name.lower().rstrip(".") if server_name else None  # type: ignore[union-attr]
        host = select_hostname(self._by_host, server_name)
        chosen = self._by_host.get(host) if host is not None else None
        if chosen is not None:
            sslobj.context = chosen
