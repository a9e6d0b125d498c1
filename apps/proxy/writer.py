"""The recording threads: turn finished calls into rows without ever blocking the relay.

Invariants:
- The event loop only calls `recording_submit`: a put into an in-memory queue. It
  never touches the disk and never waits for a lock held across I/O.
- Past the queue's bounds (CLAUDEMON_BACKLOG_SIZE steps, _MAX_QUEUED_BYTES of
  bodies: the database has been locked or gone for a while) a step goes to the
  spill thread, which appends it to the spill file (apps.proxy.spill: JSON lines,
  secrets fingerprinted before they leave memory).
- The writer thread drains the queue, then the spill file, and writes each batch in
  one short transaction. Only transient database errors (OperationalError: locked,
  busy, gone) are retried, with capped backoff. Anything else is permanent for the
  batch, which is then written row by row so that only the offending step goes to
  the quarantine file, with its reason; a step whose row cannot even be built goes
  there at once. The rest of the batch is written.
- Each thread is supervised: an unexpected exception is logged with its traceback
  and the thread's loop starts again after a pause; `problem()` (for /health and
  /ready) names the cause until the next successful write.
- At exit, what is queued is written if the database takes it, else spilled, the
  batch in hand included.
- Starts are INSERT OR IGNORE and finishes are upserts, so a start and its finish may
  arrive in any order (after a spill), more than once, and each exchange ends as
  exactly one row.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from apps.proxy import services
from apps.proxy.models import Exchange
from apps.proxy.recorder import Call
from apps.proxy.spill import (
    BacklogFiles,
    backlog_files,
    legacy_set_aside,
    lines_append,
    lines_count,
    lines_read,
    step_line,
    step_read,
    unnamed_adopt,
    unreadable_line,
)
from apps.proxy.steps import Item, Row, steps_rows

log = logging.getLogger("apps.proxy.writer")
_OPEN = Exchange.State.IN_PROGRESS

_BATCH = 256
# A start waits this long for its finish so that short calls are written once,
# whole; long calls still show up in progress well within the live feed's 1 s.
_WINDOW = 0.2
# Besides the item count (CLAUDEMON_BACKLOG_SIZE), the memory held by waiting bodies
# is bounded: a long outage with multi-megabyte conversations spills to disk.
_MAX_QUEUED_BYTES = 256 * 1024 * 1024
_MAX_RETRY_PAUSE = 2.0
_MAX_RESTART_PAUSE = 5.0
# At exit the writer may sit in SQLite's 5 s busy wait; the launcher and daphne's
# callers kill after 10 s, so whatever is still in hand by then is spilled.
_STOP_WAIT = 7.0


class _Permanent(Exception):
    """A write that retrying cannot fix: integrity, data, a row that cannot be built."""


class _Stopped(Exception):
    """The process stops while the database refuses writes: spill instead of waiting."""


class Recording:
    """The bounded backlog between the relay and the database, and its threads."""

    def __init__(self, *, capacity: int, files: BacklogFiles) -> None:
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=capacity)
        self._overflow: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._files = files
        self._draining_path = files.spill.with_name(files.spill.name + ".draining")
        # Guards the spill file between the spill and writer threads; never taken
        # on the event loop.
        self._file_lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._threads_lock = threading.Lock()
        self._stopping = threading.Event()
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self._spilled = 0  # steps in the spill file (counted by the writer at start)
        self._draining = 0  # steps of the spill file being written
        self._in_hand: list[Item] = []  # queued steps the writer holds
        self._spill_hand: list[Item] = []  # steps the spill thread holds
        self._opened = False
        self._started_at = time.time()
        self._writing_since = 0.0  # monotonic start of the current write, 0 when idle
        self.database_error = ""
        self.failure = ""  # a thread's last unexpected exception, until a write works
        self.written = 0
        self.quarantined = 0
        self.last_quarantine_reason = ""
        self.legacy_spill = ""

    # -- the relay's side: memory only --
    def submit(self, kind: str, call: Call) -> None:
        """Queue one recording step; past the queue's bounds, hand it to the spill
        thread (the event loop never writes the file itself)."""
        self.start()
        size = len(call.request_body) if kind == "start" else sum(map(len, call.chunks))
        item = Item(kind, call, size)
        with self._bytes_lock:
            fits = (
                self._queued_bytes + size <= _MAX_QUEUED_BYTES or not self._queued_bytes
            )
            if fits:
                self._queued_bytes += size
        if fits:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                self._release(item)
        self._overflow.put(item)

    def start(self) -> None:
        """Start (or start again) the writer and spill threads; no disk I/O here."""
        if self._stopping.is_set() or self._running():
            return
        with self._threads_lock:
            first = not self._threads
            loops = (("writer", self._write_loop), ("spill", self._spill_loop))
            for name, loop in loops:
                thread = self._threads.get(name)
                if thread is None or not thread.is_alive():
                    thread = threading.Thread(
                        target=self._supervise,
                        args=(name, loop),
                        name=f"claudemon-recorder-{name}",
                        daemon=True,
                    )
                    self._threads[name] = thread
                    thread.start()
            if first:
                atexit.register(self.close)

    def _running(self) -> bool:
        threads = self._threads
        return len(threads) == 2 and all(t.is_alive() for t in threads.values())

    def _get(self, timeout: float | None) -> Item:
        """Take the next queued step (raises queue.Empty), releasing its bytes."""
        item = self._queue.get(timeout=timeout) if timeout else self._queue.get_nowait()
        self._release(item)
        return item

    def _release(self, item: Item) -> None:
        with self._bytes_lock:
            self._queued_bytes -= item.size

    # -- what /health and /ready report --
    def backlog(self) -> int:
        """Return how many recording steps wait for the database."""
        return (
            self._queue.qsize()
            + self._overflow.qsize()
            + len(self._spill_hand)
            + self._spilled
            + self._draining
            + len(self._in_hand)
        )

    def database_problem(self) -> str:
        """Describe why the database does not take writes ('' when it does)."""
        if self.database_error:
            return self.database_error
        since = self._writing_since
        if since and time.monotonic() - since > 1.0:
            return f"database busy: a write has waited {time.monotonic() - since:.1f} s"
        return ""

    def own_problem(self) -> str:
        """Describe what is wrong with this process's recording itself ('' when
        nothing): a failed or stopped thread. A slow or absent database is not its
        own: the backlog and the spill file hold the calls until it is back."""
        if self.failure:
            return self.failure
        if self._threads and not self._running() and not self._stopping.is_set():
            return "a recording thread is not running"
        return ""

    def problem(self) -> str:
        """Describe why recording is down or behind ('' when it keeps up)."""
        own = self.own_problem()
        if own:
            return own
        database = self.database_problem()
        if database:
            return database
        behind = self._spilled + self._draining + self._overflow.qsize()
        return f"behind: {behind} steps spilled to disk" if behind else ""

    def quarantine(self) -> dict[str, Any]:
        """Return the quarantine's size, file and latest reason."""
        return {
            "steps": self.quarantined,
            "file": str(self._files.quarantine) if self.quarantined else None,
            "last_reason": self.last_quarantine_reason or None,
        }

    # -- the threads --
    def _supervise(self, name: str, loop: Callable[[], None]) -> None:
        """Run a thread's loop; after an unexpected exception, log it and run it
        again after a pause that grows while it keeps failing."""
        _lower_thread_priority()
        pause = 0.1
        while True:
            try:
                loop()
                connection.close()  # this thread's own: a server counts it
                return
            except Exception as exc:
                log.exception("the recording %s thread failed; it starts again", name)
                self.failure = (
                    f"recording {name} thread failed: {type(exc).__name__}: {exc}"
                )
                self._after_failure(name, self.failure)
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, _MAX_RESTART_PAUSE)

    def _after_failure(self, name: str, reason: str) -> None:
        if name == "spill":  # the disk may come back: keep them for the next try
            for item in self._spill_hand:
                self._overflow.put(item)
            self._spill_hand = []
            return
        # The writer's steps in hand may be what made it fail: never retried in a
        # loop, set aside with the cause.
        items, self._in_hand = self._in_hand, []
        self._set_aside(items, reason)

    def _spill_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                items = [self._overflow.get(timeout=0.5)]
            except queue.Empty:
                continue
            self._spill_hand = items
            while len(items) < _BATCH:  # one fsync for all that waits
                try:
                    items.append(self._overflow.get_nowait())
                except queue.Empty:
                    break
            self._spill(items)
            self._spill_hand = []

    def _write_loop(self) -> None:
        try:
            self._open_backlog()
            while True:
                items = self._take_batch()
                if not items and self._stopping.is_set():
                    return
                if items:
                    self._write_items(items)
                if (self._spilled or self._draining) and not self._stopping.is_set():
                    self._drain_spill()
        except _Stopped:  # stopping while the database refuses: keep it all on disk
            self._spill(self._in_hand + self._take_all())
            self._in_hand = []

    def _open_backlog(self) -> None:
        """Once per process: set a legacy spill aside, count what waits on disk,
        and close the exchanges an earlier process left in progress."""
        if self._opened:
            return
        aside = legacy_set_aside(self._files)
        if aside:
            self.legacy_spill = str(aside)
            log.warning(
                "a spill file of an earlier format was moved aside unread (a pickle "
                "can run code; it may hold keys in clear): %s",
                aside,
            )
        with self._file_lock:
            unnamed_adopt(self._files)
            self._spilled = lines_count(self._files.spill)
            self._draining = lines_count(self._draining_path)
        self.quarantined = lines_count(self._files.quarantine)
        started = self._started_at
        try:
            self._write_with_retry(
                lambda: services.exchange_abandon_stale(
                    before_ts=started, relay=settings.CLAUDEMON_RELAY_NAME
                )
            )
        except _Permanent:
            log.exception("could not close the exchanges of an earlier process")
        self._opened = True

    def _take_batch(self) -> list[Item]:
        """Take the steps of one batch, waiting briefly for finishes of starts."""
        items = self._in_hand = []
        try:
            items.append(self._get(0.5))
        except queue.Empty:
            return items
        deadline = time.monotonic() + _WINDOW
        while len(items) < _BATCH:
            remaining = deadline - time.monotonic()
            wait = remaining if remaining > 0 and not self._stopping.is_set() else None
            try:
                items.append(self._get(wait))
            except queue.Empty:
                break
        return items

    def _take_all(self) -> list[Item]:
        items = []
        while True:
            try:
                items.append(self._get(None))
            except queue.Empty:
                pass
            else:
                continue
            try:
                items.append(self._overflow.get_nowait())
            except queue.Empty:
                return items

    # -- writing --
    def _write_items(self, items: list[Item]) -> None:
        """Write steps; a permanent error sets aside only the steps it belongs to."""
        rows, failed = steps_rows(
            items,
            redact=settings.CLAUDEMON_REDACT_HEADERS,
            max_body=settings.CLAUDEMON_RECORD_MAX_BODY,
            relay=settings.CLAUDEMON_RELAY_NAME,
        )
        for steps, reason in failed:
            self._set_aside(steps, reason)
        try:
            if rows:
                self._write_rows(rows)
        except _Permanent:
            for row in rows:  # one at a time, to find the culprits
                try:
                    self._write_rows([row])
                except _Permanent as exc:
                    self._set_aside(row.items, str(exc))
        self._in_hand = []
        self.written += len(items)

    def _write_rows(self, rows: list[Row]) -> None:
        inserts = [row.insert for row in rows if row.insert is not None]
        finishes = [row.finish for row in rows if row.finish is not None]
        self._write_with_retry(
            lambda: services.exchange_record(inserts=inserts, finishes=finishes)
        )
        # Committed: the live feed may read these rows now.
        changes = [_change(row) for row in inserts]
        changes += [_change(finish.outcome) for finish in finishes]
        services.exchange_publish(changes=changes)

    def _write_with_retry(self, write: Callable[[], Any]) -> None:
        """Run a write; retry transient errors (locked, busy, gone) with capped
        backoff; raise _Permanent for any other error, _Stopped at exit."""
        delay = 0.05
        self._writing_since = time.monotonic()
        try:
            while True:
                try:
                    write()
                except (OperationalError, InterfaceError) as exc:
                    self.database_error = str(exc) or type(exc).__name__
                    log.warning("recording waits for the database: %s", exc)
                    connection.close()
                    if self._stopping.wait(delay):
                        raise _Stopped from exc
                    delay = min(delay * 2, _MAX_RETRY_PAUSE)
                except Exception as exc:
                    # The first line only: PostgreSQL's DETAIL line repeats the
                    # failing row, prompts and all, which the reason must not hold.
                    first = str(exc).partition("\n")[0]
                    raise _Permanent(f"{type(exc).__name__}: {first}") from exc
                else:
                    self.database_error = self.failure = ""
                    return
        finally:
            self._writing_since = 0.0

    def _set_aside(self, items: list[Item], reason: str) -> None:
        """Put steps in the quarantine file with their reason, never to retry them."""
        at = datetime.now(UTC).isoformat()
        self._quarantine_lines(_lines(items, reason=reason, at=at), reason)

    def _quarantine_lines(self, lines: list[bytes], reason: str) -> None:
        if not lines:
            return
        try:
            lines_append(self._files.quarantine, lines)
        except OSError:
            log.exception("could not write the quarantine file; steps lost: %s", reason)
            return
        self.quarantined += len(lines)
        self.last_quarantine_reason = reason
        log.error(
            "recording set %d step(s) aside in %s: %s",
            len(lines),
            self._files.quarantine,
            reason,
        )

    # -- the spill file --
    def _spill(self, items: list[Item]) -> None:
        lines = _lines(items)
        if not lines:
            return
        with self._file_lock:
            lines_append(self._files.spill, lines)
            self._spilled += len(lines)

    def _drain_spill(self) -> None:
        """Write the spilled steps, a batch at a time, from a file set apart: the
        spill thread goes on appending to a new one meanwhile."""
        with self._file_lock:
            if not self._draining_path.exists():
                if not self._files.spill.exists():
                    self._spilled = 0
                    return
                os.replace(self._files.spill, self._draining_path)
                self._draining, self._spilled = self._spilled, 0
        batch: list[Item] = []
        for line in lines_read(self._draining_path):
            if self._stopping.is_set():
                return  # the rest stays on disk for the next start
            try:
                kind, call = step_read(line)
            except ValueError as exc:
                reason = f"unreadable spill line: {exc}"
                self._quarantine_lines([unreadable_line(line, reason)], reason)
                self._draining -= 1
                continue
            batch.append(Item(kind, call, len(line)))
            if len(batch) == _BATCH or sum(i.size for i in batch) > _MAX_QUEUED_BYTES:
                self._write_spilled(batch)
                batch = []
        self._write_spilled(batch)
        self._draining_path.unlink()
        self._draining = 0

    def _write_spilled(self, batch: list[Item]) -> None:
        if batch:
            self._write_items(batch)
            self._draining -= len(batch)

    def close(self) -> None:
        """At exit: write what is queued if the database allows, else spill it."""
        self._stopping.set()
        deadline = time.monotonic() + _STOP_WAIT
        for thread in list(self._threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        writer = self._threads.get("writer")
        left = self._take_all() + self._spill_hand
        if writer is not None and writer.is_alive():  # stuck in a busy wait
            left = self._in_hand + left
        self._spill(left)


def _change(row: dict[str, Any]) -> dict[str, Any]:
    """Return what the live feed is told of a written row: its uid and state."""
    return {"uid": str(row["uid"]), "state": str(row.get("state", _OPEN))}


def _lower_thread_priority() -> None:
    """Let the relay's event loop win the CPU: recording can always wait a little."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not permitted: run as is
        pass


def _lines(items: list[Item], **extra: Any) -> list[bytes]:
    """Return the steps as file lines; a step that cannot be written is logged."""
    lines = []
    for item in items:
        try:
            lines.append(step_line(item.kind, item.call, **extra))
        except Exception:  # nothing more can be done for it: say so, keep the rest
            log.exception("could not write the recording of %s to disk", item.call.uid)
    return lines


_recording: Recording | None = None


def recording() -> Recording:
    """Return the process's recording backlog (touches no file)."""
    global _recording
    if _recording is None:
        _recording = Recording(
            capacity=settings.CLAUDEMON_BACKLOG_SIZE, files=backlog_files()
        )
    return _recording


def recording_submit(kind: str, call: Call) -> None:
    """Hand one recording step to the writer thread (never blocks, never raises)."""
    try:
        recording().submit(kind, call)
    except Exception:  # recording must never break the relay
        log.exception("could not queue the recording of %s", call.uid)
