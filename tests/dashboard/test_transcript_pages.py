"""Sessions, session, thread, projects, search and todos pages through Django's client.

The world: a relayed session (two prompts, three calls with exchanges of known
cost, a subagent, a compaction) and a session never relayed whose file was
deleted after indexing. Seeded from real files by the indexing service.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from apps.dashboard.markdown import markdown_html
from apps.dashboard.selectors import sessions as session_selectors
from apps.dashboard.templatetags.dashboard import usd
from apps.indexing.services import index_sync
from apps.proxy import services
from apps.proxy.models import Exchange
from apps.proxy.selectors import EVERYONE
from tests.dashboard.conftest import PASSWORD  # noqa: F401  (shared fixtures)
from tests.factories import exchange_create
from tests.indexing.conftest import T0, ClaudeTree

RELAYED = "5e551011-dddd-4000-8000-000000000006"
ORPHAN = "0afa0afa-dddd-4000-8000-000000000007"
AGENT = "f1a2b3c4d5e6"
PHRASE = "flaky websocket fixture"
SUB_PHRASE = "subagent traced the deadlock"
HOSTILE = "<script>window.__pwned=1</script>"
COSTS = {"req_t1a": 0.1234, "req_t1b": 0.0567, "req_t2": 0.0425}
# The subagent's one call (req_s1) is not relayed: priced from its transcript
# usage, 10 input and 5 output tokens at Sonnet 4.5's $3 and $15 per million.
SUB_COST = (10 * 3.0 + 5 * 15.0) / 1e6
PLAN = "# Rollback plan\n\n- step **one**\n- <img src=x onerror=alert(1)>\n"


def transcripts_seed(root: Path) -> dict:
    """Write the ~/.claude tree, index it, delete one file, record exchanges."""
    tree = ClaudeTree(root)
    main = tree.transcript(cwd="/home/me/billing", session_id=RELAYED)
    main.user(f"fix the {PHRASE} in tests {HOSTILE}", slug="brave-otter")
    main.assistant(
        [{"type": "text", "text": "Looking at the fixture."},
         {"type": "tool_use", "id": "toolu_b1", "name": "Bash",
          "input": {"command": "pytest -q tests/ws", "description": "run"}}],
        message_id="msg_t1a", request_id="req_t1a",
    )  # fmt: skip
    main.tool_result("toolu_b1", "1 failed, 12 passed")
    main.assistant(
        [{"type": "text", "text": "The fixture leaks a socket; fixed."}],
        message_id="msg_t1b", request_id="req_t1b",
    )  # fmt: skip
    main.other(type="system", subtype="compact_boundary", uuid="cb-1",
               parentUuid=None, logicalParentUuid=main.last_uuid,
               compactMetadata={"trigger": "auto", "preTokens": 155000})  # fmt: skip
    main.user("Summary of the earlier conversation: socket fixed.",
              isCompactSummary=True)  # fmt: skip
    main.user("now find the deadlock with a subagent")
    main.assistant(
        [{"type": "tool_use", "id": "toolu_task", "name": "Task",
          "input": {"prompt": "trace the deadlock", "description": "deadlock",
                    "subagent_type": "general-purpose"}}],
        message_id="msg_t2", request_id="req_t2",
    )  # fmt: skip
    sub = tree.subagent(main, agent_id=AGENT, layout="new")
    sub.user("trace the deadlock")
    sub.assistant([{"type": "text", "text": f"The {SUB_PHRASE} to the pool."}],
                  message_id="msg_s1", request_id="req_s1")  # fmt: skip
    spawn = main.user(
        [{"type": "tool_result", "tool_use_id": "toolu_task",
          "content": "deadlock is in the pool"}],
        toolUseResult={"status": "completed", "agentId": AGENT},
    )  # fmt: skip
    tree.todo(RELAYED, [
        {"content": "fix fixture", "status": "completed", "activeForm": "Fixing"},
        {"content": "find deadlock", "status": "in_progress", "activeForm": "x"},
        {"content": "write notes", "status": "pending", "activeForm": "x"},
    ])  # fmt: skip
    tree.plan("brave-otter", PLAN)
    orphan = tree.transcript(cwd="/home/me/ledger", session_id=ORPHAN)
    orphan.user("explain the quarterly reconciliation of the ledger")
    orphan.assistant([{"type": "text", "text": "Reconciliation matches entries."}],
                     message_id="msg_o1", request_id="req_o1")  # fmt: skip
    index_sync(roots=[root])
    orphan.path.unlink()
    index_sync(roots=[root])
    exchanges = {
        rid: exchange_create(request_id=rid, session_id=RELAYED, cost_usd=cost,
                             started_at=T0, ttfb_ms=321.0, input_tokens=1000,
                             cache_read_tokens=3000)
        for rid, cost in COSTS.items()
    }  # fmt: skip
    return {"main": main, "sub": sub, "spawn": spawn, "exchanges": exchanges}


@pytest.fixture
def seeded(db, tmp_path) -> dict:
    return transcripts_seed(tmp_path / "dot-claude")


@pytest.fixture
def client_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _get(client: Client, name: str, *args: str, **params: str):
    response = client.get(reverse(f"dashboard:{name}", args=args), params)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def test_it_requires_login(db) -> None:
    response = Client().get(reverse("dashboard:sessions"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_it_lists_both_sessions_with_relay_cost_and_project(seeded, client_in):
    html = _get(client_in, "sessions", range="custom", **{"from": "2026-11-19",
                "to": "2026-11-21"})  # fmt: skip
    assert RELAYED in html and ORPHAN in html
    assert usd(sum(COSTS.values()) + SUB_COST) in html  # subagents' calls count
    assert "/home/me/billing" in html and "/home/me/ledger" in html
    only = _get(client_in, "sessions", range="custom", sort="cost",
                model="claude-sonnet-4-5-20250929",
                **{"from": "2026-11-19", "to": "2026-11-21"})  # fmt: skip
    assert RELAYED in only


def test_it_lists_session_rows_with_a_bounded_number_of_queries(
    seeded, django_assert_max_num_queries
):
    for i in range(10):  # relay-only sessions: no query per row
        exchange_create(session_id=f"relay-only-{i}", started_at=T0)
    span = {"start": T0.replace(day=19), "end": T0.replace(day=21)}
    # The sessions in range, their whole figures, the index's sessions and
    # their subagent counts, whatever the session count.
    with django_assert_max_num_queries(4):
        rows, total = session_selectors.session_rows(viewer=EVERYONE, **span)
    by_id = {r.session_id: r for r in rows}
    assert total == 12
    assert by_id[RELAYED].relayed and by_id[RELAYED].indexed
    assert by_id[RELAYED].cost_usd == pytest.approx(sum(COSTS.values()) + SUB_COST)
    # Two prompts; the compaction summary between them is not a turn.
    assert (by_id[RELAYED].subagents, by_id[RELAYED].turns) == (1, 2)
    assert not by_id[ORPHAN].relayed and by_id[ORPHAN].indexed
    assert by_id["relay-only-3"].relayed and not by_id["relay-only-3"].indexed


def test_it_adds_the_calls_the_relay_missed_to_a_partly_relayed_session(
    seeded, client_in
):
    # Resumed, or started before the relay was in the path: the transcript
    # knows a call the relay never recorded. The list must not show the wire's
    # part alone while the session page counts the whole session.
    services.exchange_delete(
        queryset=Exchange.objects.filter(pk=seeded["exchanges"]["req_t2"].pk)
    )
    listed = _get(client_in, "sessions", range="custom", sort="cost",
                  **{"from": "2026-11-19", "to": "2026-11-21"})  # fmt: skip
    row = re.search(rf'<tr data-session="{RELAYED}">.*?</tr>', listed, re.S)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
    page = _get(client_in, "session", RELAYED)
    tokens = re.search(r"<dt>Tokens</dt><dd[^>]*>([^<]*)</dd>", page).group(1)
    cost = re.search(r"<dt>Cost</dt><dd[^>]*>([^<]*)</dd>", page).group(1)
    assert "(2 relayed)" in page
    assert (cells[6], cells[7]) == (tokens, cost)
    assert cost != usd(COSTS["req_t1a"] + COSTS["req_t1b"])  # the missed call counts


def test_it_shows_turns_with_per_turn_cost_and_inspector_links(seeded, client_in):
    html = _get(client_in, "session", RELAYED)
    rows = re.findall(r'<tr class="turn".*?</tr>', html, re.DOTALL)
    assert len(rows) == 2
    assert usd(COSTS["req_t1a"] + COSTS["req_t1b"]) in rows[0]
    assert usd(COSTS["req_t2"]) in rows[1]
    for rid in COSTS:
        url = reverse("dashboard:exchange-detail", args=[seeded["exchanges"][rid].pk])
        assert url in html
    assert "321 ms" in rows[0] and "75.0%" in rows[0]  # 3000 / (1000 + 3000)
    assert "subagent" in rows[1] and f"agent-{AGENT}" in rows[1]
    assert "&lt;script&gt;" in html and HOSTILE not in html
    assert "<svg" in html


def test_it_reads_the_session_page_in_few_queries(
    seeded, client_in, django_assert_max_num_queries
):
    with django_assert_max_num_queries(12):
        _get(client_in, "session", RELAYED)


COMPACTED = "c0c0c0c0-dddd-4000-8000-000000000008"
CONTINUED = "c0c0c0c0-dddd-4000-8000-000000000009"


def _compaction(transcript, summary: str) -> None:
    """Write what Claude Code writes when it compacts: a boundary, then a summary."""
    transcript.other(type="system", subtype="compact_boundary", uuid=f"cb-{summary}",
                     parentUuid=None, compactMetadata={"trigger": "auto"})  # fmt: skip
    transcript.user(f"This session is being continued: {summary}",
                    isCompactSummary=True)  # fmt: skip


def _reply(transcript, n: int) -> None:
    transcript.assistant([{"type": "text", "text": f"reply {n}"}],
                         message_id=f"msg_c{n}", request_id=f"req_c{n}")  # fmt: skip


def test_it_counts_the_same_turns_on_the_sessions_list_and_the_session_page(
    db, tmp_path, client_in
):
    tree = ClaudeTree(tmp_path / "compacted")
    one = tree.transcript(cwd="/home/me/compact", session_id=COMPACTED)
    one.user("first prompt")  # turn 1
    _reply(one, 1)
    _compaction(one, "one")  # not a turn: turn 1 goes on, compacted
    _reply(one, 2)
    one.user("second prompt")  # turn 2
    one.user("<command-name>/clear</command-name>", isMeta=True)  # scaffolding
    _reply(one, 3)
    one.tool_result("toolu_x", "ok")  # a tool result, not a prompt
    _compaction(one, "two")
    one.user("third prompt")  # turn 3
    _reply(one, 4)
    # A session continued from a compacted one opens with the summary: what
    # comes before its first prompt is shown as turn 0, which is not a turn.
    two = tree.transcript(cwd="/home/me/compact", session_id=CONTINUED)
    _compaction(two, "three")
    _reply(two, 5)
    two.user("only prompt")  # turn 1
    _reply(two, 6)
    index_sync(roots=[tree.root])
    listed = _get(client_in, "sessions", range="custom",
                  **{"from": "2026-11-19", "to": "2026-11-21"})  # fmt: skip
    for session_id, expected in ((COMPACTED, 3), (CONTINUED, 1)):
        row = re.search(rf'<tr data-session="{session_id}">.*?</tr>', listed, re.S)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
        assert cells[5] == str(expected)  # the Turns column
        page = _get(client_in, "session", session_id)
        shown = re.search(r"<dt>Turns</dt><dd[^>]*>([^<]*)</dd>", page).group(1)
        assert shown == str(expected)
        numbers = re.findall(r'<tr class="turn" id="turn-(\d+)"', page)
        assert [n for n in numbers if n != "0"] == [
            str(n) for n in range(1, expected + 1)
        ]
    page = _get(client_in, "session", COMPACTED)
    rows = re.findall(r'<tr class="turn".*?</tr>', page, re.DOTALL)
    assert ["compacted" in row for row in rows] == [True, True, False]
    assert "2 calls" in rows[0] and "1 call " in rows[1]
    continued = _get(client_in, "session", CONTINUED)
    assert re.findall(r'<tr class="turn" id="turn-(\d+)"', continued) == ["0", "1"]


def test_it_renders_the_thread_with_subagent_nested_and_compaction(
    seeded, client_in, django_assert_max_num_queries
):
    with django_assert_max_num_queries(14):
        html = _get(client_in, "thread", RELAYED)
    spawn = html.index(f'id="entry-{seeded["spawn"]["uuid"]}"')
    nested = html.index(SUB_PHRASE)
    assert spawn < html.index('class="subagent-thread"', spawn) < nested
    assert "compaction boundary" in html and "155,000" in html
    assert "compaction summary" in html
    assert HOSTILE not in html and "&lt;script&gt;" in html


def test_it_pages_a_long_thread_and_opens_the_page_of_a_linked_entry(
    db, tmp_path, client_in
):
    from apps.dashboard.views.sessions import THREAD_PER_PAGE

    tree = ClaudeTree(tmp_path / "long")
    long = tree.transcript(session_id="long-session")
    prompts = [long.user(f"prompt number {i}") for i in range(THREAD_PER_PAGE + 20)]
    index_sync(roots=[tree.root])
    first = _get(client_in, "thread", "long-session")
    assert "prompt number 0<" in first
    assert f"prompt number {THREAD_PER_PAGE}<" not in first
    assert "page 1 of 2" in first
    late = prompts[THREAD_PER_PAGE + 5]["uuid"]
    second = _get(client_in, "thread", "long-session", entry=late, hl="number")
    assert "page 2 of 2" in second and f'id="entry-{late}"' in second
    assert "prompt <mark>number</mark> " in second
    assert "page 1 of 2" in _get(client_in, "thread", "long-session", entry="nope")


def test_it_names_the_tool_of_a_result_whose_call_is_on_the_previous_page(
    db, tmp_path, client_in
):
    from apps.dashboard.views.sessions import THREAD_PER_PAGE

    tree = ClaudeTree(tmp_path / "boundary")
    long = tree.transcript(session_id="boundary-session")
    for i in range(THREAD_PER_PAGE - 1):
        long.user(f"prompt number {i}")
    long.assistant(  # the last entry of page 1
        [{"type": "tool_use", "id": "toolu_edge", "name": "Bash",
          "input": {"command": "make check", "description": "check"}}],
        message_id="msg_edge", request_id="req_edge",
    )  # fmt: skip
    long.tool_result("toolu_edge", "all checks passed")  # the first of page 2
    index_sync(roots=[tree.root])
    second = _get(client_in, "thread", "boundary-session", page="2")
    assert "all checks passed" in second
    assert '<span class="muted">of Bash</span>' in second


def test_it_keeps_a_deleted_transcript_readable(seeded, client_in):
    html = _get(client_in, "thread", ORPHAN)
    assert "quarterly reconciliation of the ledger" in html
    assert "Reconciliation matches entries." in html


def test_it_highlights_the_hit_entry_with_escaping(seeded, client_in):
    first = seeded["main"]
    html = _get(client_in, "search", q=f'"{PHRASE}"')
    assert "<mark>flaky</mark> <mark>websocket</mark> <mark>fixture</mark>" in html
    link = re.search(r'class="hit-link" href="([^"]+)"', html).group(1)
    assert link.endswith("#entry-" + first_prompt_uuid(first))
    thread = client_in.get(link.replace("&amp;", "&").split("#")[0]).content.decode()
    entry = thread[thread.index('class="entry entry-message is-hit"') :]
    assert "<mark>websocket</mark>" in entry[:3000]
    assert "&lt;script&gt;" in entry[:3000] and HOSTILE not in thread


def _marks(html: str) -> list[str]:
    return re.findall(r"<mark>(.*?)</mark>", html)


# An advanced query in each engine's syntax finding the line below, and the words
# it has that only a plain reading marks: FTS5's operators, websearch's `or`.
ADVANCED = {
    "sqlite": (
        "NEAR(deploy rollback, 5) NOT migration OR tools : near",
        {"not", "near"},
    ),
    "postgresql": ("deploy or rollback -migration", {"or"}),
}


def test_it_highlights_the_terms_of_an_advanced_query_in_the_thread(
    db, tmp_path, client_in
):
    tree = ClaudeTree(tmp_path / "advanced")
    t = tree.transcript(cwd="/home/me/deploy", session_id="advanced-session")
    t.user("the deploy script and the rollback script are not near done or <b>x</b>")
    index_sync(roots=[tree.root])
    query, operators = ADVANCED[connection.vendor]
    html = _get(client_in, "search", q=query, advanced="1")
    assert _marks(html) == ["deploy", "rollback"]
    link = re.search(r'class="hit-link" href="([^"]+)"', html).group(1)
    assert "&amp;advanced=1" in link
    thread = client_in.get(link.replace("&amp;", "&").split("#")[0]).content.decode()
    entry = thread[thread.index("is-hit") :][:3000]
    # Operators, the NEAR distance, excluded words and words looked for only
    # in the tools column are not in the text: only the two terms are marked.
    assert set(_marks(entry)) == {"deploy", "rollback"}
    assert "<b>x</b>" not in thread and "&lt;b&gt;x&lt;/b&gt;" in entry
    plain = _get(client_in, "thread", "advanced-session", entry=t.last_uuid,
                 hl=query)  # fmt: skip
    assert operators <= set(_marks(plain))  # as words, they are words


def test_a_plain_search_highlights_its_landing_entry_as_words(db, tmp_path, client_in):
    tree = ClaudeTree(tmp_path / "plain")
    t = tree.transcript(cwd="/home/me/pool", session_id="plain-session")
    t.user("the deadlock is not flaky")
    index_sync(roots=[tree.root])

    html = _get(client_in, "thread", "plain-session", entry=t.last_uuid,
                hl="deadlock NOT flaky")  # fmt: skip

    text = html[html.index('class="prose hl-text"') :][:1000]
    assert _marks(text[: text.index("</div>")]) == ["deadlock", "not", "flaky"]


@pytest.mark.parametrize(
    "query",
    ['"', "NEAR(", "((((" * 500, "{tools}:", "<mark>x</mark>", HOSTILE, "\x00",
     '"<script>" OR x*', "x" * 10_000, "*:^-+,"],
)  # fmt: skip
def test_it_opens_the_thread_for_any_advanced_highlight(seeded, client_in, query):
    first = first_prompt_uuid(seeded["main"])
    html = _get(client_in, "thread", RELAYED, entry=first, hl=query, advanced="1")
    assert HOSTILE not in html and "<mark>x</mark>" not in html
    assert 'class="entry entry-message is-hit"' in html


def first_prompt_uuid(transcript) -> str:
    import json

    for line in transcript.path.read_text().splitlines():
        record = json.loads(line)
        if record.get("type") == "user":
            return record["uuid"]
    raise AssertionError("no prompt")


@pytest.mark.parametrize(
    "query",
    ['"', '"unbalanced', "NEAR(", "NEAR(a b", "*", "-", "- -x", "AND OR NOT",
     "tools:Bash", "🦀 emoji 🦀", "x" * 10_000, HOSTILE, "'; DROP TABLE x; --",
     "^", "(", ")", "a:b:c", "\x00"],
)  # fmt: skip
@pytest.mark.parametrize("advanced", ["", "1"])
def test_it_never_errors_on_hostile_queries(seeded, client_in, query, advanced):
    html = _get(client_in, "search", q=query, advanced=advanced)
    assert HOSTILE not in html
    assert "No results" in html or 'class="hit"' in html or "not valid FTS5" in html


@pytest.mark.sqlite_only("FTS5's syntax errors; websearch_to_tsquery has none")
def test_it_explains_bad_advanced_syntax(seeded, client_in):
    html = _get(client_in, "search", q='"unbalanced', advanced="1")
    assert "not valid FTS5 query syntax" in html and "untick Advanced" in html


def test_it_finds_with_advanced_syntax_and_filters(seeded, client_in):
    excluding = {"sqlite": "deadlock NOT pool", "postgresql": "deadlock -pool"}
    html = _get(client_in, "search", q=excluding[connection.vendor], advanced="1")
    assert "find the <mark>deadlock</mark>" in html
    tool = _get(client_in, "search", q="failed", tool="Bash")
    assert "1 <mark>failed</mark>, 12 passed" in tool
    assert "No results" in _get(client_in, "search", q="failed", tool="Edit")
    role = _get(client_in, "search", q="reconciliation", role="assistant")
    assert "<mark>Reconciliation</mark> matches" in role
    assert role.count('<li class="hit"') == 1  # the user's prompt is filtered out


def test_it_guides_on_empty_and_no_result_searches(seeded, client_in):
    assert "A star matches beginnings" in _get(client_in, "search")
    assert "No results" in _get(client_in, "search", q="zebracorn")
    blank = _get(client_in, "search", q="  \t ")  # a box left with spaces only
    assert "A star matches beginnings" in blank and "No results" not in blank


def test_it_lists_projects_with_counts_and_cost(seeded, client_in):
    html = _get(client_in, "projects")
    row = re.search(r"<tr>\s*<td class=\"mono\"><a[^>]*>/home/me/billing.*?</tr>",
                    html, re.DOTALL).group(0)  # fmt: skip
    assert re.search(r'<td class="num">1</td>', row)


def test_it_shows_todos_counts_and_an_escaped_plan(seeded, client_in):
    html = _get(client_in, "todos", session=RELAYED)
    for status in ("completed", "in_progress", "pending"):
        assert f'data-status="{status}"' in html
    assert "find deadlock" in html
    assert "<h1>Rollback plan</h1>" in html and "<strong>one</strong>" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<b>x</b>", "<p>&lt;b&gt;x&lt;/b&gt;</p>"),
        ("[a](javascript:alert(1))", "<p>[a](javascript:alert(1))</p>"),
        ('[a](https://e.x/"onmouseover=x)',
         '<p><a href="https://e.x/&quot;onmouseover=x" rel="nofollow noreferrer">'
         'a</a></p>'),  # the quote stays an entity inside the attribute
        ("[a](https://e.x/?a=1&b=2)",
         '<p><a href="https://e.x/?a=1&amp;b=2" rel="nofollow noreferrer">a</a></p>'),
        ("## T `<i>`", "<h2>T <code>&lt;i&gt;</code></h2>"),
        ("```\n<script>\n```", '<pre class="code"><code>&lt;script&gt;</code></pre>'),
        ("1. a\n2. b", "<ol><li>a</li><li>b</li></ol>"),
        ("*em* and __strong__", "<p><em>em</em> and <strong>strong</strong></p>"),
    ],
)  # fmt: skip
def test_it_renders_markdown_escaped(text: str, expected: str) -> None:
    assert str(markdown_html(text)) == expected


def test_it_shows_a_session_only_the_relay_saw(db, client_in):
    main = [exchange_create(session_id="wire-only", cost_usd=0.5, started_at=T0)]
    agent = exchange_create(session_id="wire-only", agent_id="a1", cost_usd=0.25,
                            started_at=T0 + timedelta(seconds=5))  # fmt: skip
    main.append(exchange_create(session_id="wire-only", cost_usd=0.125,
                                started_at=T0 + timedelta(seconds=9)))  # fmt: skip
    html = _get(client_in, "session", "wire-only")
    rows = re.findall(r'<tr class="turn".*?</tr>', html, re.DOTALL)
    assert len(rows) == 2  # the subagent's call counts in the turn it ran in
    assert usd(0.75) in rows[0] and usd(0.125) in rows[1]
    for exchange in [*main, agent]:
        assert reverse("dashboard:exchange-detail", args=[exchange.pk]) in html
    assert "No transcript indexed for this session" in html


@pytest.mark.parametrize("indexed", [False, True])
def test_it_links_a_session_to_its_requests_on_the_days_it_ran(
    db, tmp_path, client_in, indexed
):
    # Two months back: past the requests list's default ranges.
    old = T0 - timedelta(days=60)
    exchange = exchange_create(session_id=RELAYED, request_id="req_old", started_at=old)
    if indexed:
        tree = ClaudeTree(tmp_path / "old")
        transcript = tree.transcript(session_id=RELAYED)
        transcript.clock = -60 * 86400
        transcript.user("an old prompt")
        index_sync(roots=[tree.root])
    html = _get(client_in, "session", RELAYED)
    href = re.search(r'<a class="button" href="([^"]*)">Its requests</a>', html)
    assert "from=2026-09-21" in href.group(1)
    listed = client_in.get(href.group(1).replace("&amp;", "&"))
    assert reverse("dashboard:exchange-detail", args=[exchange.pk]) in (
        listed.content.decode()
    )


def test_it_counts_the_same_turns_for_a_session_only_the_relay_saw(db, client_in):
    at = [T0 + timedelta(seconds=n) for n in range(6)]
    exchange_create(
        session_id="wire-turns", started_at=at[0], path="/v1/messages/count_tokens"
    )  # before the first turn
    exchange_create(session_id="wire-turns", started_at=at[1])  # turn 1
    exchange_create(session_id="wire-turns", started_at=at[2], agent_id="a1")
    exchange_create(session_id="wire-turns", started_at=at[3],
                    path="/v1/messages/count_tokens")  # fmt: skip
    exchange_create(session_id="wire-turns", started_at=at[4])  # turn 2
    listed = _get(client_in, "sessions", range="custom",
                  **{"from": "2026-11-19", "to": "2026-11-21"})  # fmt: skip
    row = re.search(r'<tr data-session="wire-turns">.*?</tr>', listed, re.S)
    assert re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)[5] == "2"
    page = _get(client_in, "session", "wire-turns")
    assert re.search(r"<dt>Turns</dt><dd[^>]*>([^<]*)</dd>", page).group(1) == "2"
    numbers = re.findall(r'<tr class="turn" id="turn-(\d+)"', page)
    assert numbers == ["1", "2"]  # token counts are not calls
    assert "(3 relayed)" in page  # every call is shown, in its turn


def test_it_404s_unknown_sessions(db, client_in):
    assert client_in.get(reverse("dashboard:session", args=["nope"])).status_code == 404
    assert client_in.get(reverse("dashboard:thread", args=["nope"])).status_code == 404
