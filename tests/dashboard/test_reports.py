"""Usage reports: periods in a time zone, blocks, and one figure on every surface.

Every call here is Sonnet 4.5 with 1,000 input tokens: $0.003 each.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from apps.dashboard.blocks import Activity, blocks_build, gaps_between
from apps.dashboard.selectors import reports, usage_summary
from apps.dashboard.selectors.ledger import Scope
from apps.proxy.selectors import EVERYONE
from tests.factories import exchange_create

CALL = 0.003


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def call(moment: str, **extra: object) -> None:
    exchange_create(started_at=at(moment), input_tokens=1000, output_tokens=0,
                    **extra)  # fmt: skip


@pytest.fixture
def late_call(db) -> None:
    """23:30 UTC on Nov 20: Nov 21 in Tokyo (+9), Nov 20 in Los Angeles (-8)."""
    call("2026-11-20T23:30:00")
    call("2026-11-20T12:00:00")


@pytest.mark.parametrize(
    ("tz", "day", "month_rows"),
    [("Asia/Tokyo", "2026-11-21", 1), ("America/Los_Angeles", "2026-11-20", 1),
     ("UTC", "2026-11-20", 1)],
)  # fmt: skip
def test_it_puts_a_late_call_on_the_zones_own_day(late_call, api, tz, day, month_rows):
    params = {"tz": tz, "from": "2026-11-19", "to": "2026-11-23"}
    daily = api("/api/usage/daily", **params).json()
    late = {row["period"]: row["calls"] for row in daily["rows"] if row["calls"]}
    assert late[day] >= 1
    if tz == "Asia/Tokyo":
        assert late == {"2026-11-20": 1, "2026-11-21": 1}
    else:
        assert late == {"2026-11-20": 2}
    weekly = api("/api/usage/weekly", **params).json()
    monthly = api("/api/usage/monthly", **params).json()
    assert len([r for r in monthly["rows"] if r["calls"]]) == month_rows
    for report in (daily, weekly, monthly):
        assert report["totals"]["calls"] == 2
        assert report["totals"]["cost_usd"] == pytest.approx(2 * CALL)


def test_it_sums_the_same_on_every_report_and_the_overview(db, api, client_in):
    for day in range(1, 29):
        for hour in (3, 23):
            call(f"2026-11-{day:02d}T{hour:02d}:30:00")
    params = {"tz": "America/New_York", "from": "2026-11-01", "to": "2026-11-29"}
    figures = {
        name: api(f"/api/usage/{name}", **params).json()["totals"]
        for name in ("daily", "weekly", "monthly", "models", "projects")
    }
    summary = api("/api/stats/summary", **params).json()
    for name, totals in figures.items():
        assert (totals["calls"], totals["cost_usd"]) == (
            summary["requests"], pytest.approx(summary["cost_usd"])
        ), name  # fmt: skip
    daily = api("/api/usage/daily", **params).json()
    assert sum(r["cost_usd"] for r in daily["rows"]) == pytest.approx(
        figures["monthly"]["cost_usd"]
    )


def test_it_makes_a_25_hour_day_when_new_york_leaves_dst(db, api):
    for moment in (
        "2026-11-01T04:30:00",
        "2026-11-02T04:30:00",
    ):  # 00:30 EDT, 23:30 EST
        call(moment)
    body = api("/api/usage/daily", tz="America/New_York",
               **{"from": "2026-11-01", "to": "2026-11-02"}).json()  # fmt: skip
    first = body["rows"][0]
    assert (first["period"], first["calls"]) == ("2026-11-01", 2)
    assert (first["start"], first["end"]) == (
        "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"
    )  # fmt: skip


def test_it_starts_weeks_on_the_chosen_day(db, api):
    call("2026-11-01T12:00:00")  # a Sunday
    params = {"from": "2026-11-01", "to": "2026-11-08"}
    monday = api("/api/usage/weekly", **params).json()["rows"]
    sunday = api("/api/usage/weekly", week_start="sunday", **params).json()["rows"]
    assert monday[0]["period"] == "2026-10-26" and monday[0]["calls"] == 1
    assert sunday[0]["period"] == "2026-11-01" and sunday[0]["calls"] == 1


# --- 5-hour blocks -----------------------------------------------------------


def _activity(*moments: str) -> list[Activity]:
    return [Activity(at(m), at(m), tokens=1000, cost_usd=CALL) for m in moments]


def test_it_starts_a_block_at_the_hour_and_a_new_one_after_five_hours():
    blocks = blocks_build(_activity(
        "2026-11-20T09:40:00", "2026-11-20T12:10:00", "2026-11-20T14:59:59",
        "2026-11-20T15:00:00",  # the second block (14:00-19:00) goes on
        "2026-11-21T02:05:00",
    ))  # fmt: skip
    assert [b.start for b in blocks] == [
        at("2026-11-20T09:00:00"), at("2026-11-20T14:00:00"),
        at("2026-11-21T02:00:00"),
    ]  # fmt: skip
    assert [b.calls for b in blocks] == [2, 2, 1]
    assert gaps_between(blocks) == [
        (at("2026-11-20T19:00:00"), at("2026-11-21T02:00:00"))
    ]


def test_it_projects_the_active_block_to_its_end():
    (block,) = blocks_build(_activity("2026-11-20T10:00:00", "2026-11-20T11:00:00"))
    now = at("2026-11-20T11:00:00")
    burn = block.burn(now)
    # $0.006 over 60 minutes: $0.006/h; 4 h left at that rate adds $0.024.
    assert burn["cost_per_hour"] == pytest.approx(0.006)
    assert burn["tokens_per_minute"] == pytest.approx(2000 / 60)
    assert burn["minutes_left"] == pytest.approx(240)
    assert burn["projected_cost_usd"] == pytest.approx(0.006 + 0.024)
    assert block.burn(at("2026-11-20T15:00:00")) is None  # the block has ended


def test_it_reports_blocks_with_gaps_and_the_limits_the_relay_saw(db):
    call("2026-11-20T09:10:00")
    call("2026-11-20T09:50:00", unified_5h_utilization=0.42,
         unified_7d_utilization=0.18, unified_status="allowed",
         unified_5h_reset=at("2026-11-20T14:00:00"))  # fmt: skip
    call("2026-11-20T20:30:00")
    scope = Scope(at("2026-11-20T00:00:00"), at("2026-11-21T00:00:00"), viewer=EVERYONE)
    now = at("2026-11-20T21:30:00")
    report = reports.report_blocks(scope=scope, zone=UTC, now=now)
    kinds = [(row["kind"], row["start"]) for row in report["rows"]]
    assert kinds == [
        ("block", at("2026-11-20T09:00:00")),
        ("gap", at("2026-11-20T14:00:00")),
        ("block", at("2026-11-20T20:00:00")),
    ]
    first = report["rows"][0]
    assert first["calls"] == 2 and first["cost_usd"] == pytest.approx(2 * CALL)
    assert first["limits"]["five_hour_utilization"] == 0.42
    assert first["limits"]["seven_day_utilization"] == 0.18
    assert report["active"]["start"] == at("2026-11-20T20:00:00")
    assert report["active"]["limits"] is None  # none seen in that block
    assert report["limits"]["five_hour_reset"] == at("2026-11-20T14:00:00")


def test_it_chains_blocks_from_before_the_range(db):
    # Calls every 30 minutes from 06:10: blocks at 06:00 and 11:00. A report
    # from 10:00 must not start a block at 10:00.
    for n in range(14):
        call((at("2026-11-20T06:10:00") + timedelta(minutes=30 * n)).isoformat()[:19])
    scope = Scope(at("2026-11-20T10:00:00"), at("2026-11-20T14:00:00"), viewer=EVERYONE)
    report = reports.report_blocks(scope=scope, zone=UTC, now=at("2026-11-21T00:00:00"))
    starts = [row["start"] for row in report["rows"]]
    assert starts == [at("2026-11-20T06:00:00"), at("2026-11-20T11:00:00")]


@pytest.mark.parametrize(
    ("params", "calls"), [({"session": "s-a"}, [1]), ({"project": "1"}, [])]
)
def test_it_reports_blocks_of_one_session_or_project(db, api, params, calls):
    # The rollups keep neither: the blocks' models come from the ledger then.
    call("2026-11-20T09:10:00", session_id="s-a")
    call("2026-11-20T09:20:00", session_id="s-b")
    span = {"from": "2026-11-20T00:00:00Z", "to": "2026-11-21T00:00:00Z"}
    response = api("/api/usage/blocks", **span, **params)
    assert response.status_code == 200, response.content[:300]
    rows = response.json()["rows"]
    assert [row["calls"] for row in rows] == calls
    assert all(row["models"] == ["claude-sonnet-4-5-20250929"] for row in rows)


# --- the command ---------------------------------------------------------------


def _usage(*args: str) -> str:
    out = io.StringIO()
    call_command("usage", *args, "--no-refresh", stdout=out)
    return out.getvalue()


def test_it_prints_the_same_figures_as_the_api(late_call, api):
    text = _usage("daily", "--since", "2026-11-20", "--until", "2026-11-21",
                  "--tz", "Asia/Tokyo", "--json")  # fmt: skip
    document = json.loads(text)
    same = api("/api/usage/daily", tz="Asia/Tokyo",
               **{"from": "2026-11-20", "to": "2026-11-22"}).json()  # fmt: skip
    assert document == same
    table = _usage("daily", "--since", "2026-11-20", "--until", "2026-11-21",
                   "--tz", "Asia/Tokyo")  # fmt: skip
    assert "2026-11-21" in table and "Total" in table and "$0.0060" in table


@pytest.mark.parametrize("report", ["weekly", "monthly", "session", "project",
                                    "model", "blocks"])  # fmt: skip
def test_it_prints_every_report(late_call, report):
    args = ["--since", "2026-11-01", "--until", "2026-11-30", "--tz", "UTC"]
    document = json.loads(_usage(report, *args, "--json"))
    assert document["report"] in (report, f"{report}s", "blocks")
    assert _usage(report, *args)


def test_it_says_when_there_is_nothing_to_report(db):
    text = _usage("daily", "--since", "2026-11-01", "--until", "2026-11-02")
    assert text.startswith("No calls between")


def test_it_refuses_a_missing_database_with_a_message(tmp_path, settings):
    from django.core.management import CommandError

    settings.DATABASES["default"]["NAME"] = str(tmp_path / "none.sqlite3")
    with pytest.raises(CommandError, match="No claudemon database"):
        call_command("usage", "daily", "--no-refresh")


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--since", "yesterday"], "not a date"), (["--tz", "Mars/Olympus"], "--tz"),
     (["--since", "2026-11-05", "--until", "2026-11-01"], "after"),
     (["--project", "nowhere"], "matches none")],
)  # fmt: skip
def test_it_rejects_bad_options_with_a_message(db, args, message):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match=message):
        call_command("usage", "daily", "--no-refresh", *args)


# --- the page ------------------------------------------------------------------


@pytest.fixture
def client_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("report", ["daily", "weekly", "monthly", "sessions",
                                    "projects", "models", "blocks"])  # fmt: skip
def test_it_renders_every_report_page(late_call, client_in, report):
    response = client_in.get(reverse("dashboard:usage"), {
        "report": report, "range": "custom", "from": "2026-11-19", "to": "2026-11-22",
    })  # fmt: skip
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="report-table"' in html
    assert "$0.0060" in html  # both calls, whatever the report


def test_it_keeps_the_overview_and_the_daily_page_in_step(late_call):
    scope = Scope(at("2026-11-19T00:00:00"), at("2026-11-22T00:00:00"), viewer=EVERYONE)
    summary = usage_summary(scope=scope)
    daily = reports.report_periods(scope=scope, zone=UTC, report="daily")
    assert summary["cost_usd"] == pytest.approx(daily["totals"]["cost_usd"])
