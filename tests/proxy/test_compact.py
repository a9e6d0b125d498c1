"""`manage.py compact`: older rows rewritten in block form, resumable, idempotent."""

from __future__ import annotations

import io
import json
import secrets

import pytest
from django.core.management import call_command

from apps.proxy import bodies
from apps.proxy.bodies import body_block_ids, body_decode, body_encode
from apps.proxy.models import BodyBlock, Exchange
from tests.factories import bodyblock_faults, exchange_create

SESSIONS = [
    "5e551011-0000-4000-8000-00000000000a",
    "5e551011-0000-4000-8000-00000000000b",
]


def _old_rows() -> dict[int, bytes]:
    """Rows as stored before blocks (zstd per body): two sessions and no session."""
    turns = [{"role": "user", "content": secrets.token_hex(400)} for _ in range(10)]
    rows = {}
    for session in [*SESSIONS, ""]:
        for n in range(1, 11):
            body = json.dumps({"messages": turns[:n]}).encode()
            row = exchange_create(session_id=session, request_body=body_encode(body))
            rows[row.pk] = body
    tiny = exchange_create(session_id=SESSIONS[0], request_body=body_encode(b"{}"))
    rows[tiny.pk] = b"{}"
    return rows


def _compact() -> str:
    out = io.StringIO()
    call_command("compact", stdout=out)
    return out.getvalue()


def _assert_all_read_back(rows: dict[int, bytes]) -> None:
    stored = dict(Exchange.objects.values_list("pk", "request_body"))
    assert {pk: body_decode(stored[pk]) for pk in rows} == rows
    assert bodyblock_faults() == {"unlisted": set(), "missing": set()}


@pytest.mark.django_db
def test_it_converts_session_bodies_and_reports_bytes_before_and_after():
    rows = _old_rows()
    before = bodies.body_sizes()

    output = _compact()

    after = bodies.body_sizes()
    _assert_all_read_back(rows)
    forms = {
        pk: body_block_ids(stored) is not None
        for pk, stored in Exchange.objects.values_list("pk", "request_body")
    }
    in_sessions = set(
        Exchange.objects.exclude(session_id="").values_list("pk", flat=True)
    )
    tiny = Exchange.objects.get(request_body=body_encode(b"{}")).pk
    assert {pk for pk, blocks in forms.items() if blocks} == in_sessions - {tiny}
    total_before = before["exchanges"] + before["blocks"]
    total_after = after["exchanges"] + after["blocks"]
    assert total_after < total_before
    assert f"Before: request bodies {total_before / 1e6:,.2f} MB" in output
    assert f"After:  request bodies {total_after / 1e6:,.2f} MB" in output
    assert "Converted 20 bodies" in output


@pytest.mark.django_db
def test_it_goes_on_where_a_stopped_run_left_off(monkeypatch):
    rows = _old_rows()
    monkeypatch.setattr(bodies, "_COMPACT_ROWS", 4)
    real = bodies.bodyblock_store
    stores = []

    def store_then_stop(**kwargs):
        stores.append(1)
        if len(stores) == 7:  # inside the second batch's transaction
            raise KeyboardInterrupt
        return real(**kwargs)

    monkeypatch.setattr(bodies, "bodyblock_store", store_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _compact()
    monkeypatch.setattr(bodies, "bodyblock_store", real)

    converted = [
        pk for pk, stored in Exchange.objects.values_list("pk", "request_body")
        if body_block_ids(stored)
    ]  # fmt: skip
    assert len(converted) == 4  # the first batch; the second rolled back whole
    _assert_all_read_back(rows)
    assert "Converted 16 bodies" in _compact()
    _assert_all_read_back(rows)


@pytest.mark.django_db
def test_it_changes_nothing_when_run_again():
    rows = _old_rows()
    _compact()
    stored = dict(Exchange.objects.values_list("pk", "request_body"))
    blocks = dict(BodyBlock.objects.values_list("pk", "data"))

    output = _compact()

    assert "Converted 0 bodies, removed 0 unlisted blocks, 0.00 MB saved" in output
    assert dict(Exchange.objects.values_list("pk", "request_body")) == stored
    assert dict(BodyBlock.objects.values_list("pk", "data")) == blocks
    _assert_all_read_back(rows)


@pytest.mark.django_db
def test_it_converts_no_row_that_was_deleted_while_it_read(monkeypatch):
    rows = _old_rows()
    real = bodies.body_encode_request
    doomed = min(rows)

    def delete_then_cut(data, *, session_id):
        Exchange.objects.filter(pk=doomed).delete()  # the admin, meanwhile
        return real(data, session_id=session_id)

    monkeypatch.setattr(bodies, "body_encode_request", delete_then_cut)
    _compact()

    del rows[doomed]
    _assert_all_read_back(rows)
