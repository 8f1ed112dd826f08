"""``python -m rauta.cli controller`` as a child process, for end-to-end tests.

A :class:`ControllerProcess` starts one controller against a kubeconfig with its own admin
port, listen address, controller name, Lease and identity; its stdout/stderr go to a temp
log whose tail :meth:`ControllerProcess.tail` shows (every wait puts it in its error).
``stop`` sends SIGTERM (SIGKILL after a bounded wait), ``kill`` sends SIGKILL. The child
gets SIGTERM if the test process dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from rauta.reconcile.kube import KINDS, Kind
from tests.e2e.lab import _die_with_parent, free_port

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")



class ControllerError(AssertionError):
    """A controller process did not do what a test waited for."""


class ControllerProcess:
    def __init__(self, kubeconfig: str | Path, *, controller_name: str, listen_host: str,
                 lease_name: str, identity: str, lease_duration: float = 15.0,
                 lease_namespace: str = "default", admin_port: int | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.kubeconfig = str(kubeconfig)
        self.controller_name = controller_name
        self.listen_host = listen_host
        self.lease_name, self.lease_namespace = lease_name, lease_namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.admin_port = admin_port or free_port()
        self.extra = extra
        self.popen: subprocess.Popen[bytes] | None = None
        self._logdir = Path(tempfile.mkdtemp(prefix=f"rauta-ctl-{identity}-"))
        self.log = self._logdir / "controller.log"

    # -- lifecycle

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", "rauta.cli", "controller",
                "--kubeconfig", self.kubeconfig,
                "--admin", f"127.0.0.1:{self.admin_port}",
                "--listen-host", self.listen_host,
                "--controller-name", self.controller_name,
                "--lease-namespace", self.lease_namespace,
                "--lease-name", self.lease_name,
                "--lease-duration", str(self.lease_duration),
                "--identity", self.identity, *self.extra]

    def start(self) -> ControllerProcess:
        fh = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.popen = subprocess.Popen(
                self.argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=fh,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)  # noqa: PLW1509
        finally:
            fh.close()
        return self

    def wait_ready(self, timeout: float = 30.0) -> ControllerProcess:
        self.wait(lambda: self.get("/readyz")[0] == 200, timeout, "/readyz 200")
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``; the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def cleanup(self) -> None:
        self.stop()
        if not os.environ.get("RAUTA_LAB_KEEP"):
            with contextlib.suppress(OSError):
                self.log.unlink()
                self._logdir.rmdir()

    def __enter__(self) -> ControllerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- diagnostics

    def tail(self, n: int = 40) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def describe(self) -> str:
        rc = self.popen.poll() if self.popen is not None else "not started"
        return (f"controller {self.identity} (admin :{self.admin_port}, listen "
                f"{self.listen_host}, exit={rc}); log tail:\n{self.tail()}")

    # -- admin endpoints

    def get(self, path: str, timeout: float = 3.0) -> tuple[int, bytes]:
        """GET an admin path: (status, body); (0, b"") when nothing answers."""
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError:
            return 0, b""

    def config(self) -> dict[str, Any]:
        status, body = self.get("/config")
        if status != 200:
            raise ControllerError(f"/config answered {status}\n{self.describe()}")
        return dict(json.loads(body))

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed (name, sorted labels)."""
        status, body = self.get("/metrics")
        if status != 200:
            raise ControllerError(f"/metrics answered {status}\n{self.describe()}")
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
        want = set(labels.items())
        return sum(v for (n, lab), v in self.metrics().items()
                   if n == name and want <= set(lab))

    def is_leader(self) -> bool | None:
        """rauta_leader as a bool; None when the admin server does not answer."""
        if self.get("/healthz")[0] != 200:
            return None
        return self.metric("rauta_leader") == 1

    # -- waiting

    def wait(self, cond: Callable[[], T], timeout: float, what: str,
             interval: float = 0.1) -> T:
        """Poll ``cond`` until truthy (at most ``timeout`` s); fail with the log tail."""
        deadline = time.monotonic() + timeout
        while True:
            if self.popen is not None and self.popen.poll() is not None:
                raise ControllerError(f"controller exited while waiting for {what}\n"
                                      f"{self.describe()}")
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                raise ControllerError(f"timed out after {timeout}s waiting for {what}\n"
                                      f"{self.describe()}")
            time.sleep(interval)


@contextlib.contextmanager
def logs_on_failure(*procs: ControllerProcess) -> Iterator[None]:
    """Add the controllers' log tails to any exception raised in the block."""
    try:
        yield
    except BaseException as exc:
        tails = "\n\n".join(p.describe() for p in procs)
        if hasattr(exc, "add_note"):
            exc.add_note(tails)
        raise


# ---------------------------------------------------------------- API helpers for tests

