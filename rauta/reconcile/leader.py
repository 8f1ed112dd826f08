"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does.

Role: decide which controller replica writes status. Every replica serves traffic from its
own watches; only the leader writes.

Rules:
- The holder renews the Lease every ``retry_period``; it stops being leader as soon as a
  renewal has not succeeded for ``renew_deadline`` (< ``lease_duration``).
- A candidate takes the Lease over only when ``renewTime + leaseDurationSeconds`` has
  passed (by its own clock) without a renewal, so a killed leader is replaced within about
  one lease duration (+ one retry period).
- Every change goes through optimistic concurrency (resourceVersion); a 409 means another
  replica won this round.
- ``on_started_leading`` runs when leadership is gained (e.g. the status sink's resync).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rauta.reconcile.kube import ApiError, KubeClient

log = logging.getLogger("rauta.leader")
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"


def micro_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: str | None) -> float:
    if not text:
        return 0.0
    text = text.replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text).timestamp()


class LeaderElector:
    def __init__(self, client: KubeClient, *, namespace: str, name: str, identity: str,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0,
                 retry_period: float = 2.0,
                 on_started_leading: Callable[[], Awaitable[None]] | None = None) -> None:
        self.client, self.namespace, self.name, self.identity = client, namespace, name, identity
        self.lease_duration, self.renew_deadline = lease_duration, renew_deadline
        self.retry_period = retry_period
        self.on_started_leading = on_started_leading
        self.leader = False
        self._last_renew = 0.0
        self.transitions = 0

    def is_leader(self) -> bool:
        return self.leader and time.monotonic() - self._last_renew < self.renew_deadline

    def _spec(self, now: float, acquire: str | None, transitions: int) -> dict[str, Any]:
        return {"holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": acquire or micro_time(now), "renewTime": micro_time(now),
                "leaseTransitions": transitions}

    async def try_acquire_or_renew(self) -> bool:
        now = time.time()
        base = LEASES.format(ns=self.namespace)
        try:
            lease = await self.client.request("GET", f"{base}/{self.name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(now, None, 0)}
            try:
                await self.client.request("POST", base, body=body)
            except ApiError as exc2:
                if exc2.status == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        expires = parse_micro_time(spec.get("renewTime")) + float(
            spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and now < expires:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (holder != self.identity)
        acquire = spec.get("acquireTime") if holder == self.identity else None
        lease["spec"] = self._spec(now, acquire, transitions)
        try:
            await self.client.request("PUT", f"{base}/{self.name}", body=lease)
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def run(self) -> None:
        while True:
            try:
                ok = await self.try_acquire_or_renew()
            except Exception as exc:  # API unreachable: keep trying, lose the lease in time
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                ok = False
            if ok:
                self._last_renew = time.monotonic()
                if not self.leader:
                    self.leader = True
                    self.transitions += 1
                    log.info("became leader (%s)", self.identity)
                    if self.on_started_leading is not None:
                        asyncio.create_task(self.on_started_leading())
            elif self.leader and not self.is_leader():
                self.leader = False
                log.warning("lost leadership (%s)", self.identity)
            elif self.leader and not ok:
                pass  # still within renew_deadline
            await asyncio.sleep(self.retry_period)
