"""Reading Kubernetes YAML from files into a model Snapshot.

Role: the file-I/O edge in front of the pure model, shared by ``rauta translate``, the
golden tests and (later) the file source of ``rauta serve``.

Rules:
- Multi-document YAML and ``kind: List`` are accepted; empty documents are skipped.
- Directories are read recursively, ``*.yaml``/``*.yml``/``*.json`` in sorted path order;
  dot-files, files under dot-directories (``.git``, a ConfigMap volume's ``..data``) and
  editor temporaries (``#name#``, ``name~``, ``*.swp``, ``*.tmp``) are not config.
- An object of a kind rauta does not read (GRPCRoute, Deployment, ConfigMap) is skipped
  with one warning per file naming the kinds; every other object is kept.
- A field the object's kind does not define (``rauta.fieldcheck``) is a warning naming the
  object and field, as kubectl's field validation writes it; with ``strict`` an error.
- The same object in two files is an error naming both files (``load_snapshot``).
- Every failure is a ``LoadError`` whose text is one line naming the file, and the object
  and field when known (``file.yaml: HTTPRoute default/web: spec.rules[0]...: problem``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from rauta.fieldcheck import unknown_fields
from rauta.model.resources import KINDS, Resource, ResourceError, _ident, parse_object
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


class FileGone(LoadError):
    """The file disappeared between being listed and being read (a temporary file
    renamed over the config, a deleted file): removed, not invalid."""


SUFFIXES = (".yaml", ".yml", ".json")


def is_temporary(name: str) -> bool:
    """A dot-file or an editor's temporary/backup file: never read as config."""
    return name.startswith((".", "#")) or name.endswith(("~", ".swp", ".swx", ".tmp"))


def list_files(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(
                f for f in p.rglob("*")
                if f.suffix in SUFFIXES and not is_temporary(f.name)
                and not any(part.startswith(".") for part in f.relative_to(p).parts[:-1])
                and f.is_file()))
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
    except FileNotFoundError:
        raise FileGone(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(f"{path}: cannot read: {exc}") from None
    out: list[Any] = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List":
            out.extend(doc.get("items") or ())
        else:
            out.append(doc)
    return out


def supported(doc: Any) -> bool:
    """Is ``doc`` of a kind rauta reads? (Anything else, a non-mapping or a missing kind
    included, goes to ``parse_object`` and fails there with a clear line.)"""
    kind = doc.get("kind") if isinstance(doc, Mapping) else None
    return not (isinstance(kind, str) and kind and kind not in KINDS)


def skipped_kinds_warning(path: Path, docs: Iterable[Any]) -> str | None:
    """The one warning for the objects of ``path`` whose kind rauta does not read."""
    kinds = sorted({d["kind"] for d in docs if not supported(d)})
    if not kinds:
        return None
    return (f"{path}: skipped the objects of kinds rauta does not read: {', '.join(kinds)} "
            f"(it reads {', '.join(KINDS)})")


def field_warnings(path: Path, doc: Any) -> list[str]:
    """One line per unknown field of ``doc`` (``rauta.fieldcheck``)."""
    fields = unknown_fields(doc)
    if not fields:
        return []
    kind = doc.get("kind")
    ident = _ident(doc)
    where = f"{kind} {ident}" if ident else str(kind)
    return [f'{path}: {where}: unknown field "{f}"' for f in fields]


def check_document(path: Path, doc: Any, *, strict: bool = False) -> tuple[Resource, list[str]]:
    """Parse one supported document: the resource and its unknown-field warnings; under
    ``strict`` an unknown field is a ``LoadError`` instead."""
    warnings = field_warnings(path, doc)
    if strict and warnings:
        more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
        raise LoadError(f"{warnings[0]}{more} (--strict)")
    try:
        return parse_object(doc), warnings
    except ResourceError as exc:
        raise LoadError(f"{path}: {exc}") from None


def load_objects(paths: Iterable[str | Path], *, strict: bool = False,
                 warn: Callable[[str], None] | None = None) -> list[tuple[Path, Resource]]:
    """Every supported object of ``paths``; ``warn`` hears each warning line."""
    objects: list[tuple[Path, Resource]] = []
    for path in list_files(paths):
        docs = load_documents(path)
        skipped = skipped_kinds_warning(path, docs)
        if skipped and warn:
            warn(skipped)
        for doc in filter(supported, docs):
            obj, warnings = check_document(path, doc, strict=strict)
            if warn is not None:
                for line in warnings:
                    warn(line)
            objects.append((path, obj))
    return objects


def load_snapshot(paths: Iterable[str | Path], *, strict: bool = False,
                  warn: Callable[[str], None] | None = None) -> Snapshot:
    """Parse every object in ``paths`` into one Snapshot (duplicates are an error)."""
    seen: dict[tuple[str, str, str], Path] = {}
    items: list[Resource] = []
    for path, obj in load_objects(paths, strict=strict, warn=warn):
        key = key_of(obj)
        if key in seen:
            ident = f"{key[1]}/{key[2]}" if key[1] else key[2]
            raise LoadError(f"{path}: {key[0]} {ident}: defined twice (also in {seen[key]})")
        seen[key] = path
        items.append(obj)
    return Snapshot.from_objects(items)
