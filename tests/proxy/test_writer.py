"""The recording backlog: bounded, off the event loop, spilled as JSON lines without
secrets, written once, and never stopped by one bad step or one bug."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import struct
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import OperationalError

from apps.proxy import services, steps, writer
from apps.proxy.models import Exchange
from apps.proxy.recorder import Call
from apps.proxy.selectors import quarantine_list
from apps.proxy.spill import BacklogFiles, backlog_files, step_line
from apps.proxy.steps import Item, steps_rows
from apps.proxy.writer import Recording
from tests.conftest import wait_for


def make_call(body: bytes = b"{}", **fields: object) -> Call:
    defaults = {"path": "/v1/messages", "query": "", "request_headers": []}
    return Call(
        uid=uuid.uuid4(),
        started_at=datetime(2026, 11, 20, tzinfo=UTC),
        t0=0.0,
        method="POST",
        request_body=body,
        **(defaults | fields),
    )


def finished(call: Call, body: bytes = b'{"type": "message"}') -> Call:
    call.state, call.status_code = Exchange.State.COMPLETE, 200
    call.response_headers = [(b"content-type", b"application/json")]
    call.chunks = [body]
    return call


def files(folder: Path) -> BacklogFiles:
    return BacklogFiles(
        spill=folder / "b.spill.jsonl",
        quarantine=folder / "b.quarantine.jsonl",
        legacy=folder / "b.spill",
        legacy_aside=folder / "b.spill.legacy-pickle",
        unnamed=folder / "b.unnamed.spill.jsonl",
    )


class Parked:
    def is_alive(self) -> bool:
        return True


def idle_recording(tmp_path: Path, capacity: int = 100) -> Recording:
    recording = Recording(capacity=capacity, files=files(tmp_path))
    # No threads: we look at the queue and the overflow themselves.
    recording._threads = {"writer": Parked(), "spill": Parked()}
    return recording


@pytest.fixture
def locked_database(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Every write fails as 'database is locked' until the test sets the event."""
    opened = threading.Event()
    record = services.exchange_record

    def locked(**rows: object) -> None:
        if not opened.is_set():
            raise OperationalError("database is locked")
        record(**rows)

    monkeypatch.setattr(services, "exchange_record", locked)
    monkeypatch.setattr(services, "exchange_abandon_stale", lambda **kwargs: 0)
    return opened


@pytest.fixture
def process_recording(settings, tmp_path, monkeypatch):
    """The process's recording (writer.recording()) as a fresh relay has it."""
    settings.CLAUDEMON_VAR_DIR = tmp_path
    settings.CLAUDEMON_DB_PATH = tmp_path / "claudemon.sqlite3"
    monkeypatch.setattr(writer, "_recording", None)
    yield tmp_path / "backlog"
    if writer._recording is not None:
        writer._recording.close()


# Which thread opened which file under a watched folder (sys.addaudithook cannot be
# removed, so one hook serves every test and watches only while asked to).
_watched: list[str] = []
_opened: list[tuple[int, str]] = []


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _watched and isinstance(args[0], str | bytes | Path):
        path = os.fsdecode(args[0])
        if path.startswith(_watched[0]):
            _opened.append((threading.get_ident(), path))


@contextmanager
def file_opens(folder: Path) -> Iterator[list[tuple[int, str]]]:
    """Collect (thread, path) of every file opened under folder meanwhile."""
    if not getattr(sys, "_claudemon_audit", False):
        sys.addaudithook(_audit)
        sys._claudemon_audit = True
    _opened.clear()
    _watched[:] = [str(folder)]
    try:
        yield _opened
    finally:
        _watched.clear()


