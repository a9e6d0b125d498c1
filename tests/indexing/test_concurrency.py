"""The index beside a busy writer on the same database, and two runs at once."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import psycopg
import pytest
from django.db import OperationalError, connection, connections

from apps.indexing.models import Entry, Session
from apps.indexing.services import IndexBusy, index_lock, index_sync
from apps.indexing.services.txn import write_retry
from tests.indexing.conftest import conversation_write

pytestmark = pytest.mark.django_db(transaction=True)


def _tree_fill(claude_tree, sessions: int = 40) -> int:
    lines = 0
    for index in range(sessions):
        t = claude_tree.transcript(cwd=f"/home/me/p{index % 3}")
        for turn in range(30):
            t.user(f"prompt {turn} about zebra crossing")
            t.assistant(
                [{"type": "text", "text": "answer " * 50}],
                message_id=f"m{index}-{turn}",
                request_id=f"r{index}-{turn}",
            )
        lines += 60
    return lines


def test_it_indexes_while_another_process_writes_the_same_database(claude_tree):
    lines = _tree_fill(claude_tree)
    stop, writing = threading.Event(), threading.Event()
    errors: list[Exception] = []
    writes = [0]

    def relay_like_writer() -> None:
        # A separate connection, as the relay's process has: short transactions
        # (IMMEDIATE on SQLite, with the same busy timeout as the settings).
        db, begin, mark = _writer_connect()
        try:
            db.execute("CREATE TABLE IF NOT EXISTS bench_writes (n INTEGER, pad TEXT)")
            while not stop.is_set():
                db.execute(begin)
                db.execute(
                    f"INSERT INTO bench_writes VALUES ({mark}, {mark})",
                    (writes[0], "x" * 2000),
                )
                db.execute("COMMIT")
                writes[0] += 1
                writing.set()
                time.sleep(0.002)  # a very busy relay: hundreds of writes a second
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)
        finally:
            db.close()

    writer = threading.Thread(target=relay_like_writer)
    writer.start()
    try:
        # Index only once the writer is busy: on a loaded machine the index
        # could otherwise finish before the thread's first write.
        assert writing.wait(timeout=30), errors
        report = index_sync()
    finally:
        stop.set()
        writer.join()
    assert errors == []
    assert report.entries_added == lines
    assert Entry.objects.count() == lines


def _writer_connect() -> tuple[Any, str, str]:
    """Return a connection outside Django, its BEGIN and its parameter mark."""
    if connection.vendor == "sqlite":
        path = connection.settings_dict["NAME"]
        db = sqlite3.connect(path, timeout=5, isolation_level=None)
        return db, "BEGIN IMMEDIATE", "?"
    params = connection.get_connection_params()
    return psycopg.connect(**params, autocommit=True), "BEGIN", "%s"


def test_it_lets_a_second_run_wait_for_the_first(claude_tree) -> None:
    lines = _tree_fill(claude_tree, sessions=20)
    reports, errors, waited = [], [], []

    def run() -> None:
        try:
            reports.append(index_sync(on_wait=waited.append))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(r.entries_added for r in reports) == [0, lines]
    assert Entry.objects.count() == lines
    assert Session.objects.count() == 20


def test_it_exits_clearly_when_told_not_to_wait(claude_tree) -> None:
    conversation_write(claude_tree)
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with index_lock():
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    try:
        with pytest.raises(IndexBusy, match="another reindex run"):
            index_sync(wait=False)
    finally:
        release.set()
        thread.join()
    assert index_sync(wait=False).entries_added == 11


@pytest.mark.parametrize(
    ("message", "retried"),
    [
        ("database is locked", True),
        ("deadlock detected", True),
        ("could not serialize access due to concurrent update", True),
        ("no such table: x", False),
    ],
)
def test_it_retries_a_write_only_when_another_writer_was_in_the_way(
    message: str, retried: bool
) -> None:
    calls = []

    def operation() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError(message)
        return "written"

    if retried:
        assert write_retry(operation) == "written"
        assert len(calls) == 2
    else:
        with pytest.raises(OperationalError, match=message):
            write_retry(operation)
        assert len(calls) == 1
