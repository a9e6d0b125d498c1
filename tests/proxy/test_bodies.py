"""Stored bodies: cut into blocks shared within a session, read back byte for byte."""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from datetime import UTC, datetime
from unittest import mock

import httpx
import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.proxy import bodies, services
from apps.proxy.bodies import (
    BodyBlocks,
    body_block_ids,
    body_decode,
    body_encode,
    body_encode_request,
    body_pretty,
    body_split,
)
from apps.proxy.models import BodyBlock, Exchange
from apps.proxy.recorder import Call, call_start_row
from tests.factories import bodyblock_faults
from tests.proxy.conftest import recorded

SESSION = "5e551011-0000-4000-8000-000000000001"
OTHER = "5e551011-0000-4000-8000-000000000002"
SYSTEM = [{"type": "text", "text": "You are Claude Code. " * 40}]


def _call(body: bytes, *, session: str = SESSION, agent: str = "") -> Call:
    headers = [(b"x-claude-code-session-id", session.encode())] if session else []
    if agent:
        headers.append((b"x-claude-code-agent-id", agent.encode()))
    return Call(
        uid=uuid.uuid4(), started_at=datetime(2026, 11, 20, tzinfo=UTC), t0=0.0,
        method="POST", path="/v1/messages", query="beta=true",
        request_headers=headers, request_body=body,
    )  # fmt: skip


def _record(*calls: Call) -> None:
    """Write calls as the recorder thread does: rows built, then one transaction."""
    services.exchange_record(inserts=[call_start_row(c) for c in calls], finishes=[])


def _body(messages: list, **extra: object) -> bytes:
    payload = {"model": "claude-sonnet-4-5", "messages": messages, "system": SYSTEM}
    return json.dumps(payload | extra, separators=(",", ":")).encode()


def _stored(call: Call) -> bytes:
    return Exchange.objects.values_list("request_body", flat=True).get(uid=call.uid)


@pytest.mark.parametrize(
    ("data", "pieces"),
    [
        (b'[{"a":1},{"b":2}]', [b"[", b'{"a":1},', b'{"b":2}]']),
        # spaces between elements, and `,{\"` inside a string is not a cut
        (
            b'{"m":[{"x":"a,{\\"y"}, {"z":1}]}',
            [b'{"m":[', b'{"x":"a,{\\"y"}, ', b'{"z":1}]}'],
        ),
        (b'{"k":{"v":1}}', [b'{"k":{"v":1}}']),  # an object value: no array element
        (b'not json, {"but" [{"close"', [b"not json, ", b'{"but" [', b'{"close"']),
        (b"", [b""]),
    ],
)
def test_it_cuts_before_objects_that_start_array_elements(data, pieces, monkeypatch):
    monkeypatch.setattr(bodies, "_MIN_BLOCK", 1)
    assert list(body_split(data).pieces) == pieces


def test_it_makes_pieces_of_at_least_the_minimum_size():
    data = _body([{"role": "user", "content": f"m{i}"} for i in range(300)])
    pieces = body_split(data).pieces
    assert b"".join(pieces) == data
    assert len(pieces) > 10
    assert all(len(piece) >= bodies._MIN_BLOCK for piece in pieces[:-1])


BIG = _body([{"role": "user", "content": "x" * 4000}])


@pytest.mark.parametrize(
    ("session", "data", "form"),
    [("", BIG, b"z"), (SESSION, b'{"messages":[]}', b"r"), (SESSION, BIG, b"b")],
)
@pytest.mark.django_db
def test_it_stores_only_session_bodies_as_blocks(session, data, form):
    call = _call(data, session=session)
    _record(call)
    assert _stored(call)[:1] == form
    assert body_decode(_stored(call)) == call.request_body


@pytest.mark.django_db
def test_it_stores_what_a_body_adds_not_what_it_repeats():
    turns = [{"role": "user", "content": secrets.token_hex(1000)} for _ in range(40)]
    calls = [_call(_body(turns[: n + 1])) for n in range(40)]
    for call in calls:
        _record(call)
    blocks = sum(len(d) for d in BodyBlock.objects.values_list("data", flat=True))
    stored = blocks + sum(len(_stored(call)) for call in calls)
    new_content = len(calls[-1].request_body)  # each body extends the one before
    alone = sum(len(body_encode(call.request_body)) for call in calls)
    # The last message's piece ends with the array (`],"system"...`), so it is
    # stored again once the next message follows it: twice the new content at
    # most, while zstd per body stores every turn again on every call.
    assert stored < 2 * new_content
    assert stored * 5 < alone
    for call in calls:
        assert body_decode(_stored(call)) == call.request_body


