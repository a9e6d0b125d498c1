"""The recording thread: turns finished calls into rows without ever blocking the relay.

The event loop only calls `recording_submit`, which never waits: items go into a
bounded queue, and when that is full (the database has been locked or gone for a
long while) into a spill file under CLAUDEMON_VAR_DIR. One thread drains both,
parses and prices in batches, and writes each batch in one short transaction,
retrying with backoff until the database takes it. Starts are inserted with
INSERT OR IGNORE and finishes are upserts, so a start and its finish may arrive in
any order (after a spill) and each exchange ends as exactly one row.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import queue
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection

from apps.proxy import services
from apps.proxy.recorder import Call, call_finish_row, call_start_row

log = logging.getLogger("apps.proxy.writer")

_BATCH = 256
# A start waits this long for its finish so that short calls are written once,
# whole; long calls still show up in progress well within the live feed's 1 s.
_WINDOW = 0.2
_LEN = struct.Struct("<I")


@dataclass(slots=True)
class Finish:
    """The outcome of a call whose start row exists, and how to build it if not."""

    outcome: dict[str, Any]
    start_row: Callable[[], dict[str, Any]]


@dataclass(slots=True)
class Item:
    kind: str  # "start" | "finish"
    call: Call
    size: int = 0  # body bytes this step keeps in memory


# Besides the item count (CLAUDEMON_BACKLOG_SIZE), the memory held by waiting bodies
# is bounded: a long outage with multi-megabyte conversations spills to disk.
_MAX_QUEUED_BYTES = 256 * 1024 * 1024


class Recording:
    """The bounded backlog between the relay and the database, and its writer thread."""

    def __init__(self, *, capacity: int, spill_path: Path) -> None:
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=capacity)
        self._spill_path = spill_path
        self._spill_lock = threading.Lock()
        self._spilled = _spill_count(spill_path)
        self._thread: threading.Thread | None = None
        self._started_lock = threading.Lock()
        self._stopping = False
        self.database_error = ""
        self.written = 0
        self._inflight = 0  # items of the batch being written
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self._writing_since = 0.0  # monotonic start of the current write, 0 when idle

    # -- the relay's side: never blocks on the database --
    def submit(self, kind: str, call: Call) -> None:
        """Queue one recording step; spill to disk if the queue is full."""
        self._ensure_thread()
        size = len(call.request_body) if kind == "start" else sum(map(len, call.chunks))
        item = Item(kind, call, size)
        with self._bytes_lock:
            fits = (
                self._queued_bytes + size <= _MAX_QUEUED_BYTES or not self._queued_bytes
            )
            if fits:
                self._queued_bytes += size
        try:
            if not fits:
                raise queue.Full
            self._queue.put_nowait(item)
        except queue.Full:
            if fits:
                self._release(item)
            self._spill([item])

    def _get(self, timeout: float | None) -> Item:
        """Take the next queued step (raises queue.Empty), releasing its bytes."""
        item = self._queue.get(timeout=timeout) if timeout else self._queue.get_nowait()
        self._release(item)
        return item

    def _release(self, item: Item) -> None:
        with self._bytes_lock:
            self._queued_bytes -= item.size

    def backlog(self) -> int:
        """Return how many recording steps wait for the database."""
        return self._queue.qsize() + self._spilled + self._inflight

    def database_problem(self) -> str:
        """Describe why recording is stuck ('' when it is not)."""
        if self.database_error:
            return self.database_error
        since = self._writing_since
        if since and time.monotonic() - since > 1.0:
            return f"database busy: a write has waited {time.monotonic() - since:.1f} s"
        return ""

    # -- the writer thread --
    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._started_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="claudemon-recorder", daemon=True
                )
                self._thread.start()
                atexit.register(self.close)

    def _run(self) -> None:
        _lower_thread_priority()
        started = time.time()
        self._write_with_retry(
            lambda: services.exchange_abandon_stale(before_ts=started)
        )
        while not self._stopping:
            try:
                first = self._get(0.5)
            except queue.Empty:
                self._drain_spill()
                continue
            items = [first]
            deadline = time.monotonic() + _WINDOW
            while len(items) < _BATCH and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    items.append(self._get(remaining))
                except queue.Empty:
                    break
            self._write_items(items)
            self._drain_spill()

    def _write_items(self, items: list[Item]) -> None:
        self._inflight = len(items)
        try:
            inserts, finishes = _rows(items)
            self._write_with_retry(
                lambda: services.exchange_record(inserts=inserts, finishes=finishes)
            )
        finally:
            self._inflight = 0
        self.written += len(items)

    def _write_with_retry(self, write: Any) -> None:
        delay = 0.05
        self._writing_since = time.monotonic()
        while True:
            try:
                write()
                self.database_error = ""
                self._writing_since = 0.0
                return
            except DatabaseError as exc:
                self.database_error = str(exc) or type(exc).__name__
                log.warning("recording waits for the database: %s", self.database_error)
                connection.close()
                if self._stopping:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- spill file: length-prefixed pickles of our own Items, read back in order --
    def _spill(self, items: list[Item]) -> None:
        with self._spill_lock:
            self._spill_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._spill_path, "ab") as handle:
                for item in items:
                    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
                    handle.write(_LEN.pack(len(data)) + data)
                handle.flush()
                os.fsync(handle.fileno())
            self._spilled += len(items)

    def _drain_spill(self) -> None:
        if not self._spilled:
            return
        with self._spill_lock:
            items = _spill_read(self._spill_path)
            self._spill_path.unlink(missing_ok=True)
            self._spilled = 0
        for start in range(0, len(items), _BATCH):
            self._write_items(items[start : start + _BATCH])

    def close(self) -> None:
        """At exit: write what is queued if the database allows, else spill it."""
        self._stopping = True
        pending: list[Item] = []
        while True:
            try:
                pending.append(self._get(None))
            except queue.Empty:
                break
        if not pending:
            return
        try:
            self._write_items(pending)
        except DatabaseError:
            self._spill(pending)


def _lower_thread_priority() -> None:
    """Let the relay's event loop win the CPU: recording can always wait a little."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not permitted: run as is
        pass


