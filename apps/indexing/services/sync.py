"""Writes of the transcript index: index_sync copies ~/.claude into the database.

One run: walk the config roots, compare each file with what was consumed before,
read only the appended bytes (or the whole file when it shrank or was replaced),
and write entries in short batched IMMEDIATE transactions so a relay writing the
same database waits milliseconds, never fails. A file lock beside the database
makes a second run wait for the first; each batch also moves its file's offset
only from the value it started from, so even two unlocked runs cannot double-index.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import connection

from apps.indexing import sql
from apps.indexing.fts import fts_optimize, fts_stale_apply, fts_stale_count
from apps.indexing.models import Block, Entry, Session, SourceFile
from apps.indexing.services.batches import Batch, Committer, sessions_ensure
from apps.indexing.services.sessions import sessions_finalize, sessions_prune_empty
from apps.indexing.services.txn import write_retry
from apps.indexing.services.wholefiles import wholefile_ingest
from apps.indexing.sources import (
    FoundFile,
    config_roots,
    files_scan,
    lines_read,
    source_open,
)

BATCH_ROWS = 2000
BATCH_BYTES = 8 * 1024 * 1024
READ_CHUNK = 4 * 1024 * 1024
HEAD_BYTES = 1024
PROBLEMS_KEPT = 1000
OPTIMIZE_AFTER = 50_000  # entries added in one run


@dataclass(slots=True)
class Problem:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(slots=True)
class SyncReport:
    files_scanned: int = 0
    files_changed: int = 0
    files_missing: int = 0
    files_pruned: int = 0
    entries_added: int = 0
    bad_lines: int = 0
    warnings: int = 0
    problems: list[Problem] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return self.entries_added / self.elapsed if self.elapsed > 0 else 0.0

    def problem(self, path: str, line: int, reason: str, *, bad: bool) -> None:
        if bad:
            self.bad_lines += 1
        else:
            self.warnings += 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(Problem(path, line, reason))

    def summary_line(self) -> str:
        return (
            f"{self.files_scanned} files scanned, {self.files_changed} changed, "
            f"{self.entries_added} entries added, {self.bad_lines} bad lines skipped"
            + (f", {self.warnings} warnings" if self.warnings else "")
            + (
                f", {self.files_missing} sources missing (kept)"
                if self.files_missing
                else ""
            )
            + (f", {self.files_pruned} pruned" if self.files_pruned else "")
            + f", {self.elapsed:.2f}s, {self.rate:,.0f} entries/s"
        )


Progress = Callable[[SyncReport], None]


class IndexBusy(RuntimeError):
    """Another index run holds the lock and the caller chose not to wait."""


def index_sync(
    *,
    full: bool = False,
    prune: bool = False,
    roots: list[Path] | None = None,
    progress: Progress | None = None,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> SyncReport:
    """Bring the index up to date with the config roots; return what was done."""
    report = SyncReport()
    started = time.monotonic()
    with index_lock(wait=wait, on_wait=on_wait):
        # Entries deleted by another program (sqlite3, a backup script) leave the
        # index here, in short transactions.
        while fts_stale_count() and write_retry(fts_stale_apply):
            pass
        found = files_scan(roots=config_roots() if roots is None else roots)
        report.files_scanned = len(found)
        known = {
            row[1]: row for row in SourceFile.objects.values_list(*_SOURCE_COLUMNS)
        }
        changed = [f for f in found if full or _changed(f, known.get(f.path))]
        touched: set[int] = set()
        if changed:
            run = _Run(report=report, full=full, progress=progress, touched=touched)
            run.prepare(changed, known)
            # Transcripts first: todos and plans link to sessions they name.
            for found_file in sorted(changed, key=lambda f: _KIND_ORDER[f.kind]):
                report.files_changed += 1
                run.ingest(found_file)
            run.flush()
            sessions_finalize(session_pks=touched)
        _missing_mark(found, known, report, prune)
        if report.entries_added >= OPTIMIZE_AFTER:
            write_retry(fts_optimize)
    report.elapsed = time.monotonic() - started
    return report


def sessions_refinalize() -> int:
    """Recompute every session's totals and calls (and their ledger rows) from
    its entries, under the index lock; return how many sessions."""
    with index_lock(wait=True):
        pks = set(Session.objects.values_list("pk", flat=True))
        sessions_finalize(session_pks=pks)
    return len(pks)


def sources_snapshot() -> int:
    """Return a fingerprint of every source file's path, identity, size and mtime."""
    return hash(tuple(files_scan(roots=config_roots())))