@pytest.mark.django_db
def test_it_keeps_one_set_of_blocks_when_a_start_is_written_twice():
    call = _call(_body([{"role": "user", "content": "y" * 3000}]))
    _record(call)
    _record(call)  # a start read back from the spill file after it landed
    assert Exchange.objects.count() == 1
    assert bodyblock_faults() == {"unlisted": set(), "missing": set()}


@pytest.mark.django_db
def test_it_refuses_to_read_a_body_whose_blocks_are_gone():
    call = _call(_body([{"role": "user", "content": "z" * 3000}]))
    _record(call)
    BodyBlock.objects.all().delete()
    with pytest.raises(ValueError, match="missing blocks"):
        body_decode(_stored(call))


@pytest.mark.django_db
def test_it_deletes_from_the_middle_of_a_session_and_every_survivor_decodes():
    turns = [{"role": "user", "content": f"turn {i} " + "v" * 900} for i in range(12)]
    calls = [_call(_body(turns[: n + 1]), agent="a" * (n % 2)) for n in range(12)]
    for call in calls:
        _record(call)
    middle = Exchange.objects.filter(uid__in=[c.uid for c in calls[3:8]])
    before = BodyBlock.objects.count()

    assert services.exchange_delete(queryset=middle)

    assert bodyblock_faults() == {"unlisted": set(), "missing": set()}
    assert BodyBlock.objects.count() < before  # the cache-marked variants went
    for call in calls[:3] + calls[8:]:
        assert body_decode(_stored(call)) == call.request_body


@pytest.mark.django_db
def test_it_sweeps_blocks_that_a_delete_outside_the_services_left():
    calls = [_call(_body([{"role": "user", "content": "u" * 3000}]), session=s)
             for s in (SESSION, OTHER)]  # fmt: skip
    _record(*calls)
    Exchange.objects.filter(session_id=SESSION).delete()  # bypasses the sweep
    assert bodyblock_faults()["unlisted"]

    assert bodies.bodyblock_sweep_all() > 0

    assert bodyblock_faults() == {"unlisted": set(), "missing": set()}
    assert body_decode(_stored(calls[1])) == calls[1].request_body


@pytest.mark.django_db(transaction=True)
def test_it_records_a_relayed_session_in_block_form_at_once(relay, upstream):
    turns, sent = [], []
    for turn in range(3):
        turns.append({"role": "user", "content": f"turn {turn} " + "t" * 2000})
        sent.append(_body(turns))
        headers = {"x-claude-code-session-id": SESSION, "x-claude-code-agent-id": "a7"}
        httpx.post(relay.url + "/v1/messages", content=sent[-1], headers=headers)

    rows = recorded(3, session_id=SESSION)

    assert [body_decode(row.request_body) for row in rows] == sent
    assert all(body_block_ids(row.request_body) for row in rows)
    assert bodyblock_faults() == {"unlisted": set(), "missing": set()}


# --- property: any sequence of bodies reads back exactly ----------------------

_TEXT = st.one_of(
    st.text(max_size=400),
    st.sampled_from(['",{"', '[{"role":"user"}]', "\\", '{"', "", "\u2028é😀"]),
)
_AGENTS = [(SESSION, ""), (SESSION, "agent-1"), (OTHER, ""), ("", "")]
_STEP = st.one_of(
    st.tuples(st.just("append"), st.sampled_from(_AGENTS), st.lists(_TEXT, max_size=4)),
    st.tuples(st.just("compact"), st.sampled_from(_AGENTS), _TEXT),
    st.tuples(st.just("alien"), st.sampled_from(_AGENTS), st.binary(max_size=3000)),
)


