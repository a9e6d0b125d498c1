"""The recording backlog: bounded in items and bytes, spilled to disk, written once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from apps.proxy import services, writer
from apps.proxy.models import Exchange
from apps.proxy.recorder import Call
from apps.proxy.writer import Item, Recording, _rows, _spill_read


def make_call(body: bytes = b"{}") -> Call:
    return Call(
        uid=uuid.uuid4(),
        started_at=datetime(2026, 11, 20, tzinfo=UTC),
        t0=0.0,
        method="POST",
        path="/v1/messages",
        query="",
        request_headers=[],
        request_body=body,
    )


def idle_recording(tmp_path, capacity: int = 100) -> Recording:
    recording = Recording(capacity=capacity, spill_path=tmp_path / "b.spill")
    recording._thread = object()  # no writer thread: we look at the queue itself
    return recording


def test_it_spills_to_disk_when_the_queue_is_full(tmp_path):
    recording = idle_recording(tmp_path, capacity=2)
    calls = [make_call() for _ in range(5)]

    for call in calls:
        recording.submit("start", call)

    assert recording.backlog() == 5
    assert [item.call.uid for item in _spill_read(tmp_path / "b.spill")] == [
        c.uid for c in calls[2:]
    ]


def test_it_spills_to_disk_when_waiting_bodies_pass_the_byte_budget(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(writer, "_MAX_QUEUED_BYTES", 1000)
    recording = idle_recording(tmp_path)

    for _ in range(3):
        recording.submit("start", make_call(b"x" * 600))

    assert recording._queue.qsize() == 1
    assert len(_spill_read(tmp_path / "b.spill")) == 2
    recording._get(None)
    assert recording._queued_bytes == 0


def test_it_always_queues_at_least_one_body_however_large(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "_MAX_QUEUED_BYTES", 10)
    recording = idle_recording(tmp_path)

    recording.submit("start", make_call(b"y" * 100))

    assert recording._queue.qsize() == 1


def test_it_reads_back_a_spill_file_with_a_torn_tail(tmp_path):
    recording = idle_recording(tmp_path, capacity=1)
    recording.submit("start", make_call())
    recording.submit("start", make_call())
    recording.submit("start", make_call())
    spill = tmp_path / "b.spill"
    spill.write_bytes(spill.read_bytes()[:-5])  # a crash mid-write

    assert len(_spill_read(spill)) == 1


@pytest.mark.django_db
def test_it_writes_a_call_that_started_and_finished_in_one_batch_as_one_insert():
    both, finish_only, start_only = make_call(), make_call(), make_call()
    for call in (both, finish_only):
        call.state, call.status_code = Exchange.State.COMPLETE, 200

    inserts, finishes = _rows(
        [
            Item("start", both),
            Item("start", start_only),
            Item("finish", both),
            Item("finish", finish_only),
        ]
    )

    assert [r["uid"] for r in inserts] == [start_only.uid, both.uid]
    assert inserts[1]["state"] == Exchange.State.COMPLETE
    assert [f.outcome["uid"] for f in finishes] == [finish_only.uid]
    assert "request_body" not in finishes[0].outcome  # not re-encoded on completion
    assert finishes[0].start_row()["request_body"] is not None  # only if needed


@pytest.mark.django_db
def test_it_creates_the_whole_row_when_a_finish_arrives_before_its_start():
    call = make_call(b'{"model": "claude-haiku-4-5"}')
    call.state, call.status_code = Exchange.State.COMPLETE, 200
    _, finishes = _rows([Item("finish", call)])

    services.exchange_record(inserts=[], finishes=finishes)
    inserts, _ = _rows([Item("start", call)])  # the start, read back from a spill
    services.exchange_record(inserts=inserts, finishes=[])

    row = Exchange.objects.get(uid=call.uid)
    assert (row.state, row.model_requested) == (
        Exchange.State.COMPLETE,
        "claude-haiku-4-5",
    )
