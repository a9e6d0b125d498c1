"""The exchange admin (fast list, readable escaped detail, deletes) and the export."""

from __future__ import annotations

import csv
import io
import json
import secrets
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext

from apps.dashboard import api as stats_api
from apps.dashboard import selectors
from apps.proxy.bodies import body_block_ids, body_decode, body_encode
from apps.proxy.models import BodyBlock, Exchange
from tests.factories import bodyblock_faults, exchange_create, exchange_create_shared

CHANGELIST = "/admin/proxy/exchange/"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def hostile(db) -> Exchange:
    """An exchange whose recorded content tries to run script in the admin."""
    return exchange_create(
        request_id="req_hostile",
        request_headers=[["x-evil", "<script>alert('h')</script>"]],
        response_headers=[["request-id", "req_hostile"]],
        request_body=body_encode(b'{"prompt": "<img src=x onerror=alert(1)>"}'),
        response_body=body_encode(
            b'event: message_start\ndata: {"type": "message_start"}\n\n'
            b"event: content_block_delta\n"
            b'data: {"text": "</pre><script>x</script>"}\n\n'
        ),
        response_message={"content": [{"type": "text", "text": "<b>bold</b>"}]},
        ratelimits={"unified-5h-utilization": 0.42},
    )


def test_it_lists_without_loading_bodies_or_headers(admin_client):
    for index in range(30):
        exchange_create(request_body=body_encode(b"x" * 1000), session_id=f"s{index}")
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    exchange_sql = [
        q["sql"] for q in queries.captured_queries if "proxy_exchange" in q["sql"]
    ]
    assert exchange_sql
    for sql in exchange_sql:
        for column in (
            "request_body",
            "response_body",
            "request_headers",
            "response_message",
        ):
            assert column not in sql, sql
    # list, capped count, model filter choices: the number is fixed, not per row
    assert len(exchange_sql) == 3


def test_it_filters_and_searches_the_list(admin_client):
    exchange_create(status_code=529, request_id="req_aaa", model="claude-opus-4-8")
    exchange_create(status_code=200, request_id="req_bbb")
    assert (
        admin_client.get(CHANGELIST, {"status": "5xx"}).context["cl"].result_count == 1
    )
    found = admin_client.get(CHANGELIST, {"q": "req_bbb"}).context["cl"]
    assert [e.request_id for e in found.result_list] == ["req_bbb"]
    by_model = admin_client.get(CHANGELIST, {"model": "claude-opus-4-8"}).context["cl"]
    assert by_model.result_count == 1
    older = admin_client.get(CHANGELIST, {"started_at__lt": "2000-01-01"}).context["cl"]
    assert older.result_count == 0


