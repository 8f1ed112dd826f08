"""HTTPS listeners: certificates from PEM bytes, SNI selection, 421, in-place updates."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from rauta.model.config import ListenerRoutes, TLSCertificate
from rauta.proxy import Proxy
from rauta.proxy.tls import context_from_pem, select_hostname

from .conftest import Client, EchoBackend, backend, config, free_port, port_config, rule

pytestmark = pytest.mark.timeout(30)

NAMES = {"default/default": "default.example", "default/a": "a.example.com",
         "default/a2": "a.example.com", "default/wild": "*.b.example.com"}


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, bytes]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    tmp: Path = tmp_path_factory.mktemp("certs")
    out = {}
    for i, (secret, cn) in enumerate(NAMES.items()):
        cert, key = tmp / f"{i}.crt", tmp / f"{i}.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}",
             "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        out[secret] = (cert.read_bytes(), key.read_bytes())
    return out


def der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def test_select_hostname_prefers_exact_then_longest_wildcard_then_default() -> None:
    names = ["a.example.com", "*.example.com", "*.b.example.com", ""]
    assert select_hostname(names, "a.example.com") == "a.example.com"
    assert select_hostname(names, "A.Example.COM") == "a.example.com"
    assert select_hostname(names, "x.b.example.com") == "*.b.example.com"
    assert select_hostname(names, "y.x.b.example.com") == "*.b.example.com"
    assert select_hostname(names, "c.example.com") == "*.example.com"
    assert select_hostname(names, "example.com") == ""
    assert select_hostname(names, None) == ""
    assert select_hostname(["a.example.com"], "b.example.com") is None


def test_context_from_pem_rejects_garbage(pems: dict[str, tuple[bytes, bytes]]) -> None:
    assert isinstance(context_from_pem([pems["default/a"]]), ssl.SSLContext)
    with pytest.raises(ssl.SSLError):
        context_from_pem([(b"not a cert", b"not a key")])


def https_config(port: int, echo: EchoBackend, a_secret: str = "default/a"):
    def lr(name: str, host: str) -> ListenerRoutes:
        return ListenerRoutes(gateway="default/gw", listener=name, hostname=host,
                              rules=(rule(backend(echo.port), route=f"default/{name}"),))

    return config(port_config(
        port, protocol="HTTPS",
        listeners=(lr("a", "a.example.com"), lr("wild", "*.b.example.com"), lr("any", "")),
        certificates=(TLSCertificate(hostname="a.example.com", secrets=(a_secret,)),
                      TLSCertificate(hostname="*.b.example.com", secrets=("default/wild",)),
                      TLSCertificate(hostname="", secrets=("default/default",)))))


async def tls_client(port: int, sni: str) -> tuple[Client, bytes]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    client = await Client.open(port, ssl=ctx, server_hostname=sni)
    cert = client.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return client, cert


@pytest.mark.asyncio
async def test_sni_picks_the_certificate_and_421_on_mismatch(
        proxy: Proxy, echo: EchoBackend, pems: dict[str, tuple[bytes, bytes]]) -> None:
    port = free_port()
    applied = await proxy.apply(https_config(port, echo), pems)
    assert applied.ports == (port,) and applied.failed == ()

    client, cert = await tls_client(port, "a.example.com")
    assert cert == der(pems["default/a"][0])
    resp = await client.request("GET", "/", host="a.example.com")
    assert resp.status == 200
    headers = {n.lower(): v for n, v in json.loads(resp.body)["headers"]}
    assert headers["x-forwarded-proto"] == "https"
    resp = await client.request("GET", "/", host="x.b.example.com")
    assert resp.status == 421  # Host selects another listener than SNI did
    resp = await client.request("GET", "/", host="a.example.com:443")  # port ignored
    assert resp.status == 200
    await client.close()

    client, cert = await tls_client(port, "x.b.example.com")
    assert cert == der(pems["default/wild"][0])
    assert (await client.request("GET", "/", host="x.b.example.com")).status == 200
    await client.close()

    client, cert = await tls_client(port, "")  # no SNI: the default certificate
    assert cert == der(pems["default/default"][0])
    assert (await client.request("GET", "/", host="a.example.com")).status == 200
    await client.close()

    client, cert = await tls_client(port, "unknown.example")
    assert cert == der(pems["default/default"][0])
    assert (await client.request("GET", "/", host="unknown.example")).status == 200
    await client.close()


@pytest.mark.asyncio
async def test_certificates_updated_in_place(proxy: Proxy, echo: EchoBackend,
                                             pems: dict[str, tuple[bytes, bytes]]) -> None:
    port = free_port()
    await proxy.apply(https_config(port, echo), pems)
    old, cert = await tls_client(port, "a.example.com")
    assert cert == der(pems["default/a"][0])
    applied = await proxy.apply(https_config(port, echo, a_secret="default/a2"), pems)
    assert applied.ports == (port,)
    new, cert = await tls_client(port, "a.example.com")
    assert cert == der(pems["default/a2"][0])
    assert (await old.request("GET", "/", host="a.example.com")).status == 200  # undisturbed
    assert (await new.request("GET", "/", host="a.example.com")).status == 200
    await old.close()
    await new.close()


@pytest.mark.asyncio
async def test_https_port_without_usable_certificate_fails(
        proxy: Proxy, echo: EchoBackend, pems: dict[str, tuple[bytes, bytes]]) -> None:
    port = free_port()
    applied = await proxy.apply(https_config(port, echo), {})
    assert applied.ports == () and "no usable certificate" in (applied.failure(port) or "")
    applied = await proxy.apply(https_config(port, echo), pems)
    assert applied.ports == (port,)
    plain = free_port()
    # Changing a port's protocol re-creates its listener.
    await proxy.apply(config(port_config(plain, rule(backend(echo.port)))))
    applied = await proxy.apply(https_config(plain, echo), pems)
    assert applied.ports == (plain,)
    client, _ = await tls_client(plain, "a.example.com")
    assert (await client.request("GET", "/", host="a.example.com")).status == 200
    await client.close()
    await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_trailing_dot_sni_still_gets_421(
        proxy: Proxy, echo: EchoBackend, pems: dict[str, tuple[bytes, bytes]]) -> None:
    """Point 14: an SNI name with a trailing dot names the same listener as without it."""
    port = free_port()
    await proxy.apply(https_config(port, echo), pems)
    client, cert = await tls_client(port, "a.example.com.")
    assert cert == der(pems["default/a"][0])
    assert (await client.request("GET", "/", host="x.b.example.com")).status == 421
    assert (await client.request("GET", "/", host="A.example.com.")).status == 200
    await client.close()
