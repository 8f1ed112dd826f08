"""Model purity and determinism: shuffling the snapshot's input never changes the output bytes.

For every golden input (and for all of them merged), hypothesis draws permutations of the
object list; the translated document must serialise to exactly the same YAML and JSON,
with and without an address pool (per-Gateway address allocation must not depend on order).
Translating must also leave the parsed input objects unchanged.
"""

import json
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from rauta.cli import dump_yaml
from rauta.model.render import document
from rauta.model.resources import parse_object
from rauta.model.snapshot import Snapshot
from rauta.model.translate import translate

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def _cases() -> list[list[dict]]:
    cases = []
    for path in sorted(GOLDEN.glob("*/input.yaml")):
        cases.append([d for d in yaml.safe_load_all(path.read_text()) if d])
    return cases


CASES = _cases()


POOLS = (None, "127.0.1.0/24", "127.0.1.0/30")


def _bytes(objs: list[dict], pool: str | None = None) -> tuple[str, str]:
    doc = document(translate(Snapshot.from_objects(parse_object(o) for o in objs),
                             address_pool=pool))
    return dump_yaml(doc), json.dumps(doc)


@given(st.data())
def test_shuffled_snapshot_gives_identical_bytes(data):
    assert CASES, "no golden inputs found"
    objs = data.draw(st.sampled_from(CASES))
    shuffled = data.draw(st.permutations(objs))
    pool = data.draw(st.sampled_from(POOLS))
    assert _bytes(shuffled, pool) == _bytes(objs, pool)


@given(st.data())
def test_translate_does_not_mutate_its_input(data):
    objs = data.draw(st.sampled_from(CASES))
    parsed = [parse_object(o) for o in objs]
    before = [p.model_dump_json() for p in parsed]
    translate(Snapshot.from_objects(parsed))
    assert [p.model_dump_json() for p in parsed] == before


def test_same_input_twice_gives_same_bytes():
    for objs in CASES:
        assert _bytes(objs) == _bytes(list(objs))