@pytest.mark.django_db(transaction=True)
def test_it_never_touches_the_disk_on_the_event_loop_with_a_full_queue(
    settings, process_recording, locked_database
):
    settings.CLAUDEMON_BACKLOG_SIZE = 2
    process_recording.mkdir()
    (process_recording / "claudemon.spill").write_bytes(b"")  # an earlier process's
    streamed = make_call()

    async def relay_while_recording_backs_up() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        stalls = [0.0]

        async def probe() -> None:  # how late the loop runs a task that asks for 1 ms
            while True:
                before = loop.time()
                await asyncio.sleep(0.001)
                stalls.append(loop.time() - before - 0.001)

        probing = asyncio.create_task(probe())
        for n in range(60):  # a stream in flight, and other calls starting meanwhile
            streamed.chunks.append(b"event: ping\ndata: {}\n\n")
            writer.recording_submit("start", make_call(b'{"n": %d}' % n))
            await asyncio.sleep(0)
        writer.recording_submit("finish", finished(streamed))
        probing.cancel()
        return threading.get_ident(), max(stalls)

    spill = backlog_files().spill
    with file_opens(process_recording) as opened:
        # The first call of the process, then the writer stuck on the locked database
        # with it: the queue (2 steps) fills at once.
        writer.recording_submit("start", streamed)
        wait_for(lambda: writer.recording().database_problem())
        loop_thread, stall = asyncio.run(relay_while_recording_backs_up())
        wait_for(lambda: writer.recording().backlog() == 62)
        wait_for(lambda: writer.recording()._spilled == 62 - 1 - 2)
        by_thread = list(opened)

    on_the_loop = [path for thread, path in by_thread if thread == loop_thread]
    assert on_the_loop == [], f"the loop opened {on_the_loop}"
    assert (str(spill)) in {path for _, path in by_thread}  # another thread did
    assert spill.read_bytes().count(b"\n") == 59
    print(f"longest event-loop stall while spilling: {stall * 1000:.2f} ms")


def test_it_hands_steps_past_the_queue_to_the_spill_thread(tmp_path):
    recording = idle_recording(tmp_path, capacity=2)

    for _ in range(5):
        recording.submit("start", make_call())

    assert recording._queue.qsize() == 2
    assert recording._overflow.qsize() == 3
    assert recording.backlog() == 5


