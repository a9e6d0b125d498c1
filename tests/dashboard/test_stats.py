"""The stats API against hand-computed numbers for a seeded set of exchanges.

Prices (USD per million): claude-sonnet-4-5 in 3, 5m write 3.75, 1h write 6,
cache read 0.30, out 15; claude-haiku-4-5 in 1, out 5. Every API test runs twice
(the `api` fixture): reading the ledger alone, and through the rollups.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from ninja.responses import NinjaJSONEncoder

from apps.dashboard import schemas, selectors
from apps.dashboard.selectors import sessions as session_selectors
from apps.dashboard.selectors.ledger import scope_of
from apps.proxy import services
from apps.proxy.models import Exchange
from apps.proxy.selectors import EVERYONE
from tests.factories import exchange_create

SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"
S1 = "aaaaaaaa-0000-0000-0000-000000000001"
S2 = "aaaaaaaa-0000-0000-0000-000000000002"
DAY = {"from": "2026-11-20T00:00:00Z", "to": "2026-11-21T00:00:00Z"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def seeded(db):
    """Six exchanges on 2026-11-20 (UTC) and two just outside the range."""
    exchange_create(  # E1 cost (100*3 + 200*3.75 + 1000*0.3 + 50*15)/1e6 = 0.0021
        started_at=at("2026-11-20T09:00:00"), model=SONNET, input_tokens=100,
        output_tokens=50, cache_read_tokens=1000, cache_write_5m_tokens=200,
        ttfb_ms=100.0, duration_ms=1000.0, tools_called={"Bash": 2, "Read": 1},
        session_id=S1,
    )  # fmt: skip
    # E2 subagent, cost (10*3 + 100*6 + 3000*0.3 + 20*15)/1e6 = 0.00183
    exchange_create(
        started_at=at("2026-11-20T09:30:00"), model=SONNET, input_tokens=10,
        output_tokens=20, cache_read_tokens=3000, cache_write_1h_tokens=100,
        ttfb_ms=200.0, duration_ms=2000.0, tools_called={"Bash": 1}, session_id=S1,
        agent_id="a1",
    )  # fmt: skip
    exchange_create(  # E3 529 overloaded, cost 1000*1/1e6 = 0.001
        started_at=at("2026-11-20T10:15:00"), model=HAIKU, input_tokens=1000,
        output_tokens=0, ttfb_ms=300.0, duration_ms=3000.0, status_code=529,
        error_type="overloaded_error", session_id=S2,
    )  # fmt: skip
    exchange_create(  # E4 429, not streaming, cost (500*1 + 100*5)/1e6 = 0.001
        started_at=at("2026-11-20T11:00:00"), model=HAIKU, input_tokens=500,
        output_tokens=100, ttfb_ms=400.0, duration_ms=4000.0, status_code=429,
        error_type="rate_limit_error", session_id=S2, is_streaming=False,
    )  # fmt: skip
    exchange_create(  # E5 count_tokens: not a turn, cost 0
        started_at=at("2026-11-20T23:59:00"), model=HAIKU, input_tokens=0,
        output_tokens=0, ttfb_ms=50.0, duration_ms=60.0, session_id=S2,
        path="/v1/messages/count_tokens", is_streaming=False,
    )  # fmt: skip
    failed = exchange_create(  # E6 relay failed upstream: no status, no session
        started_at=at("2026-11-20T12:00:00"), model=SONNET, input_tokens=0,
        output_tokens=0, duration_ms=500.0, status_code=None,
        state="upstream_error", session_id="",
    )  # fmt: skip
    # ... and no first byte (the factory derives first_byte_at from ttfb_ms)
    Exchange.objects.filter(pk=failed.pk).update(ttfb_ms=None, first_byte_at=None)
    services.call_record_exchanges(uids=[failed.uid])
    for outside in ("2026-11-21T00:00:00", "2026-11-19T23:59:59"):  # end exclusive
        exchange_create(started_at=at(outside), model=SONNET, session_id=S1)


def test_it_sums_the_summary(seeded, api):
    body = api("/api/stats/summary", **DAY).json()
    assert body["requests"] == 5  # E5 counts tokens: listed apart, not a call
    assert body["count_tokens_calls"] == 1
    assert body["errors"] == 3
    assert body["errors_by_type"] == {
        "overloaded_error": 1, "rate_limit_error": 1, "upstream_error": 1
    }  # fmt: skip
    assert body["tokens"] == {
        "input": 1610, "output": 170, "cache_read": 4000,
        "cache_write_5m": 200, "cache_write_1h": 100,
    }  # fmt: skip
    assert body["cost_usd"] == pytest.approx(0.00593)
    assert body["unpriced_requests"] == 0 and body["unpriced_models"] == []
    assert (body["subagent_calls"], body["relayed_calls"]) == (1, 5)
    assert body["cache_hit_rate"] == pytest.approx(4000 / 5910)
    assert body["cache_savings_usd"] == pytest.approx(4000 * (3 - 0.3) / 1e6)
    # ttfb sorted [100, 200, 300, 400]: ranks ceil(.5*4)=2, ceil(.9*4)=4 ...
    assert body["ttfb_ms"] == {
        "count": 4,
        "p50": 200.0,
        "p90": 400.0,
        "p95": 400.0,
        "p99": 400.0,
    }
    # duration sorted [500, 1000, 2000, 3000, 4000]: ranks 3, 5, 5, 5
    assert body["duration_ms"] == {
        "count": 5, "p50": 2000.0, "p90": 4000.0, "p95": 4000.0, "p99": 4000.0
    }  # fmt: skip
    assert (
        body["from"] == "2026-11-20T00:00:00Z" and body["to"] == "2026-11-21T00:00:00Z"
    )


def test_it_applies_filters_to_the_summary(seeded, api):
    def requests(**params: str) -> int:
        return api("/api/stats/summary", **DAY, **params).json()["requests"]

    assert requests(model=HAIKU) == 2
    assert requests(family="claude-sonnet") == 3
    assert requests(session=S1) == 2
    assert requests(kind="messages") == 5
    assert requests(kind="count_tokens") == 1
    assert requests(project="1") == 0  # no transcript placed these sessions


def test_it_splits_by_model(seeded, api):
    sonnet, haiku = api("/api/stats/models", **DAY).json()
    assert sonnet["model"] == SONNET and haiku["model"] == HAIKU  # by cost, descending
    assert (sonnet["requests"], sonnet["errors"]) == (3, 1)
    assert sonnet["tokens"] == {
        "input": 110, "output": 70, "cache_read": 4000,
        "cache_write_5m": 200, "cache_write_1h": 100,
    }  # fmt: skip
    assert sonnet["cost_usd"] == pytest.approx(0.00393)
    assert sonnet["cache_hit_rate"] == pytest.approx(4000 / 4410)
    assert sonnet["avg_ttfb_ms"] == pytest.approx(150.0)  # E6 has none
    assert sonnet["avg_duration_ms"] == pytest.approx(3500 / 3)
    assert (haiku["requests"], haiku["errors"]) == (2, 2)
    assert haiku["cost_usd"] == pytest.approx(0.002)
    assert haiku["cache_hit_rate"] == 0.0
    assert haiku["avg_ttfb_ms"] == pytest.approx(350.0)


def test_it_counts_tools_called_not_offered(seeded, api):
    exchange_create(
        started_at=at("2026-11-20T13:00:00"),
        tools_offered=["Write", "Grep"],
        tools_called={},
    )
    assert api("/api/stats/tools", **DAY).json() == [
        {"tool": "Bash", "calls": 3, "exchanges": 2},
        {"tool": "Read", "calls": 1, "exchanges": 1},
    ]


def test_it_summarises_sessions(seeded, api):
    body = api("/api/sessions", **DAY).json()
    assert body["count"] == 2
    first, second = body["items"]  # most recent activity first
    # A session's whole figures, its calls outside the range included: the
    # same as its page shows.
    assert first == {
        "session_id": S1, "title": "", "project_id": None, "project": "",
        "first_at": "2026-11-19T23:59:59Z", "last_at": "2026-11-21T00:00:00Z",
        "requests": 4, "turns": 3, "subagent_calls": 1, "errors": 0,
        "tokens": {"input": 310, "output": 170, "cache_read": 4000,
                   "cache_write_5m": 200, "cache_write_1h": 100},
        "total_tokens": 4780,
        "cost_usd": pytest.approx(0.00603), "unpriced_requests": 0,
        "models": [SONNET],
    }  # fmt: skip
    assert second["session_id"] == S2
    assert (second["requests"], second["turns"], second["subagent_calls"]) == (2, 2, 0)
    assert second["errors"] == 2 and second["last_at"] == "2026-11-20T11:00:00Z"
    page = api("/api/sessions", **DAY, limit=1, offset=1).json()
    assert page["count"] == 2 and [s["session_id"] for s in page["items"]] == [S2]
    assert api("/api/sessions", **DAY, offset=5).json() == {
        "count": 2,
        "limit": 50,
        "offset": 5,
        "items": [],
    }


def test_it_buckets_hours_in_utc(seeded, api):
    body = api("/api/stats/timeseries", **DAY, bucket="hour").json()
    buckets = body["buckets"]
    assert len(buckets) == 24
    assert buckets[9]["start"] == "2026-11-20T09:00:00Z"
    assert buckets[9]["requests"] == 2
    assert buckets[9]["cost_usd"] == pytest.approx(0.00393)
    assert buckets[9]["tokens"]["cache_read"] == 4000
    assert [m["model"] for m in buckets[9]["models"]] == [SONNET]
    assert (buckets[10]["requests"], buckets[10]["errors"]) == (1, 1)
    assert (buckets[12]["requests"], buckets[12]["errors"]) == (1, 1)
    assert buckets[23]["requests"] == 0  # E5 counts tokens
    assert sum(b["requests"] for b in buckets) == 5


@pytest.mark.parametrize(
    "params",
    [{**DAY, "bucket": "hour"}, {**DAY, "bucket": "day", "tz": "America/New_York"}],
)
def test_it_encodes_the_timeseries_as_ninja_would(seeded, api, params):
    # The operation encodes with pydantic-core, not ninja's renderer: the body
    # must stay what ninja's model_dump + JSON encoder made of the same schema.
    response = api("/api/stats/timeseries", **params)
    filters = schemas.TimeseriesFilter(**params)
    series = selectors.usage_timeseries(
        scope=scope_of(filters, viewer=EVERYONE), zone=filters.zone, unit=filters.bucket
    )
    dumped = schemas.TimeseriesOut.model_validate(series).model_dump()
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response.json() == json.loads(json.dumps(dumped, cls=NinjaJSONEncoder))
    assert response.json()["buckets"][-1]["start"].endswith(("Z", "-05:00"))


def test_it_makes_a_25_hour_day_when_new_york_leaves_dst(db, api):
    # 2026-11-01: clocks go from 02:00 EDT (-4) back to 01:00 EST (-5).
    for moment in ("2026-11-01T03:30:00",  # Oct 31, 23:30 EDT
                   "2026-11-01T04:30:00",  # Nov 1, 00:30 EDT
                   "2026-11-02T04:30:00",  # Nov 1, 23:30 EST (UTC says Nov 2)
                   "2026-11-02T05:30:00"):  # Nov 2, 00:30 EST  # fmt: skip
        exchange_create(started_at=at(moment))
    body = api(
        "/api/stats/timeseries", bucket="day", tz="America/New_York",
        **{"from": "2026-10-31", "to": "2026-11-03"},
    ).json()  # fmt: skip
    starts = [(b["start"], b["end"], b["requests"]) for b in body["buckets"]]
    assert starts == [
        ("2026-10-31T00:00:00-04:00", "2026-11-01T00:00:00-04:00", 1),
        ("2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00", 2),
        ("2026-11-02T00:00:00-05:00", "2026-11-03T00:00:00-05:00", 1),
    ]


def test_it_keeps_the_repeated_hour_apart(db, api):
    exchange_create(started_at=at("2026-11-01T05:10:00"))  # 01:10 EDT
    exchange_create(started_at=at("2026-11-01T06:10:00"))  # 01:10 EST
    exchange_create(started_at=at("2026-11-01T06:20:00"))  # 01:20 EST
    body = api(
        "/api/stats/timeseries", bucket="hour", tz="America/New_York",
        **{"from": "2026-11-01T00:00:00", "to": "2026-11-01T03:00:00"},
    ).json()  # fmt: skip
    assert [(b["start"], b["requests"]) for b in body["buckets"]] == [
        ("2026-11-01T00:00:00-04:00", 0),
        ("2026-11-01T01:00:00-04:00", 1),
        ("2026-11-01T01:00:00-05:00", 2),
        ("2026-11-01T02:00:00-05:00", 0),
    ]


def test_it_buckets_half_hour_zones_at_local_midnight(db, api):
    exchange_create(started_at=at("2026-11-20T18:15:00"))  # 23:45 IST, Nov 20
    exchange_create(started_at=at("2026-11-20T18:45:00"))  # 00:15 IST, Nov 21
    body = api(
        "/api/stats/timeseries", bucket="day", tz="Asia/Kolkata",
        **{"from": "2026-11-20", "to": "2026-11-22"},
    ).json()  # fmt: skip
    assert [(b["start"], b["requests"]) for b in body["buckets"]] == [
        ("2026-11-20T00:00:00+05:30", 1),
        ("2026-11-21T00:00:00+05:30", 1),
    ]


@pytest.mark.parametrize(
    ("p", "n", "rank"),
    [(50, 1, 1), (99, 1, 1), (50, 2, 1), (90, 2, 2), (50, 3, 2), (50, 4, 2),
     (90, 10, 9), (95, 10, 10), (99, 10, 10), (50, 100, 50), (99, 100, 99),
     (95, 101, 96), (99, 101, 100), (50, 5, 3)],
)  # fmt: skip
def test_it_ranks_percentiles_by_nearest_rank(p, n, rank):
    assert selectors.percentile_rank(p=p, n=n) == rank


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([7.0], (7.0, 7.0, 7.0, 7.0)),
        ([2.0, 1.0], (1.0, 2.0, 2.0, 2.0)),
        ([float(v) for v in range(1, 101)], (50.0, 90.0, 95.0, 99.0)),
        ([float(v) for v in range(10, 101, 10)], (50.0, 90.0, 100.0, 100.0)),
        ([float(v) for v in range(101, 0, -1)], (51.0, 91.0, 96.0, 100.0)),
    ],
)
def test_it_computes_percentiles_in_sql(db, api, values, expected):
    for index, value in enumerate(values):
        model = SONNET if index % 2 else HAIKU
        exchange_create(
            started_at=at("2026-11-20T09:00:00"), duration_ms=value, ttfb_ms=value,
            model=model,
        )  # fmt: skip
    body = api("/api/stats/performance", **DAY).json()
    overall = body["overall"]["duration_ms"]
    assert overall["count"] == len(values)
    assert (overall["p50"], overall["p90"], overall["p95"], overall["p99"]) == expected
    assert body["overall"]["ttfb_ms"] == overall
    for entry in body["models"]:  # each model against the same definition
        mine = sorted(
            v
            for i, v in enumerate(values)
            if (SONNET if i % 2 else HAIKU) == entry["model"]
        )
        got = entry["duration_ms"]
        assert got["count"] == len(mine)
        for p in selectors.PERCENTILES:
            assert got[f"p{p}"] == mine[selectors.percentile_rank(p=p, n=len(mine)) - 1]


def test_it_reports_empty_percentiles_as_null(db, api):
    body = api("/api/stats/performance", **DAY).json()
    assert body["overall"]["duration_ms"] == {
        "count": 0,
        "p50": None,
        "p90": None,
        "p95": None,
        "p99": None,
    }
    assert body["models"] == []


def test_it_reports_rate_limits(db, api):
    exchange_create(
        started_at=at("2026-11-20T08:00:00"), unified_status="allowed",
        unified_5h_utilization=0.25, unified_7d_utilization=0.5,
        ratelimits={"unified-status": "allowed"},
    )  # fmt: skip
    exchange_create(
        started_at=at("2026-11-20T09:00:00"), unified_status="allowed_warning",
        unified_5h_utilization=0.8, unified_7d_utilization=0.55,
        unified_5h_reset=at("2026-11-20T12:00:00"),
        ratelimits={"unified-status": "allowed_warning",
                    "unified-representative-claim": "five_hour"},
    )  # fmt: skip
    exchange_create(
        started_at=at("2026-11-20T10:00:00"), model=SONNET,
        ratelimits={"requests-limit": 4000, "requests-remaining": 3999,
                    "tokens-reset": "2026-11-20T10:01:00+00:00"},
    )  # fmt: skip
    exchange_create(started_at=at("2026-11-20T11:00:00"))  # no rate-limit headers
    body = api("/api/limits", **DAY).json()
    assert body["unified"] == {
        "at": "2026-11-20T09:00:00Z", "status": "allowed_warning",
        "five_hour_utilization": 0.8, "five_hour_reset": "2026-11-20T12:00:00Z",
        "seven_day_utilization": 0.55, "seven_day_reset": None,
        "representative_claim": "five_hour",
    }  # fmt: skip
    assert [(p["at"], p["five_hour_utilization"]) for p in body["history"]] == [
        ("2026-11-20T08:00:00Z", 0.25), ("2026-11-20T09:00:00Z", 0.8)
    ]  # fmt: skip
    assert body["standard"] == {
        "at": "2026-11-20T10:00:00Z", "model": "claude-sonnet-4-5-20250929",
        "values": {"requests-limit": 4000, "requests-remaining": 3999,
                   "tokens-reset": "2026-11-20T10:01:00+00:00"},
    }  # fmt: skip
    assert len(api("/api/limits", **DAY, limit=1).json()["history"]) == 1


def test_it_lists_exchanges_without_bodies(seeded, api):
    body = api("/api/exchanges", **DAY, limit=2).json()
    assert body["count"] == 6 and body["limit"] == 2
    assert [i["started_at"] for i in body["items"]] == [
        "2026-11-20T23:59:00Z",
        "2026-11-20T12:00:00Z",
    ]
    assert "request_body" not in body["items"][0]
    assert "request_headers" not in body["items"][0]
    assert (
        api("/api/exchanges", **DAY, offset=2, limit=1).json()["items"][0]["started_at"]
        == "2026-11-20T11:00:00Z"
    )


def test_it_shows_one_exchange_in_full(db, api):
    from apps.proxy.bodies import body_encode

    exchange = exchange_create(
        request_body=body_encode(b'{"model": "m", "messages": []}' * 40),
        response_body=body_encode(b"event: ping\ndata: {}\n\n"),
        request_headers=[["content-type", "application/json"]],
        response_message={"id": "msg_1", "content": []},
    )
    body = api(f"/api/exchanges/{exchange.pk}").json()
    assert body["request_body"] == '{"model": "m", "messages": []}' * 40
    assert body["response_body"] == "event: ping\ndata: {}\n\n"
    assert body["request_headers"] == [["content-type", "application/json"]]
    assert body["response_message"] == {"id": "msg_1", "content": []}
    assert body["uid"] == str(exchange.uid)
    missing = api("/api/exchanges/999999")
    assert missing.status_code == 404 and "999999" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/api/exchanges", {"from": "yesterday"}, "from"),
        ("/api/exchanges", {"to": "2026-13-01"}, "to"),
        ("/api/exchanges", {"from": "0001-01-01T00:00:00+14:00"}, "from"),
        ("/api/exchanges", {"to": "9999-12-31T23:59:59-12:00"}, "to"),
        ("/api/stats/summary", {"tz": "Mars/Olympus"}, "tz"),
        ("/api/stats/summary", {"tz": "../../etc/passwd"}, "tz"),
        ("/api/stats/summary", {"from": "2026-11-21", "to": "2026-11-20"}, "from"),
        ("/api/stats/models", {"from": "2026-11-20", "to": "2026-11-20"}, "from"),
        ("/api/exchanges", {"limit": "0"}, "limit"),
        ("/api/exchanges", {"limit": "501"}, "limit"),
        ("/api/exchanges", {"offset": "-1"}, "offset"),
        ("/api/sessions", {"limit": "abc"}, "limit"),
        ("/api/exchanges", {"status": "6xx"}, "status"),
        ("/api/exchanges", {"state": "exploded"}, "state"),
        ("/api/exchanges", {"streaming": "maybe"}, "streaming"),
        ("/api/exchanges", {"kind": "images"}, "kind"),
        ("/api/stats/timeseries", {"bucket": "week"}, "bucket"),
        ("/api/stats/timeseries", {"from": "2026-01-01", "to": "2026-06-01"}, "from"),
        ("/api/limits", {"limit": "5001"}, "limit"),
        ("/api/exchanges/export", {"format": "xml"}, "format"),
        ("/api/exchanges/0", {}, "exchange_id"),
        ("/api/exchanges/99999999999999999999", {}, "exchange_id"),
        ("/api/exchanges/abc", {}, "exchange_id"),
    ],
)
def test_it_rejects_bad_parameters_with_422(db, api, path, params, parameter):
    response = api(path, **params)
    assert response.status_code == 422, response.content
    detail = response.json()["detail"]
    named = [
        e for e in detail if e["loc"][-1] == parameter or f"'{parameter}'" in e["msg"]
    ]
    assert named, detail


def test_it_defaults_to_the_last_24_hours():
    filters = schemas.ExchangeFilter.model_validate({})
    assert (filters.end - filters.start).total_seconds() == 24 * 3600
    series = schemas.TimeseriesFilter.model_validate({"bucket": "day"})
    assert (series.end - series.start).days == 7


def test_it_reads_naive_times_in_the_given_zone():
    filters = schemas.ExchangeFilter.model_validate(
        {"from": "2026-07-01T09:00", "to": "2026-07-02", "tz": "Europe/Paris"}
    )
    assert filters.start == at("2026-07-01T07:00:00")
    assert filters.end == at("2026-07-01T22:00:00")


@pytest.mark.parametrize(
    ("call", "queries"),
    [
        (
            lambda f: selectors.exchange_list(
                filters=f, viewer=EVERYONE, limit=50, offset=0
            ),
            2,
        ),
        (lambda f: selectors.usage_by_model(scope=scope_of(f, viewer=EVERYONE)), 1),
        (lambda f: selectors.usage_by_tool(scope=scope_of(f, viewer=EVERYONE)), 1),
        # one grouped read (sums, errors by type, unpriced models, token
        # counts), one of the latencies
        (lambda f: selectors.usage_summary(scope=scope_of(f, viewer=EVERYONE)), 2),
        (lambda f: selectors.performance_stats(scope=scope_of(f, viewer=EVERYONE)), 1),
        (lambda f: selectors.ratelimit_state(filters=f, viewer=EVERYONE, limit=500), 3),
        # the sessions in range, their whole figures, the index's sessions (no
        # transcript here: no subagents to count)
        (
            lambda f: session_selectors.session_rows(
                viewer=EVERYONE, start=f.start, end=f.end
            ),
            3,
        ),
    ],
)
def test_it_guards_query_counts(seeded, django_assert_num_queries, call, queries):
    for index in range(20):  # more rows must not mean more queries
        exchange_create(started_at=at("2026-11-20T15:00:00"), session_id=f"s{index}")
    filters = schemas.ExchangeFilter.model_validate(DAY)
    with django_assert_num_queries(queries):
        call(filters)


def test_it_guards_the_timeseries_query_count(seeded, django_assert_num_queries):
    filters = schemas.TimeseriesFilter.model_validate({**DAY, "tz": "Asia/Kolkata"})
    with django_assert_num_queries(1):
        selectors.usage_timeseries(
            scope=scope_of(filters, viewer=EVERYONE), zone=filters.zone, unit="hour"
        )
