"""The host side of the pod runner: bridge and per-Pod network namespaces, CRI-style log
files, and the fake kubelet's HTTPS ``/containerLogs`` endpoint.

Needs root. Every name carries the runner's id, so runners of different worktrees on one
host never touch each other's bridge or namespaces. Must not import ``rauta``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import tempfile
from pathlib import Path

from aiohttp import web


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=20)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def used_slash24s() -> set[int]:
    text = ip("-4", "-o", "addr", "show").stdout + ip("-4", "route", "show").stdout
    used = set()
    for word in text.split():
        if word.startswith("10.244."):
            parts = word.split("/")[0].split(".")
            if len(parts) == 4 and parts[2].isdigit():
                used.add(int(parts[2]))
    return used


class PodNetwork:
    """Bridge ``rpb<id>`` with ``10.244.X.1/24``; per Pod a netns ``rp<id>-<uid8>`` whose
    ``eth0`` is ``10.244.X.N/24`` on a veth into the bridge. No default route anywhere."""

    def __init__(self, runner_id: str) -> None:
        self.id = runner_id
        self.bridge = f"rpb{runner_id}"
        self.octet = 0
        self._next = 2
        self._used: set[int] = set()

    @property
    def host_ip(self) -> str:
        return f"10.244.{self.octet}.1"

    def netns(self, uid: str) -> str:
        return f"rp{self.id}-{uid[:8]}"

    def cleanup_stale(self) -> None:
        for line in ip("netns", "list").stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(f"rp{self.id}-"):
                ip("netns", "del", name, check=False)
        ip("link", "del", self.bridge, check=False)

    def create(self) -> None:
        self.cleanup_stale()
        free = sorted(set(range(10, 100)) - used_slash24s())
        if not free:
            raise RuntimeError("no free 10.244.X.0/24 on this host")
        self.octet = free[int(self.id, 16) % len(free)]
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def destroy(self) -> None:
        self.cleanup_stale()

    def add_pod(self, uid: str) -> str:
        """Make the Pod's netns; return its IP. Addresses go round-robin, not lowest-free,
        so a stale EndpointSlice does not name a new Pod."""
        ns, host_if, tmp_if = self.netns(uid), f"rph{uid[:8]}", f"rpp{uid[:8]}"
        for _ in range(253):
            n = self._next
            self._next = 2 if self._next >= 254 else self._next + 1
            if n not in self._used:
                break
        else:
            raise RuntimeError("pod CIDR exhausted")
        self._used.add(n)
        addr = f"10.244.{self.octet}.{n}"
        try:
            ip("netns", "add", ns)
            ip("link", "add", host_if, "type", "veth", "peer", "name", tmp_if)
            ip("link", "set", tmp_if, "netns", ns)
            ip("link", "set", host_if, "master", self.bridge)
            ip("link", "set", host_if, "up")
            ip("-n", ns, "link", "set", tmp_if, "name", "eth0")
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.remove_pod(uid, addr)
            raise
        return addr

    def remove_pod(self, uid: str, addr: str | None) -> None:
        ip("netns", "del", self.netns(uid), check=False)  # takes the veth pair with it
        ip("link", "del", f"rph{uid[:8]}", check=False)
        if addr:
            self._used.discard(int(addr.rsplit(".", 1)[1]))

    def pids(self, uid: str) -> list[int]:
        out = ip("netns", "pids", self.netns(uid), check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]


# ---------------------------------------------------------------- logs


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(s: str) -> dt.datetime:
    s = s.strip().replace("Z", "+00:00")
    if "." in s:  # fromisoformat takes at most microseconds
        head, _, rest = s.partition(".")
        frac = "".join(ch for ch in rest if ch.isdigit())
        tz = rest[len(frac):]
        s = f"{head}.{frac[:6].ljust(6, '0')}{tz}"
    parsed = dt.datetime.fromisoformat(s)
    # Always aware (UTC when no offset is written): naive and aware times cannot be
    # compared, and the kubelet's sinceTime filter compares them.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def cri_line(stream: str, line: bytes) -> bytes:
    """``<RFC3339Nano> stdout F <line>\\n``, the CRI log format."""
    return f"{now_rfc3339()} {stream} F ".encode() + line.rstrip(b"\n") + b"\n"


def render_log(path: Path, *, since: dt.datetime | None, tail: int | None,
               timestamps: bool, limit: int | None) -> bytes:
    try:
        raw = path.read_bytes().splitlines()
    except OSError:
        return b""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    out = []
    for rec in raw:
        ts, _, rest = rec.partition(b" ")
        _stream, _, rest = rest.partition(b" ")
        _tag, _, msg = rest.partition(b" ")
        if since is not None:
            try:
                if parse_rfc3339(ts.decode()) < since:
                    continue
            except ValueError:
                continue
        out.append((ts + b" " + msg) if timestamps else msg)
    if tail is not None:
        out = out[-tail:] if tail > 0 else []
    body = b"".join(line + b"\n" for line in out)
    return body[:limit] if limit is not None else body


class LogServer:
    """``GET /containerLogs/{ns}/{pod}/{container}`` over HTTPS with a self-signed cert:
    the API server proxies ``pods/log`` here and skips verification (no kubelet CA)."""

    def __init__(self, log_path, port: int = 0) -> None:  # log_path(ns, pod, c, previous)
        self.log_path = log_path
        self.port = port
        self._runner: web.AppRunner | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="rauta-podrunner-tls-"))

    async def start(self) -> int:
        import ssl
        crt, key = self._dir / "tls.crt", self._dir / "tls.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
                        "-out", str(crt), "-days", "2", "-subj", "/CN=rauta-lab-node",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(crt), str(key))
        app = web.Application()
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self._logs)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=ctx)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        with contextlib.suppress(OSError):
            for f in self._dir.iterdir():
                f.unlink()
            self._dir.rmdir()

    async def _logs(self, req: web.Request) -> web.StreamResponse:
        q = req.query
        m = req.match_info
        path = self.log_path(m["ns"], m["pod"], m["container"], q.get("previous") == "true")
        if path is None:
            return web.Response(status=404, text="no such container\n")
        since = None
        if "sinceTime" in q:
            since = parse_rfc3339(q["sinceTime"])
        elif "sinceSeconds" in q:
            since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(q["sinceSeconds"]))
        tail = int(q["tailLines"]) if "tailLines" in q else None
        limit = int(q["limitBytes"]) if "limitBytes" in q else None
        body = render_log(path, since=since, tail=tail, timestamps=q.get("timestamps") == "true",
                          limit=limit)
        return web.Response(body=body, content_type="text/plain")


def write_volume(root: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """Write a volume's files atomically enough for a test: each file replaced in place."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, (content, mode) in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_bytes(content)
        os.chmod(tmp, mode)
        os.replace(tmp, p)