def test_it_hands_over_steps_when_waiting_bodies_pass_the_byte_budget(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(writer, "_MAX_QUEUED_BYTES", 1000)
    recording = idle_recording(tmp_path)

    for _ in range(3):
        recording.submit("start", make_call(b"x" * 600))

    assert recording._queue.qsize() == 1
    assert recording._overflow.qsize() == 2
    recording._get(None)
    assert recording._queued_bytes == 0


def test_it_always_queues_at_least_one_body_however_large(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "_MAX_QUEUED_BYTES", 10)
    recording = idle_recording(tmp_path)

    recording.submit("start", make_call(b"y" * 100))

    assert recording._queue.qsize() == 1


def test_it_spills_json_lines_with_a_version_and_no_secret(tmp_path, settings):
    settings.CLAUDEMON_REDACT_HEADERS = ["x-team-token"]
    call = make_call(
        query="beta=true&key=SECRET-QUERY-KEY",
        request_headers=[
            (b"x-api-key", b"sk-ant-api03-SECRET-KEY"),
            (b"authorization", b"Bearer sk-ant-oat01-SECRET-TOKEN"),
            (b"cookie", b"c=SECRET-COOKIE"),
            (b"x-team-token", b"SECRET-TEAM"),
        ],
    )
    recording = Recording(capacity=1, files=files(tmp_path / "backlog"))

    recording._spill([Item("start", call)])

    data = (tmp_path / "backlog" / "b.spill.jsonl").read_bytes()
    for secret in (b"SECRET-QUERY-KEY", b"SECRET-KEY", b"SECRET-TOKEN", b"SECRET-"):
        assert secret not in data
    line = json.loads(data)
    assert (line["v"], line["kind"], line["uid"]) == (1, "start", str(call.uid))
    assert line["query"].startswith("beta=true&key=sha256:")
    assert oct((tmp_path / "backlog" / "b.spill.jsonl").stat().st_mode & 0o777) == (
        "0o600"
    )
    assert oct((tmp_path / "backlog").stat().st_mode & 0o777) == "0o700"


@pytest.mark.django_db(transaction=True)
def test_it_writes_the_rest_of_a_batch_when_one_step_breaks_an_integrity_rule(
    tmp_path,
):
    # Token counts are CHECKed >= 0: a response claiming negative usage cannot be
    # stored, whether its row is inserted whole or completes an earlier start.
    bad_usage = b'{"type": "message", "model": "m", "usage": {"input_tokens": -1}}'
    written_start, whole, good = make_call(), make_call(), make_call()
    recording = Recording(capacity=100, files=files(tmp_path))
    recording.submit("start", written_start)
    wait_for(lambda: Exchange.objects.filter(uid=written_start.uid).exists())

    recording.submit("finish", finished(written_start, bad_usage))
    recording.submit("start", whole)
    recording.submit("finish", finished(whole, bad_usage))
    recording.submit("finish", finished(good))
    try:
        wait_for(lambda: Exchange.objects.filter(uid=good.uid, state="complete"))
        wait_for(lambda: recording.quarantined == 3)
    finally:
        recording.close()

    lines = [json.loads(line) for line in files(tmp_path).quarantine.open("rb")]
    assert sorted((line["uid"], line["kind"]) for line in lines) == sorted(
        [
            (str(written_start.uid), "finish"),
            (str(whole.uid), "start"),
            (str(whole.uid), "finish"),
        ]
    )
    assert all("IntegrityError" in line["reason"] for line in lines)
    assert Exchange.objects.get(uid=written_start.uid).state == "in_progress"
    assert not Exchange.objects.filter(uid=whole.uid).exists()
    assert recording.quarantine()["steps"] == 3
    assert recording.problem() == ""  # recording goes on: not degraded


@pytest.mark.django_db(transaction=True)
def test_it_sets_aside_only_the_step_whose_row_cannot_be_built(tmp_path, monkeypatch):
    build = steps.call_start_row

    def breaks_on_boom(call: Call, **options: object) -> dict:
        if call.path == "/boom":
            raise ValueError("cannot build this one")
        return build(call, **options)

    monkeypatch.setattr(steps, "call_start_row", breaks_on_boom)
    boom, fine = make_call(path="/boom"), make_call()
    recording = Recording(capacity=100, files=files(tmp_path))
    try:
        for call in (boom, fine):
            recording.submit("start", call)
            recording.submit("finish", finished(call))
        wait_for(lambda: Exchange.objects.filter(uid=fine.uid, state="complete"))
        wait_for(lambda: recording.quarantined == 2)
    finally:
        recording.close()

    lines = [json.loads(line) for line in files(tmp_path).quarantine.open("rb")]
    assert {(line["kind"], line["uid"]) for line in lines} == {
        ("start", str(boom.uid)),
        ("finish", str(boom.uid)),
    }
    assert "ValueError: cannot build this one" in lines[0]["reason"]
    assert not Exchange.objects.filter(uid=boom.uid).exists()


@pytest.mark.django_db(transaction=True)
def test_it_restarts_a_failed_writer_and_says_why_while_it_is_down(
    tmp_path, monkeypatch, caplog
):
    failing = threading.Event()
    failing.set()
    write = Recording._write_items

    def flaky(self: Recording, items: list[Item]) -> None:
        if failing.is_set():
            raise RuntimeError("boom")
        write(self, items)

    monkeypatch.setattr(Recording, "_write_items", flaky)
    recording = Recording(capacity=100, files=files(tmp_path))
    try:
        with caplog.at_level(logging.ERROR, logger="apps.proxy.writer"):
            recording.submit("start", make_call())
            down = wait_for(recording.problem)
        failing.clear()
        later = make_call()
        recording.submit("start", later)
        wait_for(lambda: Exchange.objects.filter(uid=later.uid).exists())
        wait_for(lambda: recording.problem() == "")
    finally:
        recording.close()

    assert "writer thread failed: RuntimeError: boom" in down
    failure = next(r for r in caplog.records if "thread failed" in r.getMessage())
    assert failure.exc_info and "boom" in str(failure.exc_info[1])
    assert recording.quarantined == 1  # the step in hand when it failed


def legacy_pickle(path: Path, payload: object) -> None:
    """Write a spill file as the previous version did: length-prefixed pickles."""
    data = pickle.dumps(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<I", len(data)) + data)


class RunsCode:
    """What a planted pickle can do when loaded: here, leave a mark."""

    def __init__(self, mark: Path) -> None:
        self.mark = mark

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.mark,))


