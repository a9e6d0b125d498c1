from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from apps.indexing import selectors
from apps.indexing.services import index_sync
from tests.factories import exchange_create
from tests.indexing.conftest import conversation_write

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client):
    # The default deployment's one user: staff, who sees every session (what a
    # non-staff reader sees is tests/dashboard/test_visibility.py's).
    user = get_user_model().objects.create_user("reader", password="pw", is_staff=True)
    client.force_login(user)
    return client


@pytest.fixture
def indexed(claude_tree):
    t = conversation_write(claude_tree)
    sub = claude_tree.subagent(t, agent_id="abc", layout="new")
    sub.user("check the invoices table")
    t.user(
        [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "done"}],
        toolUseResult={"agentId": "abc"},
    )
    claude_tree.todo(t.session_id, [{"content": "ship it", "status": "pending"}])
    claude_tree.plan("calm-river", "# Plan\nsteps")
    index_sync()
    return t


def test_it_searches_with_snippets_and_links(api, indexed) -> None:
    response = api.get("/api/search", {"q": "billing rollback"})
    assert response.status_code == 200
    body = response.json()
    (hit,) = body["results"]
    assert hit["session_id"] == indexed.session_id
    assert hit["project_path"] == "/home/me/my_proj"
    assert hit["role"] == "user"
    assert {"text": "billing", "match": True} in hit["snippet_parts"]
    assert body["has_more"] is False


@pytest.mark.parametrize("q", ['"', "NEAR(", "*", "-", "🎉", "x" * 10_000, "(a OR"])
def test_it_answers_hostile_queries_with_a_list(api, indexed, q: str) -> None:
    response = api.get("/api/search", {"q": q})
    assert response.status_code == 200
    assert isinstance(response.json()["results"], list)


@pytest.mark.parametrize(
    "q",
    ['"', "NEAR(", "-", "or", "--x", "a\x00b", "x" * 19_000, "(a OR", '-"', "\x00",
     "-\x00-", '"\x00"', "alembic\x00"],
)  # fmt: skip
def test_it_answers_hostile_raw_queries_with_a_list_or_a_422(api, indexed, q) -> None:
    response = api.get("/api/search", {"q": q, "mode": "raw"})
    if connection.vendor == "sqlite" and response.status_code == 422:
        assert "FTS5 query error" in response.json()["detail"]  # FTS5 syntax only
    else:
        assert response.status_code == 200
        assert isinstance(response.json()["results"], list)


@pytest.mark.sqlite_only("FTS5's syntax errors; websearch_to_tsquery has none")
def test_it_reports_raw_syntax_errors_as_422(api, indexed) -> None:
    response = api.get("/api/search", {"q": "NEAR(", "mode": "raw"})
    assert response.status_code == 422
    assert "syntax error" in response.json()["detail"]
    ok = api.get("/api/search", {"q": "alembic NOT downgrade", "mode": "raw"})
    assert len(ok.json()["results"]) == 2


@pytest.mark.parametrize(
    "params",
    [
        {"q": "a", "limit": "0"},
        {"q": "a", "limit": "x"},
        {"q": "a", "mode": "sql"},
        {"q": "a", "since": "yesterday"},
        {"q": "a", "role": "admin"},
        {"q": "a", "project": "-1"},
        {"q": "a", "offset": "-5"},
    ],
)
def test_it_rejects_bad_parameters_with_422(api, indexed, params) -> None:
    assert api.get("/api/search", params).status_code == 422


def test_it_filters_search_by_date_range(api, indexed) -> None:
    inside = api.get(
        "/api/search",
        {
            "q": "alembic",
            "since": "2026-11-20T00:00:00Z",
            "until": "2026-11-21T00:00:00Z",
        },
    )
    outside = api.get("/api/search", {"q": "alembic", "since": "2026-11-21T00:00:00"})
    assert len(inside.json()["results"]) == 3
    assert outside.json()["results"] == []


def test_it_lists_projects_and_sessions(api, indexed) -> None:
    (project,) = api.get("/api/projects").json()
    assert (project["path"], project["session_count"]) == ("/home/me/my_proj", 1)
    sessions = api.get("/api/transcripts", {"project": project["id"]}).json()
    assert [s["session_id"] for s in sessions] == [indexed.session_id]
    assert sessions[0]["user_count"] == 1 and "cost_usd" not in sessions[0]
    with_subagents = api.get("/api/transcripts", {"subagents": "true"}).json()
    assert len(with_subagents) == 2