def _rows(items: list[Item]) -> tuple[list[dict], list[Finish]]:
    """Build rows to insert and rows to complete.

    A call whose start and finish are both in the batch is inserted once, whole;
    a finish whose start was written earlier only updates the outcome fields (the
    request body is neither parsed nor rewritten again) and builds the whole row
    only if that start never landed.
    """
    redact = settings.CLAUDEMON_REDACT_HEADERS
    starting = {item.call.uid for item in items if item.kind == "start"}
    finished = {item.call.uid for item in items if item.kind == "finish"}
    inserts: list[dict] = []
    finishes: list[Finish] = []
    for item in items:
        call = item.call
        if item.kind == "start" and call.uid not in finished:
            inserts.append(call_start_row(call, redact=redact))
        elif item.kind == "finish" and call.uid in starting:
            inserts.append(
                call_start_row(call, redact=redact)
                | call_finish_row(call, redact=redact)
            )
        elif item.kind == "finish":
            outcome = {"uid": call.uid} | call_finish_row(call, redact=redact)
            finishes.append(
                Finish(outcome, partial(call_start_row, call, redact=redact))
            )
    return inserts, finishes


def _spill_read(path: Path) -> list[Item]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    items, offset = [], 0
    while offset + _LEN.size <= len(data):
        (size,) = _LEN.unpack_from(data, offset)
        chunk = data[offset + _LEN.size : offset + _LEN.size + size]
        if len(chunk) < size:  # torn tail from a crash mid-write: nothing more to read
            break
        items.append(pickle.loads(chunk))
        offset += _LEN.size + size
    return items


def _spill_count(path: Path) -> int:
    return len(_spill_read(path))


_recording: Recording | None = None


def recording() -> Recording:
    """Return the process's recording backlog."""
    global _recording
    if _recording is None:
        _recording = Recording(
            capacity=settings.CLAUDEMON_BACKLOG_SIZE,
            spill_path=settings.CLAUDEMON_VAR_DIR
            / "backlog"
            / f"{settings.CLAUDEMON_DB_PATH.stem}.spill",
        )
    return _recording


def recording_submit(kind: str, call: Call) -> None:
    """Hand one recording step to the writer thread (never blocks, never raises)."""
    try:
        recording().submit(kind, call)
    except Exception:  # recording must never break the relay
        log.exception("could not queue the recording of %s", call.uid)
