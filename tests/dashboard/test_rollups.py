"""Stats rollups: ranges of two days or more answer exactly as a live scan does.

Each API answer over a multi-day range is computed twice, from the rollups
(hours and days filled on the first read) and with rollups switched off (the
live SQL that test_stats.py checks against hand-computed numbers), and must be
equal: integers and percentiles exactly, float sums up to addition order.
"""

from __future__ import annotations

import io
import math
import random
import re
from datetime import UTC, datetime, timedelta

import pytest

from apps.dashboard import services
from apps.dashboard.models import RollupDay, RollupHour, SessionRollup
from apps.dashboard.selectors import usage
from apps.dashboard.selectors.rollups import SETTLE, rollup_plan
from apps.dashboard.selectors.usage import _kth
from apps.proxy.models import Exchange
from tests.factories import exchange_create

SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"
OPUS = "claude-opus-4-8"
# New York leaves DST on 2026-11-01 at 06:00 UTC; edges are off the hour.
RANGE = {"from": "2026-10-30T03:17:00Z", "to": "2026-11-02T21:45:30Z"}
SPAN_START = datetime(2026, 10, 29, 20, 0, tzinfo=UTC)
SPAN_HOURS = 4 * 24  # of exchanges


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def month(db):
    """~300 varied exchanges over four days around New York's DST change."""
    rng = random.Random(3)
    no_first_byte = []
    for index in range(300):
        started = SPAN_START + timedelta(seconds=rng.randrange(SPAN_HOURS * 3600))
        roll = rng.random()
        status, error, state = 200, "", "complete"
        if roll < 0.05:
            status, error = 529, "overloaded_error"
        elif roll < 0.08:
            status, error = 429, "rate_limit_error"
        elif roll < 0.10:
            status, state = None, "upstream_error"
        elif roll < 0.12:
            error = "overloaded_error"  # mid-stream, after a 200
        elif roll < 0.14:
            status, state = 500, "complete"
        made = exchange_create(
            started_at=started,
            model=rng.choice([SONNET, SONNET, HAIKU, OPUS]),
            session_id=rng.choice(["s-a", "s-b", "s-c", "s-d", ""]),
            agent_id=rng.choice(["", "", "agent-1"]),
            path=rng.choice(["/v1/messages"] * 5 + ["/v1/messages/count_tokens"]),
            input_tokens=rng.randrange(0, 3000),
            output_tokens=rng.randrange(0, 900),
            cache_read_tokens=rng.choice([0, rng.randrange(1, 90_000)]),
            cache_write_5m_tokens=rng.choice([0, 0, rng.randrange(1, 5000)]),
            cache_write_1h_tokens=rng.choice([0, 0, 0, rng.randrange(1, 3000)]),
            # integers repeat, so ranks among equal values are exercised
            ttfb_ms=float(rng.randrange(50, 90)),
            duration_ms=float(rng.randrange(100, 400)),
            status_code=status,
            error_type=error,
            state=state,
            tools_called=(
                {t: rng.randint(1, 3) for t in rng.sample(["Bash", "Read", "Edit"], 2)}
                if roll > 0.6
                else {}
            ),
        )
        if roll < 0.10:
            no_first_byte.append(made.pk)
        if index % 50 == 0:  # a few legacy rows with a non-object tools value
            Exchange.objects.filter(pk=made.pk).update(tools_called=[])
    Exchange.objects.filter(pk__in=no_first_byte).update(ttfb_ms=None)


CALLS = [
    ("/api/stats/summary", {}),
    ("/api/stats/performance", {}),
    ("/api/stats/models", {}),
    ("/api/stats/tools", {}),
    ("/api/sessions", {"limit": 2}),
    ("/api/sessions", {"limit": 2, "offset": 2}),
    ("/api/sessions", {"limit": 2, "offset": 9}),
    ("/api/stats/timeseries", {"bucket": "hour"}),
    ("/api/stats/timeseries", {"bucket": "day", "tz": "America/New_York"}),
    ("/api/stats/timeseries", {"bucket": "hour", "tz": "America/New_York"}),
    ("/api/stats/timeseries", {"bucket": "day", "tz": "Asia/Kolkata"}),
    ("/api/stats/timeseries", {"bucket": "hour", "tz": "Asia/Kathmandu"}),
]


