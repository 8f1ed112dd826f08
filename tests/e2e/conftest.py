"""Fixtures for end-to-end tests.

``lab`` is one real control plane (etcd + kube-apiserver + kube-controller-manager, the
Gateway API standard CRDs applied) shared by the whole session; see ``tests/e2e/lab.py``.
It skips only where the lab cannot be had at all (no Go toolchain and no prebuilt lab);
with Go present it builds the lab (``scripts/build-lab.sh``) and fails loudly if that or
the start-up does not work.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.e2e.lab import Lab, LabUnavailable, locate_lab_dir


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    try:
        lab_dir = locate_lab_dir()
    except LabUnavailable as e:
        print(f"\n[rauta-lab] skipping real-API-server tests: {e}", file=sys.stderr)
        pytest.skip(f"rauta lab unavailable: {e}")
    the_lab = Lab(lab_dir)
    the_lab.start()
    v = the_lab.versions()
    print(f"\n[rauta-lab] kubernetes {v.get('K8S_VERSION')} etcd {v.get('ETCD_VERSION')} "
          f"gateway-api {v.get('GWAPI_VERSION')} up in {the_lab.startup_seconds:.1f}s "
          f"at {the_lab.server}", file=sys.stderr)
    try:
        yield the_lab
    finally:
        the_lab.stop()


@pytest_asyncio.fixture
async def kube(lab: Lab) -> AsyncIterator[object]:
    """A kubernetes_asyncio ApiClient (admin) for the session's lab, per test."""
    from kubernetes_asyncio import client

    api = client.ApiClient(configuration=lab.api_configuration())
    try:
        yield api
    finally:
        await api.close()
