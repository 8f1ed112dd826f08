"""The per-Gateway Service writer: makes the generated Services exist as the model wants.

Role: the controller's half of ``--gateway-services`` that talks to the API server. The
reconciler hands it the Services the model wants (``Translation.services``) after every
pass, and a way to read the managed Services the watch has delivered (the store); a
background worker turns the difference (``servicediff.plan``) into POST (create), PUT
(update, with the live resourceVersion) and DELETE calls.

Rules:
- Only the leader writes. A replica that is not the leader keeps the latest desired
  Services, so a new leader writes at once (``resync``, called on taking the Lease).
  Nothing is written before the first reconcile pass has said what it wants: "no desired
  Services yet" is not "no Services wanted" (it would delete every one of them, e.g. when
  the Lease is taken right after start-up).
- The plan is computed when the worker runs, from the latest desired Services and the
  latest watched ones, so a burst of passes makes one round of writes, and an equal
  Service is never written (``servicediff``: no write, no resourceVersion churn).
- A Service is this controller's when it carries the gateway-name label, the
  ``rauta.io/controller-name`` annotation with this controller's name and an
  ownerReference to a Gateway of that name (``is_managed``); no other Service is ever
  updated or deleted. The ownerReference also lets the API server's garbage collector
  delete a Service with its Gateway, even while rauta is down.
- Races with the watch are harmless: a create that finds the Service already there (409
  AlreadyExists), an update whose resourceVersion is stale (409 Conflict) and a delete of
  a Service already gone (404) are not errors; the watch event that follows brings the
  new state and the next round (after a lost update, a round also runs a second later,
  with the resourceVersion the watch has brought by then, in case nothing the model
  reads changed). Other failures are logged and retried after a backoff.
- Outcomes are counted in ``rauta_service_writes_total{op, outcome}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from rauta.model.services import CONTROLLER_ANNOTATION, GATEWAY_NAME_LABEL
from rauta.reconcile.kube import KINDS, ApiError
from rauta.reconcile.servicediff import Write, plan
from rauta.reconcile.worker import BackgroundWriter

log = logging.getLogger("rauta.services")
Manifest = Mapping[str, Any]
# Each write's HTTP method; the keys are the RBAC verbs on Services the writer needs
# (deploy/base/rbac.yaml grants exactly these; tests/unit/test_deploy_static.py checks).
METHODS = {"create": "POST", "update": "PUT", "delete": "DELETE"}


def is_managed(obj: Manifest, controller_name: str) -> bool:
    """Is this raw Service one this controller generated? (see the module rules)"""
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(GATEWAY_NAME_LABEL)
    if not name or (meta.get("annotations") or {}).get(CONTROLLER_ANNOTATION) != controller_name:
        return False
    return any(isinstance(ref, Mapping) and ref.get("kind") == "Gateway"
               and ref.get("name") == name
               and str(ref.get("apiVersion", "")).startswith("gateway.networking.k8s.io/")
               for ref in meta.get("ownerReferences") or ())


class KubeServiceSink(BackgroundWriter):
    """Writes the generated Services through ``client`` (a ``KubeClient``)."""

    def __init__(self, client: Any, *, controller_name: str,
                 existing: Callable[[], Iterable[Manifest]],
                 is_leader: Callable[[], bool] = lambda: True,
                 registry: CollectorRegistry | None = None, retry_delay: float = 1.0) -> None:
        self.client = client
        self.controller_name = controller_name
        self.existing = existing  # every watched Service (raw); the managed ones are picked
        self.is_leader = is_leader
        self.retry_delay = retry_delay
        self.desired: tuple[Manifest, ...] = ()
        self.known = False  # has a reconcile pass said what it wants yet?
        self._stale = False  # an update of this round met a newer resourceVersion
        self.writes: list[tuple[str, str, str]] = []  # (op, namespace, name) written
        BackgroundWriter.__init__(self, "service-writer")
        self.metric = Counter("rauta_service_writes",
                              "Writes of generated per-Gateway Services, by outcome",
                              ["op", "outcome"], registry=registry)

    def managed(self) -> list[Manifest]:
        return [s for s in self.existing() if is_managed(s, self.controller_name)]

    def update(self, desired: Iterable[Manifest]) -> None:
        """The Services the model wants now (after a reconcile pass)."""
        self.desired = tuple(desired)
        self.known = True
        self._kick()

    async def resync(self) -> None:
        """Write whatever differs now (after becoming leader)."""
        self._kick()

    def _kick(self) -> None:
        self._start_worker()
        self._idle.clear()
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.is_leader() and self.known:
                failed = False
                self._stale = False
                for write in plan(self.desired, self.managed()):
                    failed |= not await self._write(write)
                if failed:
                    asyncio.get_running_loop().call_later(self.retry_delay, self._kick)
                    self.retry_delay = min(30.0, self.retry_delay * 2)
                else:
                    self.retry_delay = 1.0
                    if self._stale:  # an update lost a race: again, with what the watch
                        asyncio.get_running_loop().call_later(1.0, self._kick)  # brought
            if not self._wake.is_set():
                self._idle.set()

    async def _write(self, write: Write) -> bool:
        """One write; False when it failed in a way worth a retry."""
        kind = KINDS["Service"]
        path = kind.path(write.namespace, None if write.op == "create" else write.name)
        try:
            await self.client.request(METHODS[write.op], path, body=write.body)
        except ApiError as exc:
            benign = (exc.status == 409 and write.op != "delete") or (
                exc.status == 404 and write.op != "create")
            self.metric.labels(write.op, "raced" if benign else "error").inc()
            if benign:
                self._stale |= write.op == "update" and exc.status == 409
                log.debug("service %s %s/%s raced the watch (%s)", write.op, write.namespace,
                          write.name, exc)
                return True
            log.warning("service %s %s/%s failed: %s", write.op, write.namespace,
                        write.name, exc)
            return False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # network errors: retry later
            self.metric.labels(write.op, "error").inc()
            log.warning("service %s %s/%s failed: %s", write.op, write.namespace, write.name,
                        exc)
            return False
        self.writes.append((write.op, write.namespace, write.name))
        self.metric.labels(write.op, "written").inc()
        log.info("service %s: %s/%s", write.op + "d", write.namespace, write.name)
        return True