def live(api, monkeypatch, path: str, params: dict):
    """Answer with rollups switched off (the live SQL of selectors.usage)."""
    with monkeypatch.context() as patch:
        patch.setattr(usage, "rollup_plan", lambda **kwargs: None)
        response = api(path, **params)
    assert response.status_code == 200, response.content
    return response.json()


def assert_same(got, want, where: str = "") -> None:
    if isinstance(want, float) and isinstance(got, float):
        assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-15), where
    elif isinstance(want, dict):
        assert list(got) == list(want), where
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for index, (mine, theirs) in enumerate(zip(got, want, strict=True)):
            assert_same(mine, theirs, f"{where}[{index}]")
    else:
        assert got == want, where


@pytest.mark.parametrize(("path", "params"), CALLS)
def test_it_answers_like_the_live_scan(month, api, monkeypatch, path, params):
    want = live(api, monkeypatch, path, {**RANGE, **params})
    for _ in range(2):  # the read that fills the rollups, then one that uses them
        got = api(path, **RANGE, **params).json()
        assert_same(got, want, path)
    assert RollupHour.objects.count() >= 80  # of the range's 89 whole hours
    assert set(RollupDay.objects.values_list("day", flat=True)) == {
        at("2026-10-31T00:00:00").timestamp() // 86400,
        at("2026-11-01T00:00:00").timestamp() // 86400,
    }


def test_it_reads_a_known_range_from_rollups(db, api):
    values = [float(v) for v in range(10, 101, 10)]
    for index, value in enumerate(values):  # over three days, two models
        exchange_create(
            started_at=at("2026-11-10T01:20:00") + timedelta(hours=7 * index),
            model=SONNET if index % 2 else HAIKU, duration_ms=value, ttfb_ms=value,
            input_tokens=100, output_tokens=10, session_id=f"s{index % 3}",
            tools_called={"Bash": 2} if index < 4 else {},
        )  # fmt: skip
    span = {"from": "2026-11-10T00:00:00Z", "to": "2026-11-13T00:00:00Z"}
    body = api("/api/stats/performance", **span).json()
    overall = body["overall"]["duration_ms"]
    assert RollupHour.objects.count() == 64  # 01:00 on the 10th to 16:00 on the 12th
    assert (overall["count"], overall["p50"], overall["p90"]) == (10, 50.0, 90.0)
    assert (overall["p95"], overall["p99"]) == (100.0, 100.0)
    haiku = next(m for m in body["models"] if m["model"] == HAIKU)["duration_ms"]
    assert (haiku["p50"], haiku["p90"], haiku["p99"]) == (50.0, 90.0, 90.0)
    summary = api("/api/stats/summary", **span).json()
    assert summary["requests"] == 10
    assert summary["tokens"]["input"] == 1000
    assert api("/api/stats/tools", **span).json() == [
        {"tool": "Bash", "calls": 8, "exchanges": 4}
    ]
    sessions = api("/api/sessions", **span).json()
    assert sessions["count"] == 3
    assert [s["session_id"] for s in sessions["items"]] == ["s0", "s2", "s1"]
    assert [s["requests"] for s in sessions["items"]] == [4, 3, 3]


def test_it_sees_an_exchange_recorded_late(month, api, monkeypatch):
    api("/api/stats/summary", **RANGE)  # fills the rollups
    marked = RollupHour.objects.count()
    # A recording replayed from the relay's spill file lands days late.
    exchange_create(started_at=at("2026-10-31T10:05:00"), input_tokens=777)
    got = api("/api/stats/summary", **RANGE).json()
    want = live(api, monkeypatch, "/api/stats/summary", RANGE)
    assert_same(got, want)
    assert got["tokens"]["input"] == want["tokens"]["input"]
    assert RollupHour.objects.count() == marked  # that hour was rebuilt