@pytest.mark.django_db(transaction=True)
def test_it_moves_a_spill_file_of_the_previous_format_aside_without_loading_it(
    process_recording, tmp_path
):
    mark = tmp_path / "code-ran"
    legacy_pickle(process_recording / "claudemon.spill", RunsCode(mark))
    legacy_pickle(process_recording / "claudemon.spill", RunsCode(mark))
    (process_recording / "claudemon.spill").chmod(0o644)

    call = make_call()
    writer.recording_submit("start", call)
    wait_for(lambda: Exchange.objects.filter(uid=call.uid).exists())

    aside = process_recording / "claudemon.spill.legacy-pickle"
    assert not mark.exists()
    assert not (process_recording / "claudemon.spill").exists()
    assert aside.exists() and oct(aside.stat().st_mode & 0o777) == "0o600"
    assert writer.recording().legacy_spill == str(aside)


@pytest.mark.django_db(transaction=True)
def test_it_writes_spilled_steps_and_sets_aside_lines_it_cannot_read(tmp_path):
    spilled = make_call()
    folder = files(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    folder.spill.write_bytes(
        step_line("start", spilled)
        + step_line("finish", finished(spilled))
        + b'{"v": 99, "kind": "start"}\n'
        + step_line("start", make_call())[:40]  # torn by a crash mid-write
    )
    recording = Recording(capacity=100, files=folder)
    try:
        recording.start()
        wait_for(lambda: Exchange.objects.filter(uid=spilled.uid, state="complete"))
        wait_for(lambda: recording.backlog() == 0)
    finally:
        recording.close()

    reasons = [json.loads(line)["reason"] for line in folder.quarantine.open("rb")]
    assert len(reasons) == 2 and all("unreadable spill line" in r for r in reasons)
    assert not folder.spill.exists()


@pytest.mark.django_db(transaction=True)
def test_it_spills_what_it_holds_when_stopped_while_the_database_is_locked(
    tmp_path, locked_database
):
    recording = Recording(capacity=100, files=files(tmp_path))
    held = make_call()
    recording.submit("start", held)
    wait_for(lambda: recording.database_problem())  # the writer holds it, waiting

    recording.close()

    [line] = files(tmp_path).spill.read_bytes().splitlines()
    assert json.loads(line)["uid"] == str(held.uid)


@pytest.mark.django_db
def test_it_writes_a_call_that_started_and_finished_in_one_batch_as_one_insert():
    both, finish_only, start_only = make_call(), make_call(), make_call()
    for call in (both, finish_only):
        call.state, call.status_code = Exchange.State.COMPLETE, 200

    rows, failed = steps_rows(
        [
            Item("start", both),
            Item("start", start_only),
            Item("finish", both),
            Item("finish", finish_only),
        ],
        redact=[],
    )

    inserts = [row.insert for row in rows if row.insert]
    finishes = [row.finish for row in rows if row.finish]
    assert failed == []
    assert [r["uid"] for r in inserts] == [start_only.uid, both.uid]
    assert inserts[1]["state"] == Exchange.State.COMPLETE
    assert [f.outcome["uid"] for f in finishes] == [finish_only.uid]
    assert "request_body" not in finishes[0].outcome  # not re-encoded on completion
    assert finishes[0].start_row()["request_body"] is not None  # only if needed


@pytest.mark.django_db
def test_it_creates_the_whole_row_when_a_finish_arrives_before_its_start():
    call = make_call(b'{"model": "claude-haiku-4-5"}')
    call.state, call.status_code = Exchange.State.COMPLETE, 200
    [row], _ = steps_rows([Item("finish", call)], redact=[])

    services.exchange_record(inserts=[], finishes=[row.finish])
    [start], _ = steps_rows([Item("start", call)], redact=[])  # read back from a spill
    services.exchange_record(inserts=[start.insert], finishes=[])

    row = Exchange.objects.get(uid=call.uid)
    assert (row.state, row.model_requested) == (
        Exchange.State.COMPLETE,
        "claude-haiku-4-5",
    )


def test_it_lists_the_quarantine_newest_first_for_the_admin(settings, tmp_path):
    settings.CLAUDEMON_VAR_DIR = tmp_path
    settings.CLAUDEMON_DB_PATH = tmp_path / "claudemon.sqlite3"
    recording = Recording(capacity=1, files=backlog_files())
    first, second = make_call(path="/first"), make_call(path="/second")

    recording._set_aside([Item("start", first)], "IntegrityError: one")
    recording._set_aside([Item("finish", second)], "ValueError: two")

    assert [(q["path"], q["kind"], q["reason"]) for q in quarantine_list(limit=10)] == [
        ("/second", "finish", "ValueError: two"),
        ("/first", "start", "IntegrityError: one"),
    ]
    assert [q["path"] for q in quarantine_list(limit=1)] == ["/second"]


@pytest.mark.django_db
def test_relays_sharing_a_var_folder_keep_backlogs_of_their_own(settings, tmp_path):
    """Relays on one host (make team) share CLAUDEMON_VAR_DIR: on one spill file,
    each would append to and drain the others' steps, and the one that lost the
    race to move it could set valid steps aside. The admin reads every relay's
    quarantine."""
    settings.CLAUDEMON_VAR_DIR = tmp_path
    settings.CLAUDEMON_DB_PATH = tmp_path / "claudemon.sqlite3"
    unnamed = backlog_files().unnamed
    unnamed.parent.mkdir(mode=0o700)
    unnamed.write_bytes(step_line("start", make_call(path="/before")))
    recordings = []
    for name in ("host:8101", "host:8102"):
        settings.CLAUDEMON_RELAY_NAME = name
        recordings.append(Recording(capacity=1, files=backlog_files()))
    first, second = recordings

    assert first._files.spill != second._files.spill
    first._set_aside([Item("start", make_call(path="/one"))], "ValueError: one")
    second._set_aside([Item("start", make_call(path="/two"))], "ValueError: two")
    first._open_backlog()

    assert not unnamed.exists() and first._spilled == 1  # adopted once, by one
    assert [q["path"] for q in quarantine_list(limit=10)] == ["/two", "/one"]


@pytest.mark.django_db(transaction=True)
def test_the_admin_shows_what_the_recorder_set_aside(settings, tmp_path, admin_client):
    settings.CLAUDEMON_VAR_DIR = tmp_path
    settings.CLAUDEMON_DB_PATH = tmp_path / "claudemon.sqlite3"
    bad_usage = b'{"type": "message", "usage": {"output_tokens": -5}}'
    hostile = make_call(path="/v1/messages/<script>x</script>")
    recording = Recording(capacity=100, files=backlog_files())
    try:
        recording.submit("start", hostile)
        recording.submit("finish", finished(hostile, bad_usage))
        wait_for(lambda: recording.quarantined == 2)
    finally:
        recording.close()

    page = admin_client.get("/admin/proxy/exchange/").content.decode()

    assert 'id="claudemon-quarantine"' in page
    assert page.count(str(hostile.uid)) == 2  # its start and its finish
    assert "IntegrityError" in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x" not in page


def test_the_admin_says_nothing_when_nothing_was_set_aside(
    settings, tmp_path, admin_client
):
    settings.CLAUDEMON_VAR_DIR = tmp_path
    settings.CLAUDEMON_DB_PATH = tmp_path / "claudemon.sqlite3"
    page = admin_client.get("/admin/proxy/exchange/").content.decode()
    assert page.count("claudemon-quarantine") == 0