_EXTRA_KINDS = {
    "Pod": Kind("Pod", "v1", "pods"),
    "Node": Kind("Node", "v1", "nodes", namespaced=False),
    "Lease": Kind("Lease", "coordination.k8s.io/v1", "leases"),
}


def kind_of(kind: str) -> Kind:
    return KINDS.get(kind) or _EXTRA_KINDS[kind]


class ApiFailure(AssertionError):
    def __init__(self, what: str, status: int, body: bytes) -> None:
        self.status, self.body = status, body
        super().__init__(f"{what}: HTTP {status}: {body[:600]!r}")


class Api:
    """Synchronous admin calls through the lab (``lab.request``), by kind/namespace/name.

    Objects it created are remembered so that :meth:`cleanup` can remove the cluster-scoped
    ones (namespaces take their content with them).
    """

    def __init__(self, lab: Any) -> None:
        self.lab = lab
        self.created: list[tuple[str, str, str]] = []

    def call(self, method: str, path: str, body: Any = None,
             content_type: str = "application/json") -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        status, out = self.lab.request(method, path, data, content_type=content_type)
        try:
            parsed = json.loads(out) if out else None
        except ValueError:
            parsed = out
        return status, parsed

    def _ok(self, what: str, method: str, path: str, body: Any = None,
            content_type: str = "application/json", ok: tuple[int, ...] = (200, 201)) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        status, out = self.lab.request(method, path, data, content_type=content_type)
        if status not in ok:
            raise ApiFailure(what, status, out)
        return json.loads(out) if out else None

    @staticmethod
    def path_of(obj: dict[str, Any], *, named: bool = False, sub: str | None = None) -> str:
        meta = obj.get("metadata") or {}
        return kind_of(obj["kind"]).path(meta.get("namespace"),
                                         meta["name"] if named or sub else None, sub)

    def try_create(self, obj: dict[str, Any]) -> tuple[int, Any]:
        """POST ``obj``; (status, body) whatever the answer."""
        status, out = self.call("POST", self.path_of(obj), obj)
        if status in (200, 201):
            meta = obj["metadata"]
            self.created.append((obj["kind"], meta.get("namespace") or "", meta["name"]))
        return status, out

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        status, out = self.try_create(obj)
        if status not in (200, 201):
            raise ApiFailure(f"create {obj['kind']} {obj['metadata'].get('name')}", status,
                             json.dumps(out).encode())
        return dict(out)

    def get(self, kind: str, ns: str | None, name: str) -> dict[str, Any] | None:
        status, out = self.call("GET", kind_of(kind).path(ns, name))
        if status == 404:
            return None
        if status != 200:
            raise ApiFailure(f"get {kind} {ns}/{name}", status, json.dumps(out).encode())
        return dict(out)

    def list(self, kind: str, ns: str | None = None, query: str = "") -> list[dict[str, Any]]:
        out = self._ok(f"list {kind}", "GET", kind_of(kind).path(ns) + query)
        k = kind_of(kind)
        return [dict(i, kind=kind, apiVersion=k.api_version) for i in out.get("items") or ()]

    def patch(self, kind: str, ns: str | None, name: str, patch: dict[str, Any],
              sub: str | None = None) -> dict[str, Any]:
        return dict(self._ok(f"patch {kind} {ns}/{name}", "PATCH",
                             kind_of(kind).path(ns, name, sub), patch,
                             content_type="application/merge-patch+json"))

    def try_patch(self, kind: str, ns: str | None, name: str,
                  patch: dict[str, Any]) -> tuple[int, Any]:
        data = json.dumps(patch).encode()
        status, out = self.lab.request("PATCH", kind_of(kind).path(ns, name), data,
                                       content_type="application/merge-patch+json")
        return status, json.loads(out) if out else None

    def put_status(self, obj: dict[str, Any]) -> dict[str, Any]:
        return dict(self._ok(f"status of {obj['kind']} {obj['metadata']['name']}", "PUT",
                             self.path_of(obj, sub="status"), obj))

    def delete(self, kind: str, ns: str | None, name: str, grace: int | None = None) -> None:
        q = f"?gracePeriodSeconds={grace}" if grace is not None else ""
        self._ok(f"delete {kind} {ns}/{name}", "DELETE", kind_of(kind).path(ns, name) + q,
                 ok=(200, 202, 404))

    def cleanup(self) -> None:
        """Delete what was created, newest first: Pods at once (no kubelet), then the rest."""
        for kind, ns, name in reversed(self.created):
            if kind == "Pod":
                self.delete(kind, ns, name, grace=0)
        for kind, ns, name in reversed(self.created):
            if kind in ("Namespace", "GatewayClass", "Node"):
                with contextlib.suppress(OSError, ApiFailure):
                    self.delete(kind, ns or None, name)
        self.created.clear()
