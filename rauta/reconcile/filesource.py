"""The file source: Gateway API + Service + EndpointSlice YAML on disk as a watch stream.

Role: ``rauta serve --config DIR|FILE`` reads every object from the given files, hands the
full listing to the reconciler (which applies only real differences), and re-reads on
change (``watchfiles``).

Rules:
- A file that fails to load (bad YAML, a missing required field) changes nothing: every
  object it held keeps its last good version, and one clear line names the file, object
  and field. Other files still apply.
- Objects from a file that was deleted are deleted.
- Re-reading an unchanged file is a no-op (the store compares objects).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import watchfiles

from rauta.loader import LoadError, list_files, load_documents
from rauta.model.resources import ResourceError, parse_object
from rauta.reconcile.reconciler import Reconciler

log = logging.getLogger("rauta.files")


class FileSource:
    def __init__(self, paths: list[str | Path], reconciler: Reconciler) -> None:
        self.paths = [Path(p) for p in paths]
        self.reconciler = reconciler
        self.last_good: dict[Path, list[Mapping[str, Any]]] = {}
        self.errors: dict[Path, str] = {}

    def load(self) -> int:
        """Read every file now; returns the number of object changes applied."""
        objects = self.read()
        return 0 if objects is None else self.reconciler.replace_all(objects)

    async def load_async(self) -> int:
        """``load`` with the file reading and parsing in a worker thread (off the loop)."""
        objects = await asyncio.to_thread(self.read)
        return 0 if objects is None else self.reconciler.replace_all(objects)

    def read(self) -> list[Mapping[str, Any]] | None:
        """Every object of the last good version of every file (None: nothing readable)."""
        try:
            files = list_files(self.paths)
        except LoadError as exc:
            log.error("%s", exc)
            return None
        current: dict[Path, list[Mapping[str, Any]]] = {}
        for gone in set(self.errors) - set(files):
            del self.errors[gone]  # a file that comes back invalid is reported again
        for path in files:
            try:
                docs = load_documents(path)
                for doc in docs:
                    try:
                        parse_object(doc)
                    except ResourceError as exc:
                        raise LoadError(f"{path}: {exc}") from None
            except LoadError as exc:
                if self.errors.get(path) != str(exc):
                    log.error("invalid edit, still serving the last good version: %s", exc)
                self.errors[path] = str(exc)
                current[path] = self.last_good.get(path, [])
                continue
            if path in self.errors:
                log.info("%s: valid again", path)
                del self.errors[path]
            current[path] = docs
        self.last_good = current
        return [obj for docs in current.values() for obj in docs]

    async def run(self, *, debounce_ms: int = 50) -> None:
        """Load now, then reload on every change until cancelled."""
        await self.load_async()
        watch = [p if p.is_dir() else p.parent for p in self.paths]
        async for _ in watchfiles.awatch(*watch, debounce=debounce_ms, step=20,
                                         recursive=True):
            await self.load_async()


async def poll_forever(source: FileSource, interval: float = 1.0) -> None:
    """Fallback for filesystems without change notification: reload every ``interval``."""
    while True:
        source.load()
        await asyncio.sleep(interval)
