"""A pod runner that plays the kubelet (and the scheduler) for the lab's one Node.

``python -m tests.e2e.podrunner --kubeconfig K --echo-basic BIN`` registers Node
``rauta-lab-node`` (InternalIP 127.0.0.1, ``kubeletEndpoint`` = its log port), then watches
Pods and, like a kubelet:

- binds unscheduled Pods to the Node (Binding subresource);
- gives each Pod a network namespace on a private bridge (``podrunner_host``);
- materialises secret/configMap/downwardAPI/projected/emptyDir volumes under the state
  directory and translates env values and args that point into a mount
  (``podrunner_env``); a missing Secret/ConfigMap keeps the Pod Pending, retried;
- runs ``echo-basic`` images as the binary given, ``coredns`` as a Ready placeholder with no
  process; any other image stays Pending with reason ``ImageNotMapped``;
- writes the Pod status (Running, podIP(s), hostIP(s), conditions, containerStatuses) once
  the container's first port accepts connections;
- restarts exited containers with backoff (``restartPolicy``);
- carries out deletion: SIGTERM, grace period, SIGKILL, netns teardown, then DELETE with
  grace 0 and a uid precondition;
- serves ``pods/log`` from an HTTPS ``/containerLogs`` endpoint.

It cleans up at start (Pods bound to its Node, its stale namespaces) and at exit (SIGTERM).
A test harness: it uses kubernetes_asyncio directly and must not import ``rauta``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from tests.e2e import podrunner_env as penv
from tests.e2e.podrunner_host import LogServer, PodNetwork, cri_line, now_rfc3339, write_volume

NODE = "rauta-lab-node"
BACKOFF_START, BACKOFF_MAX = 1.0, 20.0
READY_TIMEOUT = 10.0

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # pragma: no cover
    _LIBC = None


def _child_setup() -> None:  # pragma: no cover - in the child
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no orphans if the runner dies
    os.setsid()


def _cond(t: str, ok: bool, reason: str | None = None, old: dict | None = None) -> dict:
    status = "True" if ok else "False"
    c = {"type": t, "status": status}
    c["lastTransitionTime"] = (old or {}).get("lastTransitionTime") \
        if old and old.get("status") == status else now_rfc3339().split(".")[0] + "Z"
    if reason and not ok:
        c["reason"] = reason
    return c


class Container:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.ready = False
        self.started_at: str | None = None
        self.last_terminated: dict | None = None
        self.waiting: tuple[str, str] | None = ("ContainerCreating", "")
        self.placeholder = False
        self.pumps: list[asyncio.Task] = []


class PodWorker:
    def __init__(self, runner: Runner, pod: dict) -> None:
        self.r = runner
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.ns: str = pod["metadata"]["namespace"]
        self.name: str = pod["metadata"]["name"]
        self.wake = asyncio.Event()
        self.ip: str | None = None
        self.containers = [Container(c) for c in pod["spec"].get("containers", [])]
        self.start_time: str | None = None
        self.dir = runner.state_dir / self.uid
        self.task = asyncio.create_task(self.run(), name=f"pod {self.ns}/{self.name}")

    def update(self, pod: dict) -> None:
        self.pod = pod
        self.wake.set()

    def log_file(self, c: Container, restart: int | None = None) -> Path:
        return self.dir / "logs" / c.name / f"{c.restarts if restart is None else restart}.log"

    # -- main loop

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - one Pod must not take the runner down
            print(f"[podrunner] {self.ns}/{self.name}: {type(e).__name__}: {e}",
                  file=sys.stderr, flush=True)

    async def _run(self) -> None:
        while not self.deleting():
            reason = await self.prepare()
            if reason is None:
                break
            await self.write_status(pending=reason)
            await self.sleep_or_wake(1.0)
        if self.deleting():
            await self.delete()
            return
        for c in self.containers:
            c.task = asyncio.create_task(self.supervise(c))  # type: ignore[attr-defined]
        while not self.deleting():
            await self.sleep_or_wake(30.0)
        await self.delete()

    def deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    async def sleep_or_wake(self, t: float) -> None:
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), t)

    # -- preparation

    async def prepare(self) -> tuple[str, str] | None:
        """None when ready to start, else (waiting reason, message)."""
        spec = self.pod["spec"]
        if spec.get("initContainers"):
            return ("InitContainersNotSupported", "the pod runner has no init containers")
        kinds = [penv.map_image(c["image"]) for c in spec.get("containers", [])]
        for c, k in zip(self.containers, kinds, strict=True):
            if k is None:
                c.waiting = ("ImageNotMapped", f"no process is mapped to image {c.spec['image']}")
                return c.waiting
        if self.ip is None:
            self.ip = await asyncio.to_thread(self.r.net.add_pod, self.uid)
            self.start_time = now_rfc3339().split(".")[0] + "Z"
        pod = json.loads(json.dumps(self.pod))
        pod.setdefault("status", {}).update(self.ip_status())
        try:
            objs = await self.r.fetch_refs(pod)
            lookup = lambda kind, ns, name: objs.get((kind, ns, name))  # noqa: E731
            for v in spec.get("volumes") or []:
                files = penv.volume_files(pod, v, lookup)
                files = {penv.safe_relpath(k): val for k, val in files.items()}
                await asyncio.to_thread(write_volume, self.dir / "volumes" / v["name"], files)
            self.envs = {}
            self.argvs = {}
            for c, k in zip(self.containers, kinds, strict=True):
                base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                        "HOSTNAME": spec.get("hostname") or self.name}
                env = penv.container_env(pod, c.spec, lookup, base=base)
                mounts = penv.mount_map(c.spec, lambda n: str(self.dir / "volumes" / n))
                env = {key: penv.translate_path(val, mounts) for key, val in env.items()}
                self.envs[c.name] = env
                if k == penv.PLACEHOLDER:
                    c.placeholder = True
                else:
                    self.argvs[c.name] = penv.container_argv(
                        k, c.spec, env, self.r.echo_basic,
                        lambda s, m=mounts: penv.translate_path(s, m))
        except penv.Missing as e:
            return ("ContainerCreating", f"FailedMount: {e}")
        except penv.Unsupported as e:
            return ("CreateContainerConfigError", str(e))
        return None

    def ip_status(self) -> dict:
        h = self.r.net.host_ip
        return {"hostIP": h, "hostIPs": [{"ip": h}], "podIP": self.ip, "podIPs": [{"ip": self.ip}]}

    # -- containers

    async def supervise(self, c: Container) -> None:
        backoff = BACKOFF_START
        if c.placeholder:
            c.waiting, c.ready, c.started_at = None, True, now_rfc3339().split(".")[0] + "Z"
            await self.write_status()
            return
        while not self.deleting():
            await self.start(c)
            await self.write_status()
            ok = await self.wait_port(c)
            if ok and c.proc is not None and c.proc.returncode is None:
                c.ready = True
                await self.write_status()
                backoff = BACKOFF_START
            assert c.proc is not None
            rc = await c.proc.wait()
            for t in c.pumps:
                with contextlib.suppress(Exception):
                    await t
            c.ready = False
            if self.deleting():
                return
            c.last_terminated = {"exitCode": rc if rc >= 0 else 128 - rc,
                                 "reason": "Completed" if rc == 0 else "Error",
                                 "startedAt": c.started_at,
                                 "finishedAt": now_rfc3339().split(".")[0] + "Z"}
            policy = self.pod["spec"].get("restartPolicy", "Always")
            if policy == "Never" or (policy == "OnFailure" and rc == 0):
                c.waiting = None
                await self.write_status()
                return
            c.waiting = ("CrashLoopBackOff", f"back-off {backoff:.0f}s restarting failed container")
            await self.write_status()
            await self.sleep_or_wake(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            c.restarts += 1

    async def start(self, c: Container) -> None:
        log = self.log_file(c)
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = ["ip", "netns", "exec", self.r.net.netns(self.uid), *self.argvs[c.name]]
        c.proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self.envs[c.name], cwd=str(self.dir),
            preexec_fn=_child_setup)  # noqa: PLW1509
        c.started_at = now_rfc3339().split(".")[0] + "Z"
        c.waiting = None
        fh = open(log, "ab", buffering=0)  # noqa: SIM115

        async def pump(stream: asyncio.StreamReader, name: str) -> None:
            while line := await stream.readline():
                fh.write(cri_line(name, line))

        c.pumps = [asyncio.create_task(pump(c.proc.stdout, "stdout")),  # type: ignore[arg-type]
                   asyncio.create_task(pump(c.proc.stderr, "stderr"))]  # type: ignore[arg-type]
        asyncio.get_running_loop().create_task(self._close_after(c.pumps, fh))

    @staticmethod
    async def _close_after(tasks: list[asyncio.Task], fh: Any) -> None:
        await asyncio.gather(*tasks, return_exceptions=True)
        fh.close()

    def port_of(self, c: Container) -> int:
        ports = c.spec.get("ports") or []
        return int(ports[0]["containerPort"]) if ports else 3000

    async def wait_port(self, c: Container) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if c.proc is None or c.proc.returncode is not None or self.deleting():
                return False
            try:
                _, w = await asyncio.wait_for(
                    asyncio.open_connection(self.ip, self.port_of(c)), 1.0)
                w.close()
                return True
            except (OSError, TimeoutError):
                await asyncio.sleep(0.05)
        return False

    # -- status

    def container_status(self, c: Container) -> dict:
        digest = self.r.image_digest if not c.placeholder else "0" * 64
        st: dict[str, Any] = {
            "name": c.name, "image": c.spec["image"],
            "imageID": f"rauta-lab://sha256:{digest}", "ready": c.ready,
            "restartCount": c.restarts, "started": c.waiting is None and c.started_at is not None,
        }
        if c.waiting:
            st["state"] = {"waiting": {"reason": c.waiting[0], "message": c.waiting[1]}}
        elif c.proc is not None and c.proc.returncode is not None and c.last_terminated:
            st["state"] = {"terminated": c.last_terminated}
        else:
            st["state"] = {"running": {"startedAt": c.started_at}}
            st["containerID"] = f"rauta://{self.uid}/{c.name}"
        if c.last_terminated and c.waiting != (None,):
            st["lastState"] = {"terminated": c.last_terminated}
        return st

    async def write_status(self, pending: tuple[str, str] | None = None) -> None:
        for _ in range(10):
            try:
                cur = await self.r.get_json(self.r.core.read_namespaced_pod, self.name, self.ns)
            except ApiException as e:
                if e.status == 404:
                    return
                raise
            if cur["metadata"]["uid"] != self.uid:
                return
            old = {c["type"]: c for c in cur.get("status", {}).get("conditions", [])}
            status = dict(cur.get("status") or {})
            if pending is not None:
                for c in self.containers:
                    if c.waiting is None or c.waiting[0] == "ContainerCreating":
                        c.waiting = pending
            all_ready = all(c.ready for c in self.containers)
            running = any(c.started_at for c in self.containers) and pending is None
            status["phase"] = "Running" if running else "Pending"
            if self.ip:
                status.update(self.ip_status())
            if self.start_time:
                status["startTime"] = self.start_time
            conds = [old.get("PodScheduled") or _cond("PodScheduled", True)]
            conds.append(_cond("PodReadyToStartContainers", self.ip is not None, None,
                               old.get("PodReadyToStartContainers")))
            conds.append(_cond("Initialized", True, None, old.get("Initialized")))
            for t in ("ContainersReady", "Ready"):
                conds.append(_cond(t, all_ready, "ContainersNotReady", old.get(t)))
            status["conditions"] = conds
            status["containerStatuses"] = [self.container_status(c) for c in self.containers]
            cur["status"] = status
            try:
                await self.r.core.replace_namespaced_pod_status(self.name, self.ns, cur)
                return
            except ApiException as e:
                if e.status == 409:
                    continue
                if e.status == 404:
                    return
                raise

    # -- deletion

    async def delete(self) -> None:
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        grace = 30 if grace is None else int(grace)
        await self.kill(grace)
        await self.teardown()
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": self.uid}}
        with contextlib.suppress(ApiException):
            await self.r.core.delete_namespaced_pod(self.name, self.ns, body=body)

    async def kill(self, grace: float) -> None:
        procs = [c.proc for c in self.containers if c.proc and c.proc.returncode is None]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(p.wait(), max(0.0, deadline - time.monotonic()))
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                await p.wait()
        for c in self.containers:
            if t := getattr(c, "task", None):
                t.cancel()

    async def teardown(self) -> None:
        for pid in await asyncio.to_thread(self.r.net.pids, self.uid):  # anything left inside
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(self.r.net.remove_pod, self.uid, self.ip)
        await asyncio.to_thread(shutil.rmtree, self.dir, True)
        self.r.workers.pop(self.uid, None)


class Runner:
    def __init__(self, api: client.ApiClient, echo_basic: str, state_dir: Path,
                 node: str = NODE, log_port: int = 0) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.echo_basic = echo_basic
        self.node = node
        self.runner_id = hashlib.sha256(node.encode()).hexdigest()[:6]
        self.state_dir = state_dir / self.runner_id
        self.net = PodNetwork(self.runner_id)
        self.workers: dict[str, PodWorker] = {}
        self.logs = LogServer(self.log_path, log_port)
        self.image_digest = hashlib.sha256(Path(echo_basic).read_bytes()).hexdigest() \
            if os.path.isfile(echo_basic) else "0" * 64

    async def get_json(self, fn: Any, *args: Any) -> dict:
        """Call a read/list method and return the API's JSON as it came (camelCase dicts)."""
        resp = await fn(*args, _preload_content=False)
        try:
            return json.loads(await resp.read())
        finally:
            resp.release()

    async def fetch_refs(self, pod: dict) -> dict[tuple[str, str, str], dict]:
        """Every Secret/ConfigMap the Pod names, keyed (kind, ns, name); absent ones left out."""
        ns = pod["metadata"]["namespace"]
        wanted: set[tuple[str, str]] = set()

        def walk(o: Any) -> None:
            if isinstance(o, dict):
                for k, v in o.items():
                    if k in ("secret", "secretRef", "secretKeyRef") and isinstance(v, dict):
                        wanted.add(("Secret", v.get("secretName") or v.get("name", "")))
                    if k in ("configMap", "configMapRef", "configMapKeyRef") and isinstance(v, dict):
                        wanted.add(("ConfigMap", v.get("name", "")))
                    walk(v)
            elif isinstance(o, list):
                for v in o:
                    walk(v)

        walk(pod["spec"])
        out = {}
        for kind, name in wanted:
            fn = self.core.read_namespaced_secret if kind == "Secret" \
                else self.core.read_namespaced_config_map
            try:
                out[(kind, ns, name)] = await self.get_json(fn, name, ns)
            except ApiException as e:
                if e.status != 404:
                    raise
        return out

    def log_path(self, ns: str, pod: str, container: str, previous: bool) -> Path | None:
        for w in list(self.workers.values()):
            if w.ns == ns and w.name == pod:
                for c in w.containers:
                    if c.name == container:
                        n = c.restarts - 1 if previous else c.restarts
                        return w.log_file(c, n) if n >= 0 else None
        return None

    async def register_node(self) -> None:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node, "labels": {
            "kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64"}}}
        try:
            await self.core.create_node(node)
        except ApiException as e:
            if e.status != 409:
                raise
        cap = {"cpu": "2", "memory": "8Gi", "pods": "110"}
        t = now_rfc3339().split(".")[0] + "Z"
        status = {"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "rauta pod runner", "lastHeartbeatTime": t,
                            "lastTransitionTime": t}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.logs.port}},
            "capacity": cap, "allocatable": cap,
            "nodeInfo": {"kubeletVersion": "v0.0.0-rauta", "operatingSystem": "linux",
                         "architecture": "amd64", "machineID": "", "systemUUID": "",
                         "bootID": "", "kernelVersion": os.uname().release,
                         "osImage": "rauta lab", "containerRuntimeVersion": "rauta://0",
                         "kubeProxyVersion": ""}}}
        await self.core.patch_node_status(self.node, status)

    async def cleanup_bound_pods(self) -> None:
        pods = await self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.node}")
        for p in pods.items:
            with contextlib.suppress(ApiException):
                await self.core.delete_namespaced_pod(p.metadata.name, p.metadata.namespace,
                                                      grace_period_seconds=0)

    async def bind(self, pod: dict) -> None:
        m = pod["metadata"]
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.node}}
        try:
            await self.core.create_namespaced_binding(m["namespace"], body, _preload_content=False)
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    async def handle(self, kind: str, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        node = pod["spec"].get("nodeName")
        if not node:
            if kind != "DELETED" and not pod["metadata"].get("deletionTimestamp"):
                await self.bind(pod)
            return
        if node != self.node:
            return
        w = self.workers.get(uid)
        if kind == "DELETED":
            if w is not None:  # removed behind our back (grace 0 by someone): stop it now
                w.pod["metadata"].setdefault("deletionTimestamp", now_rfc3339())
                w.pod["metadata"]["deletionGracePeriodSeconds"] = 0
                w.wake.set()
            return
        if w is None:
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return
            self.workers[uid] = PodWorker(self, pod)
        else:
            w.update(pod)

    async def watch_pods(self) -> None:
        while True:
            lst = await self.get_json(self.core.list_pod_for_all_namespaces)
            for p in lst["items"]:
                await self.handle("ADDED", p)
            rv = lst["metadata"]["resourceVersion"]
            try:
                async with watch.Watch() as w:
                    async for ev in w.stream(self.core.list_pod_for_all_namespaces,
                                             resource_version=rv, timeout_seconds=300,
                                             allow_watch_bookmarks=False):
                        raw = ev.get("raw_object")
                        if isinstance(raw, dict) and raw.get("kind") == "Pod":
                            await self.handle(ev["type"], raw)
            except ApiException as e:
                if e.status != 410:
                    print(f"[podrunner] watch: {e.status} {e.reason}", file=sys.stderr, flush=True)
                    await asyncio.sleep(1)

    async def run(self, ready_file: Path | None = None) -> None:
        await asyncio.to_thread(self.net.create)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        await self.logs.start()
        await self.register_node()
        await self.cleanup_bound_pods()
        if ready_file is not None:
            ready_file.write_text(json.dumps({"node": self.node, "logPort": self.logs.port,
                                              "bridge": self.net.bridge,
                                              "hostIP": self.net.host_ip}))
        print(f"[podrunner] node {self.node} bridge {self.net.bridge} {self.net.host_ip}/24 "
              f"logs :{self.logs.port}", file=sys.stderr, flush=True)
        await self.watch_pods()

    async def shutdown(self) -> None:
        for w in list(self.workers.values()):
            await w.kill(0)
            w.task.cancel()
            await w.teardown()
        await asyncio.to_thread(self.net.destroy)
        await self.logs.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)


async def amain(args: argparse.Namespace) -> None:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=args.kubeconfig, client_configuration=cfg)
    api = client.ApiClient(configuration=cfg)
    runner = Runner(api, args.echo_basic, Path(args.state_dir), args.node, args.log_port)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)  # type: ignore[union-attr]
    try:
        await runner.run(Path(args.ready_file) if args.ready_file else None)
    except asyncio.CancelledError:
        pass
    finally:
        await runner.shutdown()
        await api.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="the lab's kubelet stand-in")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--echo-basic", default=os.environ.get("RAUTA_ECHO_BASIC", ""),
                   help="the echo-basic binary (default $RAUTA_ECHO_BASIC)")
    p.add_argument("--node", default=NODE)
    p.add_argument("--state-dir", default="/run/rauta-pods")
    p.add_argument("--log-port", type=int, default=0)
    p.add_argument("--ready-file", help="written (JSON) once the Node is registered")
    args = p.parse_args(argv)
    if not args.echo_basic or not os.access(args.echo_basic, os.X_OK):
        p.error(f"--echo-basic / RAUTA_ECHO_BASIC: not an executable: {args.echo_basic!r}")
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
