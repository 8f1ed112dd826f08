"""The file source: Gateway API + Service + EndpointSlice YAML on disk as a watch stream.

Role: ``rauta serve --config DIR|FILE`` reads every object from the given files, hands the
full listing to the reconciler (which applies only real differences), then watches them
(``watchfiles``) and re-reads only the files that changed, handing the reconciler only
the objects of those files.

Rules:
- A file that fails to load (bad YAML, a missing required field, an unknown field under
  ``strict``) changes nothing: every object it held keeps its last good version, and one
  clear line names the file, object and field (and says whether a last good version is
  being served at all). Other files still apply. Each rejected read counts in
  ``rejected`` (``rauta_config_reload_errors_total``).
- Whole-file safety of edits on a watch (``settle`` > 0): a file written in place (same
  inode, or new) is read once it has not changed for ``settle`` seconds, so a
  ``cmd > file`` caught half-written is not applied; a file renamed over the config (a
  new inode: the atomic way) is read at once. A file that became empty while it held
  objects is applied (its objects deleted) only once it stayed empty for ``empty_hold``
  seconds: the shell truncates before the command writes.
- Objects from a file that was deleted are deleted; a file that vanished before it could
  be read (a temporary renamed away) is a removed file, never an invalid one. Dot-files,
  editor temporaries and dot-directories are not config (``rauta.loader.list_files``).
- Objects of kinds rauta does not read are skipped with one warning per file; unknown
  fields are one warning each (``rauta.fieldcheck``). A warning is logged once while the
  file keeps it.
- Re-reading an unchanged file is a no-op (the store compares objects).
- An object defined in more than one file: the definition in the file listed last
  (``list_files`` order) wins, for a full load and for a re-read of one file alike, and
  a warning names both files.
- A change event re-reads only the files it names (parsing is off the event loop); the
  directory is listed again only when a file appeared or disappeared. ``--config FILE``
  watches that file only (its directory, not recursively, filtered to its name);
  ``--config DIR`` watches the directory tree.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import watchfiles

from rauta.loader import (
    SUFFIXES,
    FileGone,
    LoadError,
    check_document,
    field_warnings,
    is_temporary,
    list_files,
    load_documents,
    skipped_kinds_warning,
    supported,
)
from rauta.reconcile.reconciler import Reconciler
from rauta.reconcile.store import Event, raw_key

log = logging.getLogger("rauta.files")

Doc = Mapping[str, Any]
Key = tuple[str, str, str]


class _Defer:
    """``_parse``'s answer for a file not to read yet: read it again at ``at``."""

    def __init__(self, at: float) -> None:
        self.at = at


_GONE = object()  # ``_parse``'s answer for a file that vanished