_SOURCE_COLUMNS = (
    "id",
    "path",
    "device",
    "inode",
    "size",
    "mtime_ns",
    "offset",
    "lines",
    "head",
    "missing",
)
_WHOLE_FILES = ("todo", "task", "plan")
_KIND_ORDER = {"transcript": 0, "history": 1, "todo": 2, "task": 3, "plan": 4}


def _changed(found: FoundFile, known: tuple | None) -> bool:
    if known is None:
        return True
    _, _, device, inode, size, mtime_ns, *_rest = known
    return (found.device, found.inode, found.size, found.mtime_ns) != (
        device,
        inode,
        size,
        mtime_ns,
    )


@contextmanager
def index_lock(
    *, wait: bool = True, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the per-database index lock (a second run waits or raises IndexBusy)."""
    if connection.vendor == "sqlite":
        lock = _file_lock(wait=wait, on_wait=on_wait)
    else:
        lock = _advisory_lock(wait=wait, on_wait=on_wait)
    with lock:
        yield


@contextmanager
def _file_lock(*, wait: bool, on_wait: Callable[[str], None] | None) -> Iterator[None]:
    """Lock a file beside the SQLite file, naming the holder's pid in it."""
    path = f"{connection.settings_dict['NAME']}.index-lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            message = f"another reindex run (pid {holder}) is indexing this database"
            if not wait:
                raise IndexBusy(message) from None
            if on_wait:
                on_wait(f"{message}; waiting for it to finish…")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


# The key of the index's session-level advisory lock ("clmn"): runs on several
# hosts share one server, so the lock must be the database's, not a file's.
ADVISORY_KEY = 0x636C6D6E


@contextmanager
def _advisory_lock(
    *, wait: bool, on_wait: Callable[[str], None] | None
) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock on this connection for the whole run."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_KEY])
        if not cursor.fetchone()[0]:
            cursor.execute(sql.LOCK_HOLDER, [ADVISORY_KEY])
            row = cursor.fetchone()
            message = (
                f"another reindex run (database session {row[0] if row else '?'}) "
                "is indexing this database"
            )
            if not wait:
                raise IndexBusy(message)
            if on_wait:
                on_wait(f"{message}; waiting for it to finish…")
            cursor.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_KEY])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_KEY])


class _Run:
    """The state of one sync pass over the changed files."""

    def __init__(
        self,
        *,
        report: SyncReport,
        full: bool,
        progress: Progress | None,
        touched: set[int],
    ) -> None:
        self.report, self.full = report, full
        self.progress, self.touched = progress, touched
        self.committer = Committer(
            report=report, max_rows=BATCH_ROWS, max_bytes=BATCH_BYTES
        )
        self.fresh: dict[str, SourceFile] = {}
        self.sessions: dict[str, int] = {}

    def prepare(self, changed: list[FoundFile], known: dict[str, tuple]) -> None:
        """Create rows for new files and their sessions in two short transactions."""
        new = [f for f in changed if f.path not in known]
        if new:
            write_retry(
                lambda: SourceFile.objects.bulk_create(
                    [SourceFile(path=f.path, root=f.root, kind=f.kind) for f in new],
                    ignore_conflicts=True,
                )
            )
            paths = [f.path for f in new]
            for start in range(0, len(paths), 900):
                chunk = paths[start : start + 900]
                for source in SourceFile.objects.filter(path__in=chunk):
                    self.fresh[source.path] = source
        transcripts = [f.path for f in changed if f.kind == "transcript"]
        if transcripts:
            self.sessions = sessions_ensure(paths=transcripts)
            self.touched.update(self.sessions.values())

    def ingest(self, found: FoundFile) -> None:
        try:
            # Opened before anything is deleted: a file that cannot be read keeps
            # its indexed history (only --prune drops history).
            with source_open(found.path) as handle:
                source = self.fresh.get(found.path)
                if source is None or source.offset:
                    source = _source_prepare(found, handle, self.full)
                if found.kind in ("transcript", "history"):
                    self._jsonl_ingest(found, source, handle)
                else:
                    self.flush()  # whole files write on their own; keep the order
                    wholefile_ingest(
                        found=found, source=source, report=self.report, handle=handle
                    )
        except OSError as exc:  # vanished or unreadable between scan and read
            reason = f"unreadable ({exc}); its indexed history is kept"
            self.report.problem(found.path, 0, reason, bad=False)

    def _jsonl_ingest(
        self, found: FoundFile, source: SourceFile, handle: BinaryIO
    ) -> None:
        batch = Batch(
            found=found,
            source=source,
            report=self.report,
            session_pk=self.sessions.get(found.path),
        )
        expected, head = source.offset, source.head
        limit = settings.CLAUDEMON_INDEX_MAX_LINE_MB * 1024 * 1024
        handle.seek(source.offset)
        for line, size in lines_read(handle, limit=limit, chunk=READ_CHUNK):
            if line is None:
                batch.skip(size, reason=_too_long(size, limit))
            else:
                batch.add(line)
            if batch.full(BATCH_ROWS, BATCH_BYTES):
                head = head or _head_of(handle, batch.offset_end)
                expected = self._queue(batch, expected, head)
        if batch.offset_end:
            head = head or _head_of(handle, batch.offset_end)
        self._queue(batch, expected, head)

    def _queue(self, batch: Batch, expected: int, head: str) -> int:
        """Queue the batch; return the offset the file's next batch starts from."""
        self.committer.queue(batch, expected=expected, head=head)
        if self.committer.due():
            self.flush()
        return batch.offset_end

    def flush(self) -> None:
        self.report.entries_added += self.committer.flush()
        if self.progress:
            self.progress(self.report)


