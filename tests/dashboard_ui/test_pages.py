"""Server-side page tests (test client): every page renders, bad input is safe."""

from __future__ import annotations

import json
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.dashboard import selectors
from apps.dashboard.selectors import requests as request_selectors
from apps.dashboard.selectors.ledger import Scope
from apps.proxy.bodies import body_encode
from apps.proxy.models import Exchange
from apps.proxy.selectors import EVERYONE
from tests.dashboard_ui.seed import HOSTILE, world_seed
from tests.factories import exchange_create

PAGES = ["dashboard:overview", "dashboard:live", "dashboard:exchange-list",
         "dashboard:performance"]  # fmt: skip


@pytest.mark.parametrize("name", PAGES)
def test_it_renders_every_page_with_a_strict_policy(member_client, world, name):
    response = member_client.get(reverse(name))
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert b"<script>" not in response.content  # all script is in static files


@pytest.mark.parametrize("name", PAGES)
def test_it_sends_anonymous_users_to_the_login_page(client, db, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize(
    "tab", ["new", "conversation", "response", "request", "headers", "raw", "bogus"]
)
def test_it_renders_every_inspector_tab(member_client, world, tab):
    url = reverse("dashboard:exchange-detail", args=[world["second"].pk])
    response = member_client.get(url, {"tab": tab})
    assert response.status_code == 200
    assert "&lt;script&gt;document.title" in response.content.decode() or tab not in (
        "new", "conversation", "raw")  # fmt: skip


def test_it_answers_404_for_a_missing_exchange(member_client, db):
    url = reverse("dashboard:exchange-detail", args=[999999])
    assert member_client.get(url).status_code == 404


def test_it_escapes_a_script_in_a_tool_result(member_client, world):
    url = reverse("dashboard:exchange-detail", args=[world["second"].pk])
    html = member_client.get(url, {"tab": "conversation"}).content.decode()
    assert HOSTILE not in html
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;" in html


def test_it_opens_the_inspector_on_the_new_messages(member_client, world):
    url = reverse("dashboard:exchange-detail", args=[world["second"].pk])
    html = member_client.get(url).content.decode()
    # message 0 was sent by the previous request; 1 and 2 are new
    assert 'id="m0"' not in html
    assert 'id="m1"' in html and 'id="m2"' in html
    assert "Run the greet tests" in html
    full = member_client.get(url, {"tab": "conversation"}).content.decode()
    assert 'id="m0"' in full and 'id="new"' in full


@pytest.mark.parametrize(
    "query",
    [
        {"range": "bogus"},
        {"range": "custom", "from": "2026-13-45", "to": "x"},
        {"range": "custom", "from": "2026-11-20", "to": "2026-11-01"},
        {"range": "custom", "from": "1900-01-01", "to": "2999-01-01"},
        {"range": "custom", "from": "1965-01-01", "to": "1965-01-02"},
        {"range": "custom", "from": "2020-01-01", "to": "2026-01-01"},
        {"sort": "password"},
        {"page": "-3"},
        {"page": "99999"},
        {"status": "abc"},
        {"state": "exploded"},
        {"streaming": "maybe"},
        {"metric": "<b>"},
        {"model": "x" * 5000},
    ],
)
@pytest.mark.parametrize("name", PAGES)
def test_it_survives_bad_parameters(member_client, world, name, query):
    response = member_client.get(reverse(name), query)
    assert response.status_code == 200


def test_it_reports_a_bad_range_instead_of_guessing_silently(member_client, db):
    response = member_client.get(reverse("dashboard:exchange-list"), {"range": "9y"})
    assert "Unknown range &#x27;9y&#x27;." in response.content.decode()


@pytest.mark.parametrize(
    "cookie", ["Asia/Tokyo", "Asia%2FTokyo", "../../etc/passwd", "Not/AZone", ""]
)
def test_it_shows_times_in_the_browser_zone_or_utc(member_client, db, cookie):
    started = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
    exchange_create(started_at=started)
    member_client.cookies["tz"] = cookie
    html = member_client.get(reverse("dashboard:exchange-list")).content.decode()
    zone = ZoneInfo("Asia/Tokyo" if "Tokyo" in cookie else "UTC")
    assert started.astimezone(zone).strftime("%H:%M:%S") in html
    assert f"Times in {zone.key}." in html


def test_it_filters_and_sorts_the_requests_table(member_client, world):
    url = reverse("dashboard:exchange-list")
    html = member_client.get(
        url, {"model": "claude-haiku-4-5-20251001"}
    ).content.decode()
    assert html.count('<tr data-id="') == 1
    html = member_client.get(url, {"tool": "Bash"}).content.decode()
    ids = [world["second"].pk, world["first"].pk]
    assert [f'<tr data-id="{pk}"' in html for pk in ids] == [True, True]
    assert html.count('<tr data-id="') == 2
    html = member_client.get(url, {"sort": "-duration"}).content.decode()
    order = [world[k].pk for k in ("second", "first", "failed", "haiku")]
    positions = [html.index(f'<tr data-id="{pk}"') for pk in order]
    assert positions == sorted(positions)


def test_it_never_loads_bodies_for_lists(member_client, world):
    for name in PAGES:
        with CaptureQueriesContext(connection) as queries:
            member_client.get(reverse(name))
        sql = " ".join(q["sql"] for q in queries.captured_queries)
        assert "request_body" not in sql and "response_body" not in sql, name


def test_it_pages_with_a_fixed_number_of_queries(
    member_client, world, django_assert_max_num_queries
):
    for i in range(60):
        exchange_create(started_at=timezone.now() - timedelta(seconds=i))
    with django_assert_max_num_queries(6):  # session, user, count, rows, models
        response = member_client.get(reverse("dashboard:exchange-list"), {"page": 2})
    assert response.content.decode().count('<tr data-id="') == 14


def test_it_finds_new_and_finished_exchanges_for_the_live_feed(db):
    done = exchange_create()
    flying = exchange_create(state=Exchange.State.IN_PROGRESS, ended_at=None)
    assert request_selectors.exchange_live_changes(
        after_id=done.pk, watch_ids=[], viewer=EVERYONE
    ) == [flying]
    assert (
        request_selectors.exchange_live_changes(
            after_id=flying.pk, watch_ids=[flying.pk], viewer=EVERYONE
        )
        == []
    )
    Exchange.objects.filter(pk=flying.pk).update(state=Exchange.State.COMPLETE)
    changed = request_selectors.exchange_live_changes(
        after_id=flying.pk, watch_ids=[flying.pk], viewer=EVERYONE
    )
    assert [(row.pk, row.state) for row in changed] == [(flying.pk, "complete")]


def test_it_shows_the_limits_panel_only_with_unified_traffic(member_client, db):
    exchange_create(started_at=timezone.now() - timedelta(minutes=1))
    assert 'aria-label="Limits"' not in member_client.get("/").content.decode()
    world_seed(now=timezone.now())
    html = member_client.get("/").content.decode()
    assert 'aria-label="Limits"' in html and "42.0%" in html and "13.0%" in html


def test_it_renders_every_purpose_built_tool_view(member_client, db):
    calls = [
        ("Read", {"file_path": "/r.py", "offset": 5}),
        ("Write", {"file_path": "/w.py", "content": "print('w')\n"}),
        ("MultiEdit", {"file_path": "/m.py", "edits": [
            {"old_string": "a = 1", "new_string": "a = 2"}]}),
        ("Grep", {"pattern": "TODO", "path": "src", "-i": True}),
        ("Glob", {"pattern": "**/*.md"}),
        ("TodoWrite", {"todos": [{"content": "Ship it", "status": "in_progress"},
                                 {"content": "Test it", "status": "completed"}]}),
        ("Task", {"subagent_type": "code-reviewer", "description": "Review",
                  "prompt": "Review the diff carefully"}),
        ("WebFetch", {"url": "https://docs.test/page", "prompt": "Summarise"}),
        ("WebSearch", {"query": "sqlite covering index"}),
        ("mcp__db__query", {"sql": "select 1", "limit": 5}),
    ]  # fmt: skip
    blocks = [{"type": "tool_use", "id": f"t{i}", "name": name, "input": args}
              for i, (name, args) in enumerate(calls)]  # fmt: skip
    blocks += [
        {"type": "redacted_thinking", "data": "xx"},
        {"type": "document", "source": {"type": "text", "data": "doc"}},
    ]
    body = {"messages": [{"role": "assistant", "content": blocks}]}
    exchange = exchange_create(
        started_at=timezone.now(), request_body=body_encode(json.dumps(body).encode())
    )
    url = reverse("dashboard:exchange-detail", args=[exchange.pk])
    html = member_client.get(url).content.decode()
    for expected in ["/r.py", "offset=5", "print(&#x27;w&#x27;)", "- a = 1", "+ a = 2",
                     "TODO", "**/*.md", "Ship it", "1 done · 1 in progress",
                     "code-reviewer", "Review the diff carefully",
                     "https://docs.test/page", "sqlite covering index",
                     "mcp__db__query", "select 1", "Thinking (redacted by the API)",
                     "document block"]:  # fmt: skip
        assert expected in html, expected


def test_it_links_an_export_of_the_same_filter(member_client, world):
    html = member_client.get(
        reverse("dashboard:exchange-list"),
        {"model": "claude-sonnet-4-5-20250929", "streaming": "yes"},
    ).content.decode()
    start = html.index('href="/api/exchanges/export?format=csv')
    href = html[start + 6 : html.index('"', start + 6)].replace("&amp;", "&")
    response = member_client.get(href)
    assert response.status_code == 200
    lines = async_to_sync(_body)(response).decode().strip().splitlines()
    assert len(lines) == 1 + 2  # header and the two sonnet streams


def test_it_exports_only_the_exchanges_that_called_the_filtered_tool(
    member_client, world
):
    html = member_client.get(
        reverse("dashboard:exchange-list"), {"tool": "Edit"}
    ).content.decode()
    start = html.index('href="/api/exchanges/export?format=jsonl')
    href = html[start + 6 : html.index('"', start + 6)].replace("&amp;", "&")
    assert "tool=Edit" in href
    response = member_client.get(href)
    assert response.status_code == 200
    lines = async_to_sync(_body)(response).decode().strip().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [world["first"].pk]


async def _body(response) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


def test_it_computes_latency_percentiles_per_bucket_and_model(db):
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=2
    )
    edges = [start, start + timedelta(hours=1), start + timedelta(hours=2)]
    for minute, duration in enumerate([100, 400, 300, 200]):  # first hour, sonnet
        exchange_create(started_at=start + timedelta(minutes=minute),
                        duration_ms=float(duration))  # fmt: skip
    exchange_create(started_at=start + timedelta(minutes=70), duration_ms=50.0,
                    model="claude-haiku-4-5-20251001")  # fmt: skip
    exchange_create(started_at=start + timedelta(minutes=150), duration_ms=9e9)
    scope = Scope(edges[0], edges[-1], viewer=EVERYONE)
    rows = selectors.latency_by_bucket(scope=scope, edges=edges)["duration_ms"]
    found = {(r["bucket"], r["model"]): (r["count"], r["p50"], r["p95"]) for r in rows}
    # nearest rank: p50 of 4 values is rank 2, p95 is rank 4
    assert found == {
        (0, "claude-sonnet-4-5-20250929"): (4, 200.0, 400.0),
        (1, "claude-haiku-4-5-20251001"): (1, 50.0, 50.0),
    }


def test_it_pages_a_long_conversation_and_opens_on_the_new_part(member_client, db):
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"}
             for i in range(250)]  # fmt: skip
    old = exchange_create(
        started_at=timezone.now() - timedelta(minutes=2),
        request_body=body_encode(json.dumps({"messages": turns[:240]}).encode()),
    )
    new = exchange_create(
        started_at=timezone.now() - timedelta(minutes=1),
        request_body=body_encode(json.dumps({"messages": turns}).encode()),
    )
    url = reverse("dashboard:exchange-detail", args=[new.pk])
    html = member_client.get(url, {"tab": "conversation"}).content.decode()
    assert 'id="m200"' in html and 'id="m249"' in html and 'id="m199"' not in html
    assert 'id="new"' in html and "3 (new)" in html
    first = member_client.get(url, {"tab": "conversation", "page": 1}).content.decode()
    assert 'id="m0"' in first and 'id="m99"' in first and 'id="m100"' not in first
    assert old.pk != new.pk