def test_it_shows_a_thread_with_subagents_and_exchange_links(api, indexed) -> None:
    exchange = exchange_create(request_id="req_01")
    body = api.get(f"/api/transcripts/{indexed.session_id}", {"raw": "true"}).json()
    entries = body["entries"]
    assert [e["line_no"] for e in entries] == list(range(1, 13))
    linked = [e["exchange_id"] for e in entries if e["request_id"] == "req_01"]
    assert linked == [exchange.pk, exchange.pk]
    (spawner,) = [e for e in entries if e["subagents"]]
    assert spawner["subagents"][0]["entries"][0]["text"] == "check the invoices table"
    assert entries[0]["record"]["type"] == "queue-operation"


def test_it_answers_404_for_an_unknown_session(api, indexed) -> None:
    assert api.get("/api/transcripts/nope").status_code == 404


def test_it_lists_todos_and_plans(api, indexed) -> None:
    todos = api.get("/api/todos", {"session": indexed.session_id}).json()
    assert todos["counts"] == {"pending": 1}
    assert todos["todos"][0]["content"] == "ship it"
    plans = api.get("/api/plans").json()
    assert [p["slug"] for p in plans] == ["calm-river"]


def test_it_links_entries_and_exchanges_both_ways(indexed) -> None:
    exchange = exchange_create(request_id="req_02")
    links = selectors.session_exchange_links(session_id=indexed.session_id)
    assert [(req, ex) for _, _, req, ex in links] == [("req_02", exchange.pk)]
    entry = selectors.entry_by_request_id(request_id="req_02")
    assert entry.session.session_id == indexed.session_id
    assert selectors.entry_by_request_id(request_id="") is None


def test_it_needs_a_login(client, indexed) -> None:
    assert client.get("/api/search", {"q": "billing"}).status_code == 401


def test_it_guards_list_selector_queries(django_assert_num_queries, claude_tree):
    for _ in range(3):
        t = conversation_write(claude_tree)
    for agent in ("a1", "a2"):
        claude_tree.subagent(t, agent_id=agent, layout="old").user(f"task {agent}")
        t.user(
            [{"type": "tool_result", "tool_use_id": agent, "content": "ok"}],
            toolUseResult={"agentId": agent},
        )
    index_sync()
    with django_assert_num_queries(1):
        selectors.project_list(visible=None)
    with django_assert_num_queries(1):
        sessions = selectors.session_list(visible=None)
        [s.project.path for s in sessions]
    session = selectors.session_get(session_id=t.session_id, visible=None)
    with django_assert_num_queries(5):
        thread = selectors.session_thread(session=session)
    assert sum(len(item.subagents) for item in thread) == 2
    with django_assert_num_queries(4):
        hits = selectors.entry_search(visible=None, query="alembic")
        [(h.session_id, h.project_path) for h in hits]
    with django_assert_num_queries(1):
        selectors.todo_list(visible=None)
    with django_assert_num_queries(1):
        selectors.plan_list(visible=None)


@pytest.mark.parametrize(
    "params",
    [
        {"q": "alembic", "session": "s\x00"},
        {"q": "alembic", "session": "\x00"},
        {"q": "alembic", "tool": "\x00"},
        {"q": "\x00", "session": "\x00", "role": "user"},
    ],
)
def test_it_answers_a_nul_in_any_search_parameter_without_a_500(api, indexed, params):
    response = api.get("/api/search", params)
    assert response.status_code == 200
    assert isinstance(response.json()["results"], list)


def test_it_answers_422_for_a_query_over_its_length_limit(api, indexed) -> None:
    response = api.get("/api/search", {"q": "x" * 20_001})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "q"


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/transcripts/a%00b", {}, 404),
        ("/api/transcripts", {"title": "plan\x00"}, 200),
        ("/api/todos", {"session": "\x00"}, 200),
        ("/api/todos", {"status": "pending\x00"}, 200),
    ],
)
def test_it_finds_nothing_by_an_id_or_title_with_a_nul(
    api, indexed, path, params, status
) -> None:
    response = api.get(path, params)
    assert response.status_code == status
    if status == 200:
        body = response.json()
        assert (body["todos"] if "todos" in body else body) == []