def test_it_forgets_deleted_exchanges(month, api, monkeypatch):
    before = api("/api/stats/summary", **RANGE).json()
    hour = int(at("2026-10-31T10:00:00").timestamp()) // 3600
    victims = Exchange.objects.filter(
        started_at__gte=at("2026-10-31T10:00:00"),
        started_at__lt=at("2026-10-31T11:00:00"),
    )
    gone = victims.count()
    assert gone and RollupHour.objects.filter(hour=hour).exists()
    services.exchange_delete(queryset=victims)
    assert not RollupHour.objects.filter(hour=hour).exists()
    assert not SessionRollup.objects.filter(day=hour // 24).exists()
    got = api("/api/stats/summary", **RANGE).json()
    assert got["requests"] == before["requests"] - gone
    assert_same(got, live(api, monkeypatch, "/api/stats/summary", RANGE))


def test_it_reads_hours_with_an_exchange_in_progress_live(month, api, monkeypatch):
    open_call = exchange_create(
        started_at=at("2026-11-01T12:30:00"), state="in_progress", status_code=None,
        input_tokens=0, output_tokens=0,
    )  # fmt: skip
    api("/api/stats/models", **RANGE)
    hour = int(at("2026-11-01T12:00:00").timestamp()) // 3600
    assert not RollupHour.objects.filter(hour=hour).exists()
    Exchange.objects.filter(pk=open_call.pk).update(  # the relay finishes it
        state="complete", status_code=200, input_tokens=5000, duration_ms=900.0
    )
    got = api("/api/stats/models", **RANGE).json()
    assert_same(got, live(api, monkeypatch, "/api/stats/models", RANGE))
    summary = api("/api/stats/summary", **RANGE).json()
    assert_same(summary, live(api, monkeypatch, "/api/stats/summary", RANGE))


def test_it_never_rolls_up_the_last_minutes(db, api, monkeypatch):
    now = datetime.now(UTC)
    recent = now - SETTLE / 2
    exchange_create(started_at=now - timedelta(days=3))
    exchange_create(started_at=recent, input_tokens=123)
    span = {"from": (now - timedelta(days=4)).isoformat(), "to": now.isoformat()}
    got = api("/api/stats/summary", **span).json()
    assert got["requests"] == 2 and got["tokens"]["input"] == 223
    marked = set(RollupHour.objects.values_list("hour", flat=True))
    assert marked and int(recent.timestamp()) // 3600 not in marked
    assert max(marked) < int((now - SETTLE).timestamp()) // 3600


@pytest.mark.parametrize(
    ("path", "params"),
    [("/api/stats/summary", {"status": "5xx"}),
     ("/api/stats/summary", {"session": "s-a"}),
     ("/api/stats/summary", {"kind": "other"}),
     ("/api/stats/summary", {"streaming": "false"}),
     ("/api/stats/summary", {"tool": "Bash"}),
     ("/api/stats/summary", {"model": SONNET, "family": "claude-haiku"}),
     ("/api/stats/tools", {"model": SONNET}),  # tool rollups are not per model
     ("/api/sessions", {"family": "claude-haiku"})],
)  # fmt: skip
def test_it_scans_filtered_ranges_live(month, api, monkeypatch, path, params):
    got = api(path, **RANGE, **params).json()
    assert RollupHour.objects.count() == 0
    assert got == live(api, monkeypatch, path, {**RANGE, **params})


MODEL_CALLS = [
    ("/api/stats/summary", {}),
    ("/api/stats/performance", {}),
    ("/api/stats/models", {}),
    ("/api/stats/timeseries", {"bucket": "hour"}),
    ("/api/stats/timeseries", {"bucket": "day", "tz": "America/New_York"}),
    ("/api/stats/timeseries", {"bucket": "day", "tz": "Asia/Kolkata"}),
]


@pytest.mark.parametrize(
    "model_filter",
    # LIKE folds ASCII case on SQLite, so a family matches in any case; "_" is
    # a literal there, not a wildcard.
    [{"model": SONNET}, {"model": "claude-nothing"}, {"family": "claude-haiku"},
     {"family": "CLAUDE-OPUS"}, {"family": "claude_"}],
)  # fmt: skip
@pytest.mark.parametrize(("path", "params"), MODEL_CALLS)
def test_it_rolls_up_ranges_filtered_by_model(
    month, api, monkeypatch, path, params, model_filter
):
    query = {**RANGE, **params, **model_filter}
    want = live(api, monkeypatch, path, query)
    for _ in range(2):  # the read that fills the rollups, then one that uses them
        assert_same(api(path, **query).json(), want, path)
    assert RollupHour.objects.count() >= 80


def test_it_scans_short_ranges_live(month, api):
    api("/api/stats/summary", **{"from": "2026-10-31T00:00:00Z", "to": "2026-11-01"})
    assert RollupHour.objects.count() == 0


def test_it_plans_nothing_for_an_empty_database(db):
    from apps.dashboard import schemas

    filters = schemas.ExchangeFilter.model_validate(RANGE)
    plan = rollup_plan(filters=filters)
    assert plan is not None and plan.days == []
    assert RollupHour.objects.count() == 0


@pytest.mark.parametrize(
    ("lists", "k"),
    [([[1.0]], 1), ([[1.0, 2.0], [1.5]], 2), ([[1.0, 1.0], [1.0]], 3),
     ([[5.0, 6.0], [1.0, 2.0, 3.0]], 4), ([[2.0, 2.0, 9.0], [2.0, 3.0]], 4),
     ([[2.0, 2.0, 9.0], [2.0, 3.0]], 5), ([[], [4.0, 7.0]], 1)],
)  # fmt: skip
def test_it_selects_the_kth_value_across_sorted_lists(lists, k):
    assert _kth(lists, k) == sorted(v for values in lists for v in values)[k - 1]


def test_it_scans_live_when_the_plan_changed_before_reading(month, api, monkeypatch):
    from apps.dashboard import schemas
    from apps.dashboard.selectors.rollups import rollup_read

    filters = schemas.ExchangeFilter.model_validate(RANGE)
    plan = rollup_plan(filters=filters)
    with rollup_read(plan=plan) as holds:
        assert holds
    victims = Exchange.objects.filter(started_at__lt=at("2026-10-31T10:30:00"))
    services.exchange_delete(
        queryset=victims.filter(started_at__gte=at("2026-10-31T10:00:00"))
    )
    with rollup_read(plan=plan) as holds:
        assert not holds  # an hour went: this plan would miss its exchanges


@pytest.mark.django_db(transaction=True)
def test_it_reads_rollups_in_a_snapshot_of_its_own(month, api, monkeypatch):
    from django.db import connection

    assert not connection.in_atomic_block  # rollup_read opens its own
    want = live(api, monkeypatch, "/api/stats/summary", RANGE)
    for _ in range(2):
        assert_same(api("/api/stats/summary", **RANGE).json(), want)
    assert RollupHour.objects.count() >= 80
    assert not connection.in_atomic_block


def test_it_reads_hourly_latencies_when_no_whole_day_is_rolled_up(db, api, monkeypatch):
    for minute, value in ((750, 30.0), (1210, 10.0), (1310, 20.0), (2030, 40.0)):
        exchange_create(
            started_at=at("2026-11-10T00:00:00") + timedelta(minutes=minute),
            duration_ms=value, ttfb_ms=value,
        )  # fmt: skip
    span = {"from": "2026-11-10T00:00:00Z", "to": "2026-11-13T00:00:00Z"}
    got = api("/api/stats/performance", **span).json()
    assert RollupHour.objects.count() == 22 and RollupDay.objects.count() == 0
    assert got == live(api, monkeypatch, "/api/stats/performance", span)
    assert got["overall"]["duration_ms"]["count"] == 4
    assert got["overall"]["duration_ms"]["p50"] == 20.0


# --- the pages' reads: top sessions, counts, latency per bucket, slowest ------


def _page_filter(**extra):
    from apps.dashboard import schemas

    return schemas.ExchangeFilter.model_validate({**RANGE, **extra})


def _both(monkeypatch, read, *, rolled: bool = True):
    """Return read() from rollups (filled first) and with rollups switched off."""
    got = read()
    assert (RollupHour.objects.count() >= 80) == rolled
    with monkeypatch.context() as patch:
        patch.setattr(usage, "rollup_plan", lambda **kwargs: None)
        want = read()
    return got, want


def test_it_ranks_top_sessions_like_the_live_scan(month, monkeypatch):
    from apps.dashboard import page_selectors

    filters = _page_filter()
    got, want = _both(
        monkeypatch, lambda: page_selectors.session_top_by_cost(filters=filters)
    )
    assert sorted(row["session_id"] for row in want) == ["s-a", "s-b", "s-c", "s-d"]
    assert_same(got, want)


def test_it_counts_requests_and_errors_like_the_live_scan(month, monkeypatch):
    filters = _page_filter()
    got, want = _both(monkeypatch, lambda: usage.request_counts(filters=filters))
    assert got == want
    assert (
        want[0]
        == Exchange.objects.filter(
            started_at__gte=filters.start, started_at__lt=filters.end
        ).count()
    )
    assert set(want[1]) >= {"overloaded_error", "rate_limit_error", "http_500"}


@pytest.mark.parametrize("limit", [1, 5, 15, 400])
def test_it_finds_the_slowest_calls_like_the_live_scan(month, monkeypatch, limit):
    from apps.dashboard import page_selectors

    filters = _page_filter()
    got, want = _both(
        monkeypatch,
        lambda: [
            row.pk
            for row in page_selectors.exchange_slowest(filters=filters, limit=limit)
        ],
    )
    finished = Exchange.objects.filter(
        started_at__gte=filters.start, started_at__lt=filters.end
    ).exclude(duration_ms=None)
    assert got == want and len(want) == min(limit, finished.count())


@pytest.mark.parametrize(
    ("zone", "unit"),
    [("UTC", "day"), ("America/New_York", "day"), ("America/New_York", "hour"),
     ("Europe/Paris", "day"), ("Asia/Kolkata", "day")],
)  # fmt: skip
def test_it_picks_latency_percentiles_per_bucket_like_the_live_scan(
    month, monkeypatch, zone, unit
):
    from zoneinfo import ZoneInfo

    from apps.dashboard import page_selectors

    filters = _page_filter(tz=zone)
    edges = usage.bucket_edges(
        start=filters.start, end=filters.end, zone=ZoneInfo(zone), unit=unit
    )
    # Kolkata's midnights fall on half hours, inside rolled-up hours: live.
    got, want = _both(
        monkeypatch,
        lambda: page_selectors.latency_by_bucket(filters=filters, edges=edges),
        rolled=zone != "Asia/Kolkata",
    )
    assert got == want
    assert (
        sum(row["count"] for row in want["duration_ms"])
        == Exchange.objects.filter(
            started_at__gte=filters.start, started_at__lt=filters.end
        ).count()
    )


@pytest.mark.parametrize("page", ["dashboard:overview", "dashboard:performance"])
@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_it_renders_a_page_from_rollups_as_from_the_live_scan(
    month, user_client, monkeypatch, page, zone
):
    from django.urls import reverse

    user_client.cookies["tz"] = zone
    params = {"range": "custom", "from": "2026-10-30", "to": "2026-11-02"}

    def html() -> str:  # without the logout form's CSRF token, new per render
        text = user_client.get(reverse(page), params).content.decode()
        return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", text)

    got, want = _both(monkeypatch, html)
    assert "overloaded_error" in want or page.endswith("overview")
    assert got == want


def test_it_fills_every_settled_hour_ahead_of_reads(month, api, monkeypatch):
    from django.core.management import call_command

    from apps.dashboard.selectors import rollups

    out = io.StringIO()
    call_command("rollup", stdout=out)
    # 2026-10-29 20:00 to 2026-11-02 19:00: the hours holding exchanges.
    assert RollupHour.objects.count() == SPAN_HOURS
    assert out.getvalue().startswith(f"{SPAN_HOURS} hours rolled up in ")
    assert RollupDay.objects.count() == 3  # Oct 30, 31 and Nov 1 are whole

    def built(**kwargs):
        raise AssertionError("a read built rollups after the fill")

    monkeypatch.setattr(rollups, "_hours_build", built)
    monkeypatch.setattr(rollups, "_days_build", built)
    got = api("/api/stats/summary", **RANGE).json()
    assert_same(got, live(api, monkeypatch, "/api/stats/summary", RANGE))


def test_it_reuses_merged_whole_days_until_their_hours_change(month, api, monkeypatch):
    from apps.dashboard.selectors import rolled, rollups

    # Rollup writes by another process (the rollup --watch one) don't reach
    # this process's memory: only the hours' markers can tell it.
    monkeypatch.setattr(rollups, "_merged_clear", lambda: None)
    rollups._MERGED.clear()
    want = live(api, monkeypatch, "/api/stats/performance", RANGE)
    assert_same(api("/api/stats/performance", **RANGE).json(), want)
    merges = []
    real = rolled._days_merged
    monkeypatch.setattr(
        rolled, "_days_merged", lambda days: merges.append(days) or real(days)
    )
    assert_same(api("/api/stats/performance", **RANGE).json(), want)
    assert merges == []  # the same whole days: merged from memory
    exchange_create(  # lands late in a whole day, slower than anything there
        started_at=at("2026-10-31T10:05:00"), duration_ms=5000.0, ttfb_ms=4000.0
    )
    got = api("/api/stats/performance", **RANGE).json()
    assert len(merges) == 1
    assert_same(got, live(api, monkeypatch, "/api/stats/performance", RANGE))
    assert (
        got["overall"]["duration_ms"]["count"]
        == want["overall"]["duration_ms"]["count"] + 1
    )


def test_it_reuses_closed_buckets_until_their_hours_change(month, monkeypatch):
    from zoneinfo import ZoneInfo

    from apps.dashboard import page_selectors
    from apps.dashboard.selectors import rolled, rollups

    monkeypatch.setattr(rollups, "_merged_clear", lambda: None)  # another process
    rollups._BUCKETS.clear()
    filters = _page_filter(tz="America/New_York")
    edges = usage.bucket_edges(
        start=filters.start, end=filters.end, zone=ZoneInfo(filters.tz), unit="day"
    )

    def read():
        return page_selectors.latency_by_bucket(filters=filters, edges=edges)

    got, want = _both(monkeypatch, read)
    assert got == want
    built = []
    real = rolled._hour_values
    monkeypatch.setattr(
        rolled, "_hour_values", lambda **kw: built.append(kw) or real(**kw)
    )
    assert read() == want and built == []  # closed days: from memory
    exchange_create(  # lands late, in a closed day
        started_at=at("2026-10-31T16:05:00"), model="claude-new", duration_ms=9000.0
    )
    got, want = _both(monkeypatch, read)
    assert got == want and len(built) == 1  # only that day's bucket again
    new = [row for row in got["duration_ms"] if row["model"] == "claude-new"]
    assert [(row["count"], row["p95"]) for row in new] == [(1, 9000.0)]


@pytest.mark.parametrize(
    "params",
    [{"bucket": "hour"}, {"bucket": "hour", "tz": "America/New_York"},
     {"bucket": "day", "tz": "America/New_York"}, {"bucket": "hour", "model": HAIKU},
     {"bucket": "hour", "family": "claude-opus"}],
)  # fmt: skip
def test_it_reuses_closed_series_buckets_until_their_hours_change(
    month, api, monkeypatch, params
):
    from apps.dashboard.selectors import rolled, rollups

    monkeypatch.setattr(rollups, "_merged_clear", lambda: None)  # another process
    rollups._SERIES.clear()
    query = {**RANGE, **params}
    want = live(api, monkeypatch, "/api/stats/timeseries", query)
    # Another filter's buckets over the same hours are kept apart.
    bucket = {key: params[key] for key in ("bucket", "tz") if key in params}
    api("/api/stats/timeseries", **RANGE, **bucket, family="claude-sonnet")
    reads = []
    real = rolled.slot_rows
    monkeypatch.setattr(
        rolled, "slot_rows", lambda **kw: reads.append(kw.get("hours")) or real(**kw)
    )
    for _ in range(2):  # fills memory with the closed buckets, then reads it
        assert_same(api("/api/stats/timeseries", **query).json(), want)
    whole_day = int(at("2026-10-31T00:00:00").timestamp()) // 3600
    assert reads[0] is None  # every hour once
    assert whole_day not in reads[1] and len(reads[1]) <= 2 * 24  # open ones only
    exchange_create(  # lands late, in a closed bucket
        started_at=at("2026-10-31T10:05:00"), model=HAIKU, input_tokens=777
    )
    exchange_create(started_at=at("2026-10-31T10:07:00"), model=OPUS, input_tokens=5)
    got = api("/api/stats/timeseries", **query).json()
    assert reads[2] is None  # that bucket's hour changed: every hour read again
    now = live(api, monkeypatch, "/api/stats/timeseries", query)
    assert_same(got, now)
    assert sum(b["tokens"]["input"] for b in now["buckets"]) > sum(
        b["tokens"]["input"] for b in want["buckets"]
    )


def test_it_keeps_watching_when_a_pass_finds_the_database_busy(month, monkeypatch):
    from django.core.management import call_command
    from django.db import OperationalError

    from apps.dashboard.management.commands import rollup as command

    passes, real = [], command.rollup_fill

    def fill():
        passes.append(1)
        if len(passes) == 1:
            raise OperationalError("database is locked")
        return real()

    def sleep(seconds):
        if len(passes) == 2:
            raise KeyboardInterrupt  # Ctrl-C after the second pass

    monkeypatch.setattr(command, "rollup_fill", fill)
    monkeypatch.setattr(command.time, "sleep", sleep)
    err = io.StringIO()
    call_command("rollup", "--watch", "--interval", "1", stderr=err)
    assert len(passes) == 2
    assert "pass failed, retrying later: database is locked" in err.getvalue()
    assert RollupHour.objects.count() == SPAN_HOURS  # the second pass filled them
