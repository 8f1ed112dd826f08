"""A differential property test of ``rauta serve`` against an independent strict parser.

Hypothesis generates and mutates requests from the families of ``tests/e2e/hostile.py``
and sends each on a fresh connection through one ``rauta serve`` subprocess (started once
per module) to two h11 recording backends. The config: Host ``h.test`` + PathPrefix
``/public`` -> A, Host ``other.test`` + PathPrefix ``/`` -> B, everything else 404.

Per example, with h11 (never rauta's code) as the judge:
- every backend connection's bytes parse as HTTP/1.1 (a protocol error fails the test);
- every request a backend received matches that backend's rule as h11 reads it (Host
  ``h.test`` and a path under ``/public`` after dot-segment removal -> A; Host
  ``other.test`` -> B);
- "exactly the requests the proxy decided to forward, and nothing else": every backend
  answers with a unique ``X-Request-Id``; the ids in the 200 responses the client received
  equal, one for one, the ids the backends logged. A request a backend received but whose
  answer never reached the client (a smuggled or desynchronised request) fails, and so
  does a backend answer the client got for a request no backend logged.

``test_base_cases`` runs the same checks once per unmutated base case (each named by family
and the hardening issue's point), so a failure names its case directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.e2e import hostile as hz

REPO = str(Path(__file__).resolve().parents[2])

pytestmark = pytest.mark.timeout(900)


class Lab:
    def __init__(self, tmp: Path) -> None:
        self.a = hz.RecordingBackend("A").start()
        self.b = hz.RecordingBackend("B").start()
        self.serve = hz.RautaServe(REPO, str(tmp), self.a.port, self.b.port).start()

    def close(self) -> None:
        self.serve.stop()
        self.a.stop()
        self.b.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("differential"))
    try:
        yield lab
    finally:
        lab.close()


def problems(lab: Lab, raw: bytes) -> tuple[list[str], hz.Outcome]:
    out = hz.run_case(lab.serve.port, raw, [lab.a, lab.b])
    found: list[str] = []
    errors = [e for e in out.backend_errors if not e.startswith(hz.EOF_INSIDE)]
    if errors:
        found.append(f"backend protocol error: {errors}")
    for e in out.logged:
        want = hz.expected_backend(e.req)
        if want != e.backend:
            found.append(f"backend {e.backend} received {e.req.method} {e.req.target} "
                         f"Host={e.req.all('Host')} (its rule says {want or 'no backend'})")
    client_ids = hz.backend_ids(out.responses) if out.client_error is None \
        else hz.scan_ids(out.client_bytes)
    logged_ids = [e.id for e in out.logged]
    if sorted(client_ids) != sorted(logged_ids):
        extra = [e.req for e in out.logged if e.id not in client_ids]
        found.append(f"backends received {len(logged_ids)} requests, the client got "
                     f"{len(client_ids)} backend answers; unanswered: {extra}")
    return found, out


def describe(raw: bytes, out: hz.Outcome, found: list[str]) -> str:
    return (f"request {raw[:600]!r}\nclient statuses {out.statuses} closed={out.closed} "
            f"({out.client_error})\n" + "\n".join(found))


@pytest.mark.parametrize("case", hz.base_cases(),
                         ids=[f"{c.point or '-'}:{c.family}:{c.name}" for c in hz.base_cases()])
def test_base_cases(lab: Lab, case: hz.Case) -> None:
    found, out = problems(lab, case.raw)
    assert not found, describe(case.raw, out, found)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(req=hz.requests())
def test_differential(lab: Lab, req: hz.Mutated) -> None:
    raw = req.raw
    found, out = problems(lab, raw)
    assert not found, f"{req.family}:{req.name}\n" + describe(raw, out, found)