def _too_long(size: int, limit: int) -> str:
    return (
        f"line of {size:,} bytes is over the {limit // 1024 // 1024} MB limit "
        "(CLAUDEMON_INDEX_MAX_LINE_MB); skipped"
    )


def _source_prepare(found: FoundFile, handle: BinaryIO, full: bool) -> SourceFile:
    """Return the SourceFile row, reset to offset 0 when the file must be re-read."""
    source = SourceFile.objects.get(path=found.path)
    restart = (
        full
        or found.kind in _WHOLE_FILES
        or source.offset > found.size
        or ((source.device, source.inode) != (found.device, found.inode))
        or not _head_matches(handle, source)
    )
    if restart and source.offset:
        source.offset, source.lines, source.bad_lines, source.head = 0, 0, 0, ""
        write_retry(
            lambda: source.save(update_fields=["offset", "lines", "bad_lines", "head"])
        )
    if source.offset == 0:
        _entries_delete(source_pk=source.pk)
    return source


def _head_matches(handle: BinaryIO, source: SourceFile) -> bool:
    if not source.head:
        return True
    length, _, _digest = source.head.partition(":")
    return _head_of(handle, int(length)) == source.head


def _head_of(handle: BinaryIO, length: int) -> str:
    """Return '<length>:<digest>' of a file's first bytes (sees in-place rewrites)."""
    head = os.pread(handle.fileno(), min(length, HEAD_BYTES), 0)
    return f"{len(head)}:{hashlib.blake2b(head, digest_size=16).hexdigest()}"


def _entries_delete(*, source_pk: int, chunk: int = 5000) -> int:
    """Delete a source's entries, then its blocks, in short transactions."""
    deleted = 0
    while True:
        rows = Entry.objects.filter(source_id=source_pk).values_list("id", flat=True)
        ids = list(rows[:chunk])
        if not ids:
            write_retry(lambda: Block.objects.filter(source_id=source_pk).delete())
            return deleted
        write_retry(functools.partial(_entries_remove, ids))
        deleted += len(ids)


def _entries_remove(ids: list[int]) -> None:
    # Their tombstones leave the index at once, while their blocks still exist
    # (no block is then copied aside).
    Entry.objects.filter(id__in=ids).delete()
    fts_stale_apply(limit=len(ids))


def _missing_mark(
    found: list[FoundFile], known: dict[str, tuple], report: SyncReport, prune: bool
) -> None:
    present = {f.path for f in found}
    gone = [row[0] for path, row in known.items() if path not in present]
    report.files_missing = len(gone)
    if not gone:
        return
    if not prune:
        write_retry(
            lambda: SourceFile.objects.filter(id__in=gone, missing=False).update(
                missing=True
            )
        )
        return
    sessions = SourceFile.objects.filter(id__in=gone, session__isnull=False)
    touched = set(sessions.values_list("session_id", flat=True))
    for source_pk in gone:
        _entries_delete(source_pk=source_pk)
        write_retry(SourceFile.objects.filter(pk=source_pk).delete)
    report.files_pruned, report.files_missing = len(gone), 0
    # Totals and calls of sessions that kept other files, and the ledger's
    # transcript side of the calls that went with the pruned ones.
    sessions_finalize(session_pks=touched)
    write_retry(sessions_prune_empty)
