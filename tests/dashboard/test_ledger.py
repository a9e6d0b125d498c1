"""One ledger of API calls: every rule of what a call is, checked on every surface.

A world of transcripts and relayed exchanges built so that each rule has a case,
and hand-computed figures that the API, the pages and the ledger itself must all
show. Sonnet 4.5 list prices (USD per million): input 3, output 15; above 200K
prompt tokens input 6, output 22.5. Opus 4.8 in fast mode: input 10.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Sum
from django.test import Client
from django.urls import reverse

from apps.dashboard import services as data
from apps.dashboard.models import UsageRollup
from apps.dashboard.selectors import figures_of, ledger_sums
from apps.dashboard.selectors.ledger import Scope
from apps.dashboard.selectors.sessions import session_figures
from apps.indexing.services import index_sync
from apps.proxy.models import ApiCall, ApiCallDirty, Exchange
from apps.proxy.selectors import EVERYONE
from apps.proxy.services import call_merge_transcripts, call_record_exchanges
from apps.proxy.services import calls as calls_module
from tests.conftest import ROOT, database_env, wait_for
from tests.factories import exchange_build, exchange_create
from tests.indexing.conftest import T0, ClaudeTree

SONNET = "claude-sonnet-4-5-20250929"
DAY = {"from": "2026-11-20", "to": "2026-11-21"}
A = "aaaaaaaa-0000-4000-8000-000000000001"  # the original session
F = "ffffffff-0000-4000-8000-000000000002"  # forked from A: repeats rA1
D = "dddddddd-0000-4000-8000-000000000003"  # the same file under two roots
R = "eeeeeeee-0000-4000-8000-000000000004"  # relayed and transcribed
M = "bbbbbbbb-0000-4000-8000-000000000005"  # a transcript line without request id
X = "cccccccc-0000-4000-8000-000000000006"  # fast mode, unknown model, long context
S1 = "relayed-session-one"  # shares a request-id with S2 (relay only)
S2 = "relayed-session-two"


def usage(inp: int, out: int, **extra: object) -> dict:
    return {"input_tokens": inp, "output_tokens": out,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            **extra}  # fmt: skip


def cost(inp: int, out: int) -> float:
    return (inp * 3 + out * 15) / 1e6


# Every call of the world once, with its figures (the relay's where it saw it).
EXPECTED = {
    "rA1": cost(1000, 100),  # in A's and F's files: once
    "rA2": cost(2000, 200),
    "rF1": cost(500, 50),
    "rD1": cost(100, 10),  # in two config roots: once
    "rR1": 0.01,  # the relay's figure wins over the transcript's cost(1000, 100)
    "rR2": cost(300, 20),  # relay only
    "rR3": cost(400, 40),  # transcript only
    "req_M": cost(200, 30),  # the relay's; the transcript has only its message id
    "rX_fast": 100_000 * 10 / 1e6,  # opus 4.8 fast: 2x its $5 input
    "rX_long": 250_000 * 6 / 1e6,  # over 200K prompt tokens: the whole at $6
    "req_shared": cost(500, 0),  # relayed under two session ids: once
    "rS1": cost(100, 10),
}
UNPRICED = "claude-brand-new-9"  # rX_unknown: price unknown, never $0 or a guess
PROJECT_ALPHA = EXPECTED["rA1"] + EXPECTED["rA2"] + EXPECTED["rF1"]


def _write(tree: ClaudeTree, second_root: ClaudeTree) -> None:
    a = tree.transcript(cwd="/home/me/alpha", session_id=A)
    a.user("fix the migration")
    a.assistant([{"type": "text", "text": "one"}], message_id="mA1",
                request_id="rA1", usage=usage(1000, 100))  # fmt: skip
    a.assistant([{"type": "text", "text": "two"}], message_id="mA2",
                request_id="rA2", usage=usage(2000, 200))  # fmt: skip
    f = tree.transcript(cwd="/home/me/alpha", session_id=F)
    f.user("fix the migration")
    f.assistant([{"type": "text", "text": "one"}], message_id="mA1",
                request_id="rA1", usage=usage(1000, 100))  # fmt: skip
    f.user("and now the tests")
    f.assistant([{"type": "text", "text": "three"}], message_id="mF1",
                request_id="rF1", usage=usage(500, 50))  # fmt: skip
    d = tree.transcript(cwd="/home/me/delta", session_id=D)
    d.user("just one prompt")
    d.assistant([{"type": "text", "text": "ok"}], message_id="mD1",
                request_id="rD1", usage=usage(100, 10))  # fmt: skip
    copy = second_root.root / d.path.relative_to(tree.root)
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(d.path, copy)
    r = tree.transcript(cwd="/home/me/beta", session_id=R)
    r.user("relayed work")
    r.assistant([{"type": "text", "text": "r1"}], message_id="mR1",
                request_id="rR1", usage=usage(1000, 100))  # fmt: skip
    r.assistant([{"type": "text", "text": "r3"}], message_id="mR3",
                request_id="rR3", usage=usage(400, 40))  # fmt: skip
    m = tree.transcript(cwd="/home/me/beta", session_id=M)
    m.user("no request id on this line")
    m.assistant([{"type": "text", "text": "m"}], message_id="msg_M",
                request_id="", usage=usage(200, 20))  # fmt: skip
    x = tree.transcript(cwd="/home/me/gamma", session_id=X)
    x.user("prices")
    x.assistant([{"type": "text", "text": "fast"}], message_id="mXf",
                request_id="rX_fast", model="claude-opus-4-8",
                usage=usage(100_000, 0, speed="fast"))  # fmt: skip
    x.assistant([{"type": "text", "text": "?"}], message_id="mXu",
                request_id="rX_unknown", model=UNPRICED,
                usage=usage(100, 10))  # fmt: skip
    x.assistant([{"type": "text", "text": "long"}], message_id="mXl",
                request_id="rX_long", usage=usage(250_000, 0))  # fmt: skip


@pytest.fixture
def world(db, tmp_path) -> dict:
    roots = ClaudeTree(tmp_path / "root-one"), ClaudeTree(tmp_path / "root-two")
    # Relayed before its transcript was indexed: the index places it later.
    exchange_create(request_id="req_M", message_id="msg_M", session_id=M,
                    input_tokens=200, output_tokens=30)  # fmt: skip
    _write(*roots)
    index_sync(roots=[r.root for r in roots])
    relayed = {
        "rR1": exchange_create(request_id="rR1", message_id="mR1", session_id=R,
                               input_tokens=1000, output_tokens=150, cost_usd=0.01),
        "rR2": exchange_create(request_id="rR2", session_id=R, input_tokens=300,
                               output_tokens=20),
        "shared_1": exchange_create(request_id="req_shared", session_id=S1,
                                    input_tokens=500, output_tokens=0),
        "shared_2": exchange_create(request_id="req_shared", session_id=S2,
                                    input_tokens=500, output_tokens=0,
                                    started_at=T0 + timedelta(seconds=1)),
        "rS1": exchange_create(request_id="rS1", session_id=S1, input_tokens=100,
                               output_tokens=10),
    }  # fmt: skip
    # Claude Code's start-up probe and its telemetry: exchanges, never calls.
    exchange_create(method="HEAD", path="/", status_code=404, session_id="",
                    request_id="", message_id="", model="", input_tokens=0,
                    output_tokens=0, error_type="")  # fmt: skip
    exchange_create(
        path="/api/event_logging/batch",
        session_id="",
        request_id="",
        message_id="",
        model="",
        input_tokens=0,
        output_tokens=0,
    )
    return relayed


@pytest.fixture
def client_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _page(client: Client, name: str, *args: str, **params: str) -> str:
    response = client.get(reverse(f"dashboard:{name}", args=args), params)
    assert response.status_code == 200
    return response.content.decode()


def _fact(html: str, name: str) -> str:
    found = re.search(rf"<dt>{name}</dt><dd[^>]*>(.*?)</dd>", html, re.S).group(1)
    return re.sub(r"<[^>]+>", "", found).split("+")[0].strip()


def test_it_keeps_one_row_per_call_whichever_way_it_was_learnt(world):
    keys = set(ApiCall.objects.values_list("key", flat=True))
    assert keys == set(EXPECTED) | {"rX_unknown"}
    rows = {row.key: row for row in ApiCall.objects.all()}
    assert rows["rR1"].exchange_id == world["rR1"].pk  # the relay's figures
    assert rows["rR1"].output_tokens == 150 and rows["rR1"].transcript
    assert rows["rR3"].exchange_id is None and rows["rR3"].output_tokens == 40
    assert rows["req_M"].output_tokens == 30 and rows["req_M"].transcript
    # The transcript gives the relayed calls of its session their project.
    assert rows["rR2"].project_id == rows["rR3"].project_id is not None
    assert rows["req_M"].project_id == rows["rR3"].project_id
    assert rows["rX_fast"].speed == "fast"
    assert rows["rX_unknown"].cost_usd is None
    assert rows["req_shared"].session_id == S2  # the relay's later word


def test_it_shows_one_total_on_the_api(world, api):
    body = api("/api/stats/summary", **DAY).json()
    assert body["requests"] == len(EXPECTED) + 1
    assert body["errors"] == 0  # the 404 probe is not a failed call
    assert body["cost_usd"] == pytest.approx(sum(EXPECTED.values()))
    assert (body["unpriced_requests"], body["unpriced_models"]) == (1, [UNPRICED])
    assert body["fast_calls"] == 1
    by_model = {m["model"]: m for m in api("/api/stats/models", **DAY).json()}
    assert by_model["claude-opus-4-8"]["cost_usd"] == pytest.approx(1.0)
    assert by_model[UNPRICED]["unpriced_requests"] == 1


def test_it_shows_the_same_session_on_the_list_and_its_page(world, api, client_in):
    listed = {s["session_id"]: s for s in api("/api/sessions", **DAY).json()["items"]}
    for key in (A, F):  # rA1 counts in exactly one of them
        assert listed[key]["cost_usd"] >= 0
    assert listed[A]["cost_usd"] + listed[F]["cost_usd"] == pytest.approx(PROJECT_ALPHA)
    assert listed[R]["cost_usd"] == pytest.approx(
        EXPECTED["rR1"] + EXPECTED["rR2"] + EXPECTED["rR3"]
    )
    assert listed[S1]["cost_usd"] == pytest.approx(EXPECTED["rS1"])  # not negative
    assert listed[S2]["cost_usd"] == pytest.approx(EXPECTED["req_shared"])
    assert (listed[D]["turns"], listed[D]["requests"]) == (1, 1)  # not doubled
    for key, row in listed.items():
        page = _page(client_in, "session", key)
        assert _fact(page, "Cost") == f"${row['cost_usd']:,.4f}", key
        assert _fact(page, "Tokens") == f"{sum(row['tokens'].values()):,}", key
        assert _fact(page, "Turns") == str(row["turns"]), key


def test_it_sums_projects_once(world, client_in):
    html = _page(client_in, "projects")
    row = re.search(r"<a[^>]*>/home/me/alpha</a>.*?</tr>", html, re.S).group(0)
    shown = float(re.findall(r"\$([\d.]+)", row)[-1])
    # $0.01575 sits on a rounding edge: the order a database sums in tips it.
    assert shown == pytest.approx(PROJECT_ALPHA, abs=0.00006)


def test_it_falls_back_to_the_transcript_when_an_exchange_is_deleted(world, api):
    before = api("/api/stats/summary", **DAY).json()["cost_usd"]
    data.exchange_delete(queryset=Exchange.objects.filter(request_id="rR1"))
    data.exchange_delete(queryset=Exchange.objects.filter(request_id="rR2"))
    body = api("/api/stats/summary", **DAY).json()
    # rR1 now counts at the transcript's figures; rR2 (relay only) is gone.
    expected = before - EXPECTED["rR1"] + cost(1000, 100) - EXPECTED["rR2"]
    assert body["cost_usd"] == pytest.approx(expected)
    assert body["requests"] == len(EXPECTED)
    row = ApiCall.objects.get(key="rR1")
    assert (row.exchange_id, row.output_tokens) == (None, 100)


def test_it_forgets_the_transcript_side_of_a_pruned_file(world, tmp_path, api):
    (tmp_path / "root-one" / "projects" / "-home-me-gamma" / f"{X}.jsonl").unlink()
    index_sync(roots=[tmp_path / "root-one", tmp_path / "root-two"], prune=True)
    keys = set(ApiCall.objects.values_list("key", flat=True))
    assert not keys & {"rX_fast", "rX_long", "rX_unknown"}
    body = api("/api/stats/summary", **DAY).json()
    assert body["unpriced_requests"] == 0


def test_it_counts_a_relayed_call_once_whatever_order_the_sources_arrive(db, tmp_path):
    tree = ClaudeTree(tmp_path / "root")
    t = tree.transcript(session_id=R)
    t.user("hi")
    t.assistant([{"type": "text", "text": "x"}], message_id="m1",
                request_id="r1", usage=usage(10, 1))  # fmt: skip
    index_sync(roots=[tree.root])
    exchange_create(request_id="r1", message_id="m1", session_id=R)
    index_sync(roots=[tree.root], full=True)  # the transcript read again
    assert ApiCall.objects.filter(key="r1").count() == ApiCall.objects.count() == 1
    assert ApiCall.objects.get().exchange_id is not None


def test_it_rolls_up_exactly_what_it_reads_live(world):
    scope = Scope(T0 - timedelta(days=1), T0 + timedelta(days=1), viewer=EVERYONE)
    by = ("quarter", "model", "project_id", "error")
    sessions = [A, F, D, R, M, X, S1, S2]
    live = (
        ledger_sums(scope=scope, by=by),
        session_figures(session_ids=sessions, viewer=EVERYONE),
    )
    data.rollup_refresh()  # every quarter and session rolled up: none read live
    rolled = (
        ledger_sums(scope=scope, by=by),
        session_figures(session_ids=sessions, viewer=EVERYONE),
    )
    key = lambda r: tuple(r[name] or 0 for name in by)  # noqa: E731
    assert _exact([figures_of(r) for r in sorted(live[0], key=key)]) == _exact(
        [figures_of(r) for r in sorted(rolled[0], key=key)]
    )
    assert _exact(live[1]) == _exact(rolled[1])


def _exact(value: object) -> object:
    """Return a value with its money to 1e-12: the rollups sum in another order
    than a database's SUM, which changes a float's last bit, never a cent."""
    if isinstance(value, float):
        return round(value, 12)
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_exact(v) for v in value]
    return value


def test_it_shows_a_change_at_once_whether_rolled_up_or_not(world, api):
    data.rollup_refresh()
    before = api("/api/sessions", **DAY).json()["items"]
    exchange_create(request_id="late", session_id=S1, input_tokens=1000,
                    output_tokens=0, started_at=T0 - timedelta(minutes=1))  # fmt: skip
    after = {s["session_id"]: s for s in api("/api/sessions", **DAY).json()["items"]}
    s1 = next(s for s in before if s["session_id"] == S1)
    assert after[S1]["requests"] == s1["requests"] + 1
    assert after[S1]["cost_usd"] == pytest.approx(s1["cost_usd"] + cost(1000, 0))


@pytest.mark.django_db(transaction=True)
def test_it_rolls_up_what_concurrent_writers_leave_in_the_ledger(monkeypatch):
    # The relay reads a call's old quarter (none yet), then writes it. Meanwhile
    # the indexer enters the same call from its transcript, two hours later, and
    # the rollups take that quarter in. On PostgreSQL (read committed, many
    # writers) the relay's write would then move the call without marking the
    # quarter it left: that quarter's rollup would count it twice. Ledger writes
    # run one at a time, so the indexer waits for the relay instead.
    paused, resume = threading.Event(), threading.Event()
    places = calls_module._places

    def pausing_places(rows):
        found = places(rows)
        if threading.current_thread().name == "relay" and not paused.is_set():
            paused.set()
            resume.wait(2)  # the indexer's write, if it does not wait for this one
        return found

    monkeypatch.setattr(calls_module, "_places", pausing_places)
    exchange = exchange_build(request_id="req_race", started_at=T0)
    exchange.save()

    def closing(work):
        def run() -> None:
            try:
                work()
            finally:
                connection.close()

        return run

    relay = threading.Thread(
        name="relay",
        target=closing(lambda: call_record_exchanges(uids=[exchange.uid])),
    )
    relay.start()
    paused.wait(10)
    indexer = threading.Thread(
        target=closing(
            lambda: call_merge_transcripts(
                rows=[
                    {
                        "request_id": "req_race",
                        "message_id": "",
                        "uuid": "u1",
                        "at": T0 + timedelta(hours=2),
                        "model": SONNET,
                        "speed": "",
                        "usage": (10, 1, 0, 0, 0),
                        "cost_usd": 0.001,
                        "tools": "",
                        "session_id": "",
                        "agent_id": "",
                        "project_id": None,
                    }
                ]
            )  # fmt: skip
        )
    )
    indexer.start()
    indexer.join(1)  # done at once unless it waits for the relay's write
    data.rollup_refresh()
    resume.set()
    relay.join()
    indexer.join()
    data.rollup_refresh()

    ledger = Counter(ApiCall.objects.values_list("quarter", flat=True))
    rolled: Counter[int] = Counter()
    for quarter, calls in UsageRollup.objects.values_list("quarter", "calls"):
        rolled[quarter] += calls
    assert ledger == {int(T0.timestamp()) // 900: 1}
    assert rolled == ledger


@pytest.mark.django_db(transaction=True)
def test_the_rollup_watcher_goes_on_after_the_database_server_restarts(tmp_path):
    # pg_terminate_backend drops the watcher's connection, as a server restart or
    # a failover does; its next passes must reconnect and roll up again.
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL: SQLite has no server to restart")
    env = dict(
        os.environ, **database_env(), CLAUDEMON_VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="claudemon.settings.data",
    )  # fmt: skip
    command = [sys.executable, "manage.py", "rollup", "--watch", "--interval", "0.1"]
    watcher = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        exchange_create(request_id="before", started_at=T0)
        wait_for(lambda: not ApiCallDirty.objects.exists())
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone()[0] >= 1
        exchange_create(request_id="after", started_at=T0 + timedelta(hours=1))
        wait_for(lambda: not ApiCallDirty.objects.exists())
    finally:
        watcher.terminate()
        watcher.wait(10)
    assert UsageRollup.objects.aggregate(n=Sum("calls"))["n"] == 2