@given(
    steps=st.lists(st.tuples(_STEP, st.integers(1, 3)), min_size=1, max_size=12),
    minimum=st.sampled_from([1, 16, 256]),
    spaced=st.booleans(),
    doomed=st.lists(st.booleans(), max_size=12),
)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@pytest.mark.django_db
def test_it_reads_back_any_sequence_of_bodies_exactly(steps, minimum, spaced, doomed):
    """Appends, compactions that rewrite the conversation, bodies sharing nothing,
    agents and sessions interleaved, batches of rows in one write, then deletes."""
    Exchange.objects.all().delete()
    BodyBlock.objects.all().delete()
    separators = (", ", ": ") if spaced else (",", ":")
    conversations: dict[tuple[str, str], list] = {agent: [] for agent in _AGENTS}
    recorded: list[Call] = []
    with mock.patch.object(bodies, "_MIN_BLOCK", minimum):
        for (kind, agent, content), batch in steps:
            conversation = conversations[agent]
            if kind == "append":
                conversation += [{"role": "user", "content": text} for text in content]
            elif kind == "compact":
                conversation[:] = [{"role": "user", "content": f"Summary: {content}"}]
            marked = [dict(m) for m in conversation]
            if marked:
                marked[-1]["cache_control"] = {"type": "ephemeral"}
            payload = {"messages": marked, "system": SYSTEM}
            data = json.dumps(payload, separators=separators).encode()
            if kind == "alien":
                data = content
            calls = [_call(data, session=agent[0], agent=agent[1])
                     for _ in range(batch)]  # fmt: skip
            _record(*calls)
            recorded += calls
    ids = dict(Exchange.objects.values_list("uid", "pk"))
    gone = [ids[c.uid] for c, drop in zip(recorded, doomed, strict=False) if drop]
    services.exchange_delete(queryset=Exchange.objects.filter(pk__in=gone))
    for call in recorded:
        if ids[call.uid] not in gone:
            assert body_decode(_stored(call)) == call.request_body
    assert bodyblock_faults() == {"unlisted": set(), "missing": set()}


def test_it_asks_for_blocks_only_when_a_session_can_share_them():
    assert isinstance(body_encode_request(b"x" * 600, session_id="s"), BodyBlocks)
    assert body_encode_request(b"x" * 600, session_id="")[:1] == b"z"
    assert body_block_ids(b"z...") is None


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b'{"a": [1]}', '{\n  "a": [\n    1\n  ]\n}'),
        ('{"é": "ü"}', '{\n  "é": "ü"\n}'),  # non-ASCII kept
        (b'"\\ud800"', '"\ufffd"'),  # a lone surrogate no page could encode
        (b"not json \xff", "not json \ufffd"),
        (b"[" * 5000 + b"]" * 5000, "[" * 5000 + "]" * 5000),  # too deep: as it is
        (b"1" * 5000, "1" * 5000),  # an int beyond Python's digit limit: as it is
    ],
)
def test_it_pretty_prints_a_body_for_people_or_shows_it_as_it_is(data, text):
    assert body_pretty(data) == text


@pytest.mark.django_db(transaction=True)
def test_it_keeps_a_block_that_a_concurrent_write_found_when_a_delete_sweeps(
    monkeypatch,
):
    # The recorder finds a block its body shares with an exchange being deleted,
    # and has not written its row yet when the delete sweeps the session. On
    # PostgreSQL (read committed, many writers) the sweep would not see that row
    # and delete the block; a lock per session makes the sweep wait for it.
    turns = [{"role": "user", "content": "w" * 3000}]
    first, second = _call(_body(turns)), _call(_body(turns, stream=True))
    _record(first)
    paused, resume = threading.Event(), threading.Event()
    encode = bodies.body_of_blocks

    def pausing_encode(ids: list[int]) -> bytes:
        if threading.current_thread().name == "recorder":
            paused.set()
            resume.wait(2)  # the sweep, if it does not wait for this write
        return encode(ids)

    monkeypatch.setattr(bodies, "body_of_blocks", pausing_encode)
    doomed = Exchange.objects.filter(uid=first.uid)
    recorder = threading.Thread(name="recorder", target=_closing(_record, second))
    recorder.start()
    paused.wait(10)
    deleter = threading.Thread(
        target=_closing(services.exchange_delete, queryset=doomed)
    )
    deleter.start()
    deleter.join(1)  # done at once unless it waits for the recorder's write
    resume.set()
    recorder.join()
    deleter.join()

    assert not doomed.exists()
    assert bodyblock_faults() == {"unlisted": set(), "missing": set()}
    assert body_decode(_stored(second)) == second.request_body


def _closing(work, *args, **kwargs):
    """Return a thread's target: the work, then its own connection closed."""

    def run() -> None:
        try:
            work(*args, **kwargs)
        finally:
            connection.close()

    return run
