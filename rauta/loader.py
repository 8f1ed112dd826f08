"""Reading Kubernetes YAML from files into a model Snapshot.

Role: the file-I/O edge in front of the pure model, shared by ``rauta translate``, the
golden tests and (later) the file source of ``rauta serve``.

Rules:
- Multi-document YAML and ``kind: List`` are accepted; empty documents are skipped.
- Directories are read recursively, ``*.yaml``/``*.yml``/``*.json`` in sorted path order.
- Every failure is a ``LoadError`` whose text is one line naming the file, and the object
  and field when known (``file.yaml: HTTPRoute default/web: spec.rules[0]...: problem``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from rauta.model.resources import Resource, ResourceError, parse_object
from rauta.model.snapshot import Snapshot, key_of

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~7x faster


class KubeYAMLLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """SafeLoader that keeps timestamps as text, as Kubernetes does (no datetime objects)."""


KubeYAMLLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_all(text: str) -> list[Any]:
    """Every document of a YAML text, timestamps kept as strings."""
    return list(yaml.load_all(text, Loader=KubeYAMLLoader))


class LoadError(Exception):
    """An input that cannot be loaded; ``str()`` is a single line."""


def list_files(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*")
                              if f.suffix in (".yaml", ".yml", ".json") and f.is_file()))
        elif p.exists():
            out.append(p)
        else:
            raise LoadError(f"{p}: no such file or directory")
    return out


def _yaml_problem(path: Path, exc: yaml.YAMLError) -> LoadError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return LoadError(f"{where}: invalid YAML: {problem}")


def load_documents(path: Path) -> list[Any]:
    """All non-empty YAML documents of one file, ``kind: List`` flattened."""
    try:
        text = path.read_text(encoding="utf-8")
        docs = [d for d in load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise _yaml_problem(path, exc) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(f"{path}: cannot read: {exc}") from None
    out: list[Any] = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List":
            out.extend(doc.get("items") or ())
        else:
            out.append(doc)
    return out


def load_objects(paths: Iterable[str | Path]) -> list[tuple[Path, Resource]]:
    objects: list[tuple[Path, Resource]] = []
    for path in list_files(paths):
        for doc in load_documents(path):
            try:
                objects.append((path, parse_object(doc)))
            except ResourceError as exc:
                raise LoadError(f"{path}: {exc}") from None
    return objects


def load_snapshot(paths: Iterable[str | Path]) -> Snapshot:
    """Parse every object in ``paths`` into one Snapshot (duplicates are an error)."""
    seen: dict[tuple[str, str, str], Path] = {}
    items: list[Resource] = []
    for path, obj in load_objects(paths):
        key = key_of(obj)
        if key in seen:
            ident = f"{key[1]}/{key[2]}" if key[1] else key[2]
            raise LoadError(f"{path}: {key[0]} {ident}: defined twice (also in {seen[key]})")
        seen[key] = path
        items.append(obj)
    return Snapshot.from_objects(items)