def test_it_shows_a_readable_escaped_detail(admin_client, hostile):
    page = admin_client.get(f"/admin/proxy/exchange/{hostile.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#x27;h&#x27;)" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;/pre&gt;&lt;script&gt;x&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html
    assert "<th>x-evil</th>" in html  # headers as a table
    assert "<th>content_block_delta</th>" in html  # SSE shown as events
    assert "&quot;prompt&quot;: " in html  # JSON indented
    assert "unified-5h-utilization" in html


def test_it_reads_bodies_with_the_one_sse_parser_and_pretty_printer(admin_client):
    exchange = exchange_create(
        is_streaming=True,
        request_body=body_encode(b'{"text": "\\ud800 lone"}'),
        response_body=body_encode(b'event: ping\rdata: {"type": "ping"}\r\r'),
    )

    page = admin_client.get(f"/admin/proxy/exchange/{exchange.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "<th>ping</th>" in html  # CR-only line ends, as WHATWG allows
    # The JSON-escaped lone surrogate, which no page can encode as UTF-8:
    assert "&quot;text&quot;: &quot;\ufffd lone&quot;" in html


def test_it_has_no_add_or_edit(admin_client, hostile):
    assert admin_client.get("/admin/proxy/exchange/add/").status_code == 403
    response = admin_client.post(
        f"/admin/proxy/exchange/{hostile.pk}/change/", {"model": "changed"}
    )
    assert response.status_code == 403
    assert Exchange.objects.get(pk=hostile.pk).model != "changed"


def test_it_lets_only_superusers_delete(staff, hostile):
    client = Client()
    client.force_login(staff)
    assert client.get(CHANGELIST).status_code == 200  # may look
    assert client.get(f"/admin/proxy/exchange/{hostile.pk}/change/").status_code == 200
    assert (
        client.post(
            f"/admin/proxy/exchange/{hostile.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    response = client.post(
        CHANGELIST, {"action": "delete_matching", "_selected_action": [hostile.pk],
                     "confirmed": "yes", "index": 0},
    )  # fmt: skip
    assert Exchange.objects.filter(pk=hostile.pk).exists()
    assert response.status_code in (200, 302)


def test_it_deletes_one_exchange_as_superuser(admin_client, hostile):
    response = admin_client.post(
        f"/admin/proxy/exchange/{hostile.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert not Exchange.objects.filter(pk=hostile.pk).exists()


def test_it_deletes_everything_matching_a_filter_after_confirming(admin_client):
    old = [exchange_create(started_at=_at(f"2025-01-0{d}T00:00:00")) for d in (1, 2, 3)]
    recent = exchange_create(started_at=_at("2026-11-20T00:00:00"))
    filtered = CHANGELIST + "?started_at__lt=2026-01-01"
    form = {"action": "delete_matching", "select_across": "1", "index": "0",
            "_selected_action": [old[0].pk]}  # fmt: skip
    confirm = admin_client.post(filtered, form)
    assert confirm.status_code == 200
    assert b"deletes <strong>3</strong> exchanges" in confirm.content
    assert Exchange.objects.count() == 4
    done = admin_client.post(filtered, {**form, "confirmed": "yes"})
    assert done.status_code == 302
    assert list(Exchange.objects.values_list("pk", flat=True)) == [recent.pk]


# --- bodies stored as a session's shared blocks ------------------------------

SESSION = "5e551011-0000-4000-8000-0000000000c1"


def _session_of_ten() -> list[tuple[Exchange, bytes]]:
    """Ten calls of one session, each re-sending the conversation, as recorded."""
    turns, made = [], []
    for hour in range(10):
        text = f"turn {hour} <script>x</script> " + secrets.token_hex(300)
        turns.append({"role": "user", "content": [{"type": "text", "text": text}]})
        marked = json.loads(json.dumps(turns))
        marked[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
        body = json.dumps({"model": "claude-sonnet-4-5", "messages": marked}).encode()
        exchange = exchange_create_shared(
            body=body, session_id=SESSION, started_at=_at(f"2026-11-20T{hour:02d}:00")
        )
        made.append((exchange, body))
    assert all(body_block_ids(e.request_body) for e, _ in made)
    return made


def test_it_shows_a_body_stored_as_session_blocks(admin_client):
    exchange, body = _session_of_ten()[4]
    page = admin_client.get(f"/admin/proxy/exchange/{exchange.pk}/change/")
    html = page.content.decode()
    assert "turn 4 &lt;script&gt;x&lt;/script&gt;" in html
    assert "<script>x</script>" not in html
    detail = admin_client.get(f"/api/exchanges/{exchange.pk}").json()
    assert detail["request_body"] == body.decode()


def _delete_in_admin(client: Client, doomed: list[Exchange], how: str) -> None:
    pks = [exchange.pk for exchange in doomed]
    if how == "detail page":
        for pk in pks:
            client.post(f"/admin/proxy/exchange/{pk}/delete/", {"post": "yes"})
    elif how == "delete selected":
        client.post(CHANGELIST, {"action": "delete_selected", "post": "yes",
                                 "_selected_action": pks, "index": 0})  # fmt: skip
    elif how == "delete matching":
        client.post(CHANGELIST, {"action": "delete_matching", "confirmed": "yes",
                                 "_selected_action": pks, "index": 0})  # fmt: skip
    else:
        call_command("prune", "--before", "2026-11-20T05:00", stdout=io.StringIO())


@pytest.mark.parametrize(
    ("how", "doomed"),
    [
        ("detail page", slice(4, 6)),
        ("delete selected", slice(3, 7)),
        ("delete matching", slice(2, 8)),
        ("prune", slice(0, 5)),  # the start of a session the rest re-sends
    ],
)
def test_it_deletes_part_of_a_session_and_every_survivor_still_reads(
    admin_client, how, doomed
):
    session = _session_of_ten()
    blocks = BodyBlock.objects.count()

    _delete_in_admin(admin_client, [e for e, _ in session[doomed]], how)

    survivors = [pair for pair in session if pair not in session[doomed]]
    assert Exchange.objects.count() == len(survivors)
    for exchange, body in survivors:
        assert body_decode(Exchange.objects.get(pk=exchange.pk).request_body) == body
    assert bodyblock_faults() == {"unlisted": set(), "missing": set()}
    assert BodyBlock.objects.count() < blocks  # the deleted calls' own blocks went


def test_it_manages_api_tokens_in_the_admin(admin_client, user):
    from apps.dashboard.models import ApiToken

    response = admin_client.post(
        "/admin/dashboard/apitoken/add/",
        {"user": user.pk, "name": "laptop"},
        follow=True,
    )
    assert response.status_code == 200
    token = ApiToken.objects.get()
    shown = [str(m) for m in response.context["messages"]]
    raw = shown[0].split("<code>")[1].split("</code>")[0]
    assert raw.startswith(token.prefix)
    assert (
        Client().get("/api/limits", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code
        == 200
    )
    admin_client.post(
        "/admin/dashboard/apitoken/",
        {"action": "revoke", "_selected_action": [token.pk], "index": 0},
    )
    assert (
        Client().get("/api/limits", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code
        == 401
    )


# --- export ------------------------------------------------------------------


async def _download(client: AsyncClient, **params) -> tuple[int, str, str]:
    response = await client.get("/api/exchanges/export", params)
    if not response.streaming:
        return response.status_code, response["Content-Type"], response.content.decode()
    chunks = [chunk async for chunk in response.streaming_content]
    return response.status_code, response["Content-Type"], b"".join(chunks).decode()


@pytest.fixture
def five(db) -> list[Exchange]:
    return [
        exchange_create(started_at=_at(f"2026-11-20T0{hour}:00:00"), input_tokens=hour)
        for hour in (5, 1, 4, 2, 3)
    ]


RANGE = {"from": "2026-11-20", "to": "2026-11-21"}


@pytest.mark.django_db(transaction=True)
def test_it_exports_csv_in_constant_size_chunks(user, five, monkeypatch):
    from asgiref.sync import async_to_sync

    monkeypatch.setattr(stats_api, "EXPORT_CHUNK", 2)
    calls = []
    real = selectors.exchange_export_chunk

    def spy(**kwargs):
        rows = real(**kwargs)
        calls.append(len(rows))
        return rows

    monkeypatch.setattr(selectors, "exchange_export_chunk", spy)
    client = AsyncClient()
    client.force_login(user)
    status, content_type, text = async_to_sync(_download)(client, **RANGE, format="csv")
    assert status == 200 and content_type.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["input_tokens"]) for r in rows] == [1, 2, 3, 4, 5]  # oldest first
    assert rows[0]["started_at"] == "2026-11-20T01:00:00+00:00"
    assert calls == [2, 2, 1, 0]  # never more than one chunk in memory


@pytest.mark.django_db(transaction=True)
def test_it_exports_json_lines_with_filters(user, five):
    from asgiref.sync import async_to_sync

    exchange_create(started_at=_at("2026-11-20T06:00:00"), model="claude-opus-4-8")
    client = AsyncClient()
    client.force_login(user)
    status, content_type, text = async_to_sync(_download)(
        client, **RANGE, format="jsonl", family="claude-opus"
    )
    assert status == 200 and content_type.startswith("application/x-ndjson")
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["model"] for line in lines] == ["claude-opus-4-8"]
    assert "request_body" not in lines[0]
    status, _, _ = async_to_sync(_download)(AsyncClient(), **RANGE)
    assert status == 401


@pytest.mark.django_db(transaction=True)
def test_it_neutralises_spreadsheet_formulas_in_csv(user):
    from asgiref.sync import async_to_sync

    hostile = {
        "model": '=HYPERLINK("http://evil.test","x")',
        "session_id": "+cmd|' /C calc'!A0",
        "agent_id": "-2+3",
        "path": "@SUM(A1:A2)",
        "request_id": "\tIMPORTXML(A1)",
        "message_id": "\r=1+1",
        "stop_reason": "a=b",
    }
    exchange_create(started_at=_at("2026-11-20T01:00:00"), **hostile)
    client = AsyncClient()
    client.force_login(user)
    _, _, text = async_to_sync(_download)(client, **RANGE, format="csv")
    [row] = list(csv.DictReader(io.StringIO(text)))
    for name, value in hostile.items():
        expected = value if name == "stop_reason" else "'" + value
        assert row[name] == expected, name
    assert row["input_tokens"] == "100"
