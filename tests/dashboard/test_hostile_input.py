"""Hostile or odd input reaching the data deployment: never a 500.

Recorded bodies and transcript lines are shown as placeholders when a page cannot
show them; parameters out of range are 422 on the API and a reported problem on
pages. Real requests through Django's client, real files indexed.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from apps.dashboard import page_state
from apps.dashboard.selectors import requests as request_selectors
from apps.indexing.services import index_sync
from apps.proxy.bodies import body_encode
from apps.proxy.selectors import EVERYONE
from tests.factories import exchange_create
from tests.indexing.conftest import ClaudeTree, conversation_write

SVG = {"type": "base64", "media_type": "image/svg+xml", "data": "PHN2Zy8+"}
TABS = ("new", "conversation", "response", "request", "headers", "raw")


def _conversation(images: list[dict]) -> list[dict]:
    result = [{"type": "image", "source": image} for image in images]
    return [
        {"role": "user", "content": "draw the logo"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "Read",
             "input": {"file_path": "/logo.svg"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": result}]},
    ]  # fmt: skip


def _exchange(body: dict | bytes):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return exchange_create(request_body=body_encode(data))


def test_it_shows_a_placeholder_naming_an_image_type_it_does_not_show(user_client):
    first = _exchange({"model": "m", "messages": _conversation([SVG])})
    later = _exchange(
        {"model": "m", "messages": [*_conversation([SVG]), {"role": "user",
                                                           "content": "thanks"}]}
    )  # fmt: skip
    for exchange in (first, later):
        for tab in TABS:
            response = user_client.get(f"/requests/{exchange.pk}/?tab={tab}")
            assert response.status_code == 200, tab
            if tab == "conversation":
                assert "image of type &#x27;image/svg+xml&#x27; not shown" in (
                    response.content.decode()
                )


def test_it_shows_the_placeholder_in_the_thread(user_client, tmp_path, settings):
    tree = ClaudeTree(tmp_path / "dot-claude")
    settings.CLAUDEMON_CLAUDE_DIRS = [str(tree.root)]
    t = tree.transcript()
    for message in _conversation([SVG]):
        if message["role"] == "user":
            t.user(message["content"])
        else:
            t.assistant(message["content"], message_id="msg_1", request_id="req_1")
    index_sync()
    response = user_client.get(f"/sessions/{t.session_id}/thread/")
    assert response.status_code == 200
    assert "image/svg+xml" in response.content.decode()


def test_it_shows_a_body_nested_too_deep_as_raw_text(user_client):
    exchange = _exchange(b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    for tab in TABS:
        assert user_client.get(f"/requests/{exchange.pk}/?tab={tab}").status_code == (
            200
        )


BIG = str(2**63)


@pytest.fixture
def indexed(tmp_path, settings) -> str:
    """Index the sample conversation; return its session id."""
    tree = ClaudeTree(tmp_path / "dot-claude")
    settings.CLAUDEMON_CLAUDE_DIRS = [str(tree.root)]
    session_id = conversation_write(tree).session_id
    index_sync()
    return session_id


@pytest.mark.parametrize(
    ("path", "name"),
    [
        (f"/api/search?q=x&project={BIG}", "project"),
        ("/api/search?q=x&since=0001-01-01T00:00:00%2B05:00", "since"),
        ("/api/search?q=x&until=9999-12-31T23:59:59-05:00", "until"),
        (f"/api/transcripts?offset={BIG}", "offset"),
        (f"/api/transcripts?project={BIG}", "project"),
        ("/api/transcripts?since=0001-01-01T00:00:00%2B05:00", "since"),
        ("/api/transcripts?until=9999-12-31", "until"),
        (f"/api/transcripts/{{session}}?offset={BIG}", "offset"),
        (f"/api/todos?offset={BIG}", "offset"),
        (f"/api/plans?offset={BIG}", "offset"),
        (f"/api/exchanges?offset={BIG}", "offset"),
        (f"/api/exchanges/{BIG}", "exchange_id"),
        ("/api/exchanges?from=0001-01-01", "from"),
        ("/api/stats/summary?to=9999-12-31T23:59:59-05:00", "to"),
        (f"/api/sessions?offset={BIG}", "offset"),
    ],
)
def test_it_answers_422_naming_a_parameter_out_of_range(
    user_client, indexed, path, name
):
    response = user_client.get(path.format(session=indexed))
    assert response.status_code == 422
    assert name in [error["loc"][-1] for error in response.json()["detail"]]


@pytest.mark.parametrize(
    "params", [{"q": "alembic\x00downgrade"}, {"q": "alembic", "tool": "Bash\x00"}]
)
def test_it_reads_a_nul_in_a_words_search_as_a_space(user_client, indexed, params):
    response = user_client.get("/api/search", params)
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1
    page = user_client.get("/search/", params).content.decode()
    assert "could not run" not in page and page.count('<li class="hit"') == 1


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Pago_Pago"])
@pytest.mark.parametrize(
    ("dates", "problem"),
    [
        ({"from": "0001-01-01"}, "'from' must be a date like 2026-11-20, from 1970"),
        ({"to": "9999-12-31"}, "'to' must be a date like 2026-11-20, from 1970"),
    ],
)
def test_it_reports_a_search_date_out_of_range(
    user_client, indexed, zone, dates, problem
):
    user_client.cookies["tz"] = zone
    response = user_client.get("/search/", {"q": "alembic", **dates})
    assert response.status_code == 200
    assert problem.replace("'", "&#x27;") in response.content.decode()


@pytest.mark.django_db
def test_it_refuses_a_sort_column_outside_the_covering_index_with_a_value_error(
    monkeypatch,
):
    # The guard keeps column names out of the raw ORDER BY unless the covering
    # index holds them; an assert would vanish under `python -O`.
    monkeypatch.setitem(page_state.SORTS, "body", "request_body")
    filters = page_state.RequestsPageFilter(sort="-body")
    now = page_state.now_utc()
    with pytest.raises(ValueError, match="request_body"):
        request_selectors.exchange_page(
            start=now - timedelta(days=1), end=now, filters=filters, viewer=EVERYONE
        )