class FileSource:
    def __init__(self, paths: list[str | Path], reconciler: Reconciler, *,
                 strict: bool = False, settle: float = 0.0, empty_hold: float = 2.0,
                 clock: Callable[[], float] = time.time,
                 on_reject: Callable[[], None] | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.reconciler = reconciler
        self.strict = strict
        self.settle = settle
        self.empty_hold = empty_hold
        self.clock = clock  # compared with file mtimes: the wall clock
        self.on_reject = on_reject
        self.rejected = 0  # reads of a file that were refused (invalid)
        self.last_good: dict[Path, list[Doc]] = {}
        self.errors: dict[Path, str] = {}
        self.pending: dict[Path, float] = {}  # files to read again, and when (wall clock)
        self._files: list[Path] = []  # the last listing, in list_files order
        self._resolved: dict[Path, Path] = {}  # resolved path -> the path as listed
        self._dirs: set[Path] = set()  # every directory above a listed file (resolved)
        self._by_file: dict[Path, dict[Key, Doc]] = {}
        self._inode: dict[Path, int] = {}  # the inode each file had when last read
        self._notes: dict[Path, set[str]] = {}  # warnings logged for each file's content
        self._dups: dict[Key, tuple[Path, ...]] = {}  # objects in several files, reported

    def load(self) -> int:
        """Read every file now; returns the number of object changes applied."""
        objects = self.read()
        return 0 if objects is None else self.reconciler.replace_all(objects)

    async def load_async(self) -> int:
        """``load`` with the file reading and parsing in a worker thread (off the loop)."""
        objects = await asyncio.to_thread(self.read)
        return 0 if objects is None else self.reconciler.replace_all(objects)

    def _reject(self, path: Path, text: str) -> None:
        self.rejected += 1
        if self.on_reject is not None:
            self.on_reject()
        if self.errors.get(path) != text:
            if path in self.last_good:
                log.error("invalid edit, still serving the last good version: %s", text)
            else:
                log.error("invalid, none of its objects are served until it loads: %s", text)
        self.errors[path] = text

    def _note(self, path: Path, lines: list[str]) -> None:
        """Log the warnings of a file's new content that were not logged for it yet."""
        old = self._notes.get(path, set())
        for line in lines:
            if line not in old:
                log.warning("%s", line)
        self._notes[path] = set(lines)

    def _parse(self, path: Path, now: float | None = None) -> list[Doc] | _Defer | object | None:
        """The supported documents of one file, each checked to parse; None (logged) when
        invalid, ``_GONE`` when the file vanished, a ``_Defer`` when it is not to be read
        yet (``now`` given: a watch event; see the module doc). Documents equal to the
        file's last good ones are not parsed again."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return _GONE
        except OSError:
            st = None
        age = None if st is None or now is None else now - st.st_mtime
        # (an mtime more than 1 s ahead, e.g. copied with ``cp -p`` from a skewed host,
        # is not trusted: such a file is read at once)
        young = age is not None and self.settle > 0 and -1.0 < age < self.settle
        if young and self._inode.get(path) in (None, st.st_ino):  # type: ignore[union-attr]
            return _Defer(st.st_mtime + self.settle)  # type: ignore[union-attr]
        try:
            raw = load_documents(path)
            known = self._by_file.get(path, {})
            notes = [w for w in (skipped_kinds_warning(path, raw),) if w]
            docs = [d for d in raw if supported(d)]
            for doc in docs:
                if isinstance(doc, Mapping) and known.get(raw_key(doc)) == doc:
                    unknown = field_warnings(path, doc)  # (cheap: no parse)
                    if self.strict and unknown:
                        check_document(path, doc, strict=True)  # raises
                    notes.extend(unknown)
                    continue
                notes.extend(check_document(path, doc, strict=self.strict)[1])
        except FileGone:
            return _GONE
        except LoadError as exc:
            self._reject(path, str(exc))
            return None
        if (not docs and self.last_good.get(path) and st is not None and age is not None
                and -1.0 < age < self.empty_hold):
            if path not in self.pending:
                log.info("%s is empty; its objects stay until it has been empty for %.1fs "
                         "(write config files atomically: a temporary file renamed over it)",
                         path, self.empty_hold)
            return _Defer(st.st_mtime + self.empty_hold)
        if st is not None:
            self._inode[path] = st.st_ino
        self._note(path, notes)
        if path in self.errors:
            log.info("%s: valid again", path)
            del self.errors[path]
        return docs

    def _keep(self, path: Path, docs: list[Doc]) -> None:
        self.last_good[path] = docs
        self._by_file[path] = {raw_key(d): d for d in docs if isinstance(d, Mapping)}

    def _forget(self, path: Path) -> None:
        self.last_good.pop(path, None)
        self._by_file.pop(path, None)
        self.errors.pop(path, None)  # a file that comes back invalid is reported again
        self._inode.pop(path, None)
        self._notes.pop(path, None)
        self.pending.pop(path, None)

    def _list(self) -> list[Path] | None:
        try:
            files = list_files(self.paths)
        except LoadError as exc:
            log.error("%s", exc)
            return None
        self._set_listing(files)
        return files

    def _set_listing(self, files: list[Path]) -> None:
        self._files = files
        self._resolved = {f.resolve(): f for f in files}
        self._dirs = {d for f in self._resolved for d in f.parents}

    def _drop(self, path: Path) -> None:
        """A listed file that vanished: removed (its objects deleted), not invalid."""
        self._forget(path)
        if path in self._files:
            self._set_listing([f for f in self._files if f != path])

    def read(self) -> list[Doc] | None:
        """Every object of the last good version of every file (None: nothing readable)."""
        files = self._list()
        if files is None:
            return None
        for gone in set(self.last_good) - set(files):
            self._forget(gone)
        for gone in set(self.errors) - set(files):
            del self.errors[gone]
        for path in list(files):
            docs = self._parse(path)
            if docs is _GONE:
                self._drop(path)
                continue
            assert not isinstance(docs, _Defer)
            self._keep(path, self.last_good.get(path, []) if docs is None else docs)  # type: ignore[arg-type]
        self._report_duplicates(None)
        return [obj for path in self._files for obj in self.last_good[path]]

    def _report_duplicates(self, keys: Iterable[Key] | None) -> None:
        """Warn, once per set of files, about objects defined in more than one file."""
        if keys is None:
            keys = {k for f in self._files for k in self._by_file.get(f, {})}
            self._dups = {k: v for k, v in self._dups.items() if k in keys}
        for key in sorted(keys):
            where = tuple(f for f in self._files if key in self._by_file.get(f, {}))
            if len(where) < 2:
                self._dups.pop(key, None)
            elif self._dups.get(key) != where:
                self._dups[key] = where
                ident = f"{key[1]}/{key[2]}" if key[1] else key[2]
                log.warning("%s %s is defined in %s; the one in %s (listed last) is used",
                            key[0], ident, " and ".join(map(str, where)), where[-1])

    def _covers(self, path: Path) -> bool:
        """Is ``path`` (resolved) one of the configured files, or a YAML file under one of
        the configured directories?"""
        for p in self.paths:
            root = p.resolve()
            if path == root or (path.suffix in SUFFIXES and not is_temporary(path.name)
                                and root in path.parents):
                return True
        return False

    def read_changed(self, changed: Iterable[str | Path],
                     now: float | None = None) -> list[Event] | None:
        """Re-read only the ``changed`` files (paths as the watcher reports them): the
        events that bring the reconciler's objects in line (None: a listing failed).
        ``now`` (wall clock) is given for a watch event: files still being written are
        left in ``pending`` instead (see the module doc).

        A directory that appeared, or a known one that disappeared, counts as a change of
        every file under it; paths that are neither (other files) are ignored."""
        raw = {Path(p).resolve() for p in changed}
        dirs = {p for p in raw if p in self._dirs or p.is_dir()}
        wanted = {p for p in raw - dirs if self._covers(p)}
        if not wanted and not dirs:
            return []
        known = {p: self._resolved.get(p) for p in wanted}
        if dirs or any(ours is None or not ours.is_file() for ours in known.values()):
            before = self._resolved
            if self._list() is None:
                return None
            for p, ours in (*before.items(), *self._resolved.items()):
                if p in wanted or any(d in p.parents for d in dirs):
                    known[p] = ours
        listed = set(self._files)
        affected: dict[Key, Doc] = {}  # key -> a version of it, for DELETED
        for ours in sorted({p for p in known.values() if p is not None}):
            self.pending.pop(ours, None)
            affected.update(self._by_file.get(ours, {}))
            if ours in listed:
                docs = self._parse(ours, now)
                if isinstance(docs, _Defer):
                    self.pending[ours] = docs.at
                elif docs is _GONE:
                    self._drop(ours)
                elif docs is not None:
                    self._keep(ours, docs)  # type: ignore[arg-type]
                    affected.update(self._by_file[ours])
            else:
                self._forget(ours)
        events: list[Event] = []
        for key, some in sorted(affected.items()):
            winner = next((self._by_file[f][key] for f in reversed(self._files)
                           if key in self._by_file.get(f, {})), None)
            events.append(Event("DELETED", some) if winner is None else Event("MODIFIED", winner))
        self._report_duplicates(affected)
        return events

    async def reload(self, changed: Iterable[str | Path]) -> int:
        """Re-read the changed files (in a worker thread) and submit what they changed."""
        events = await asyncio.to_thread(self.read_changed, list(changed), self.clock())
        return 0 if not events else self.reconciler.submit(events)

    def _watches(self) -> list[tuple[list[Path], bool, Callable[[Any, str], bool] | None]]:
        """What to watch: (paths, recursive, filter). Directories recursively; a file by
        its directory, not recursively, filtered to its own name (a rename over it
        replaces its inode, which a watch of the file itself would lose). A file that is
        a symlink (a ConfigMap volume) also hears its directory's ``..data`` swaps."""
        dirs = [p for p in self.paths if p.is_dir()]
        files = [p for p in self.paths if not p.is_dir()]
        out: list[tuple[list[Path], bool, Callable[[Any, str], bool] | None]] = []
        if dirs:
            out.append((dirs, True, watchfiles.DefaultFilter()))
        if files:
            names = {(str(p.absolute().parent), p.name) for p in files}
            links = {str(p.absolute().parent) for p in files if p.is_symlink()}

            def named(_: Any, path: str) -> bool:
                parent, _sep, name = path.rpartition("/")
                return (parent, name) in names or (parent in links and name.startswith(".."))

            parents = sorted({p.absolute().parent for p in files})
            out.append((parents, False, named))
        return out

    async def run(self, *, debounce_ms: int = 50, step_ms: int = 2) -> None:
        """Load now, then re-read the files that change until cancelled. ``step_ms``: how
        long the watcher waits for more changes after one (the first change is seen after
        at least this long: p50 4 ms at 2, 10 ms at 5, 33 ms at 20 on loopback tmpfs);
        ``debounce_ms``: the most it groups changes for. A file still being written
        (``settle``) is read again once it is stable (``pending``)."""
        await self.load_async()
        changes: asyncio.Queue[set[str] | None] = asyncio.Queue()

        async def watch(paths: list[Path], recursive: bool,
                        keep: Callable[[Any, str], bool] | None) -> None:
            async for batch in watchfiles.awatch(*paths, debounce=debounce_ms, step=step_ms,
                                                 recursive=recursive, watch_filter=keep):
                changes.put_nowait({path for _, path in batch})

        watchers = [asyncio.create_task(watch(*w), name="file-watch") for w in self._watches()]
        for task in watchers:  # a watcher that stops (an error) must not go unnoticed
            task.add_done_callback(lambda _t: changes.put_nowait(None))
        try:
            while True:
                timeout = None
                if self.pending:
                    timeout = max(0.0, min(self.pending.values()) - self.clock()) + 0.005
                try:
                    got = await asyncio.wait_for(changes.get(), timeout)
                    if got is None:
                        for task in watchers:
                            if task.done() and not task.cancelled():
                                task.result()  # raises the watcher's error
                        raise RuntimeError("the file watcher stopped")
                    batch = got
                except TimeoutError:
                    now = self.clock()
                    batch = {str(p) for p, at in self.pending.items() if at <= now}
                self.wakeups += 1
                await self.reload(batch)
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    wakeups = 0  # batches of changes handled by ``run`` (a test counts them)


async def poll_forever(source: FileSource, interval: float = 1.0) -> None:
    """Fallback for filesystems without change notification: reload every ``interval``."""
    while True:
        source.load()
        await asyncio.sleep(interval)
