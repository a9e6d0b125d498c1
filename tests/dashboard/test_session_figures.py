"""A session's figures are one definition: subagents' calls included, everywhere.

Two sessions of the same shape (two main-thread calls, a subagent with one
call), one only known from its transcripts and one relayed, whose totals are
worked out by hand below and must read the same on the sessions list, the
session page's header and the projects page. Sonnet 4.5 list prices: $3 per
million input tokens, $15 per million output tokens.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from apps.dashboard.selectors import sessions as session_selectors
from apps.indexing.services import index_sync
from apps.proxy.selectors import EVERYONE
from tests.factories import exchange_create
from tests.indexing.conftest import T0, ClaudeTree

UNRELAYED = "f16f16f1-dddd-4000-8000-000000000010"
RELAYED = "f16f16f1-dddd-4000-8000-000000000011"
PROJECTS = {UNRELAYED: "/home/me/alpha", RELAYED: "/home/me/beta"}
PREFIX = {UNRELAYED: "a", RELAYED: "b"}
# (input, output) of each transcript call: main thread, main thread, subagent.
USAGE = {"req_m1": (1000, 100), "req_m2": (2000, 200), "req_s1": (4000, 400)}

# Transcript only: each call priced from its usage.
#   req_m1: 1000 x $3 + 100 x $15 = $0.0045 per million -> 1,100 tokens
#   req_m2: 2000 x $3 + 200 x $15 = $0.0090             -> 2,200 tokens
#   req_s1: 4000 x $3 + 400 x $15 = $0.0180 (subagent)  -> 4,400 tokens
UNRELAYED_TOTAL = {"calls": 3, "tokens": 7_700, "cost": "$0.0315"}
UNRELAYED_SUBAGENT = {"tokens": "4,400", "cost": "$0.0180"}

# Relayed: the relay's figures win for the calls it saw (its own token counts
# and cost), and a side call no transcript records counts too.
#   req_m1: 1000 + 150 tokens, $0.0100
#   req_m2: 2000 + 250 tokens, $0.0200
#   req_s1: 4000 + 500 tokens, $0.0400 (the subagent's, same session id)
#   req_side: 300 + 20 tokens, $0.0010 (in no transcript)
EXCHANGES = {
    "req_m1": (1000, 150, 0.01, False),
    "req_m2": (2000, 250, 0.02, False),
    "req_s1": (4000, 500, 0.04, True),
    "req_side": (300, 20, 0.001, False),
}
RELAYED_TOTAL = {"calls": 4, "tokens": 8_220, "cost": "$0.0710"}
RELAYED_SUBAGENT = {"tokens": "4,500", "cost": "$0.0400"}


def _session_write(tree: ClaudeTree, session_id: str) -> None:
    """Write the session; its request and agent ids carry its prefix (ids are
    unique on the wire and in the index)."""
    pre = PREFIX[session_id]
    main = tree.transcript(cwd=PROJECTS[session_id], session_id=session_id)
    main.user("tidy the importer")
    for rid in ("req_m1", "req_m2"):
        main.assistant(
            [{"type": "tool_use", "id": f"toolu_{rid}", "name": "Task",
              "input": {"prompt": "look", "description": "look"}}],
            message_id=f"msg_{pre}{rid}", request_id=pre + rid, usage=_usage(rid),
        )  # fmt: skip
    sub = tree.subagent(main, agent_id=f"{pre}agent", layout="new")
    sub.user("look")
    sub.assistant([{"type": "text", "text": "looked"}], message_id=f"msg_{pre}s1",
                  request_id=f"{pre}req_s1", usage=_usage("req_s1"))  # fmt: skip
    main.user(
        [{"type": "tool_result", "tool_use_id": "toolu_req_m2", "content": "done"}],
        toolUseResult={"status": "completed", "agentId": f"{pre}agent"},
    )


def _usage(rid: str) -> dict:
    input_tokens, output = USAGE[rid]
    return {"input_tokens": input_tokens, "output_tokens": output,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}  # fmt: skip


@pytest.fixture
def world(db, tmp_path) -> None:
    tree = ClaudeTree(tmp_path / "dot-claude")
    _session_write(tree, UNRELAYED)
    _session_write(tree, RELAYED)
    index_sync(roots=[tree.root])
    for n, (rid, (input_tokens, output, cost, sub)) in enumerate(EXCHANGES.items()):
        exchange_create(
            request_id=f"b{rid}", session_id=RELAYED, input_tokens=input_tokens,
            output_tokens=output, cost_usd=cost, agent_id="bagent" if sub else "",
            started_at=T0 + timedelta(seconds=n),
        )  # fmt: skip


@pytest.fixture
def client_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _html(client: Client, name: str, *args: str, **params: str) -> str:
    response = client.get(reverse(f"dashboard:{name}", args=args), params)
    assert response.status_code == 200
    return response.content.decode()


def _cells(html: str, row_pattern: str) -> list[str]:
    row = re.search(row_pattern, html, re.S)
    assert row, row_pattern
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in cells]


def _fact(html: str, name: str) -> str:
    return re.search(rf"<dt>{name}</dt><dd[^>]*>(.*?)</dd>", html, re.S).group(1)


@pytest.mark.parametrize(
    ("session_id", "total", "subagent"),
    [(UNRELAYED, UNRELAYED_TOTAL, UNRELAYED_SUBAGENT),
     (RELAYED, RELAYED_TOTAL, RELAYED_SUBAGENT)],
)  # fmt: skip
def test_it_shows_the_same_session_totals_on_the_list_the_page_and_projects(
    world, client_in, session_id, total, subagent
):
    tokens, cost = f"{total['tokens']:,}", total["cost"]
    listed = _html(client_in, "sessions", range="custom",
                   **{"from": "2026-11-19", "to": "2026-11-21"})  # fmt: skip
    row = _cells(listed, rf'<tr data-session="{session_id}">.*?</tr>')
    assert (row[6], row[7]) == (tokens, cost)

    page = _html(client_in, "session", session_id)
    assert (_fact(page, "Tokens"), _fact(page, "Cost")) == (tokens, cost)
    assert _fact(page, "API calls").startswith(f"{total['calls']} ")
    # The subagent's own share, nested under the turn that spawned it.
    nested = re.search(r'<li class="subagent".*?</li>', page, re.S).group(0)
    shown = re.search(r"data-subagent-tokens>([^<]*)<", nested).group(1)
    cost_shown = re.search(r"data-subagent-cost>([^<]*)<", nested).group(1)
    assert (shown, cost_shown) == (subagent["tokens"], subagent["cost"])
    # The subagent's own page heads with the same share.
    own = _html(client_in, "session", f"agent-{PREFIX[session_id]}agent")
    assert (_fact(own, "Tokens"), _fact(own, "Cost")) == (
        subagent["tokens"], subagent["cost"]
    )  # fmt: skip

    projects = _html(client_in, "projects")
    path = PROJECTS[session_id]
    row = _cells(projects, rf"<tr>\s*<td class=\"mono\"><a[^>]*>{path}<.*?</tr>")
    assert (row[1], row[3], row[4]) == ("1", tokens, cost)


def test_it_sums_a_session_from_its_parts(world):
    total = session_selectors.session_page_figures(session_id=RELAYED, viewer=EVERYONE)
    subagent = total.subagents["bagent"]
    parts = {
        "main": (total.main.calls, total.main.relayed, total.main.tokens),
        "subagent": (subagent.calls, subagent.relayed, subagent.tokens),
    }
    assert parts == {
        "main": (3, 3, 1150 + 2250 + 320),  # the side call is the main thread's
        "subagent": (1, 1, 4500),
    }
    assert total.relay_only == 1  # req_side: in no transcript
    assert (total.calls, total.relayed, total.tokens) == (4, 4, 8_220)
    assert total.cost_usd == pytest.approx(0.071)
