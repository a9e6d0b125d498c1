"""Usage statistics: every aggregation runs in SQL over the covering index.

Python only ever loops over grouped results (one row per bucket, model, tool,
error type or percentile rank), never over exchanges.

Percentiles use one definition everywhere, nearest rank: with the N values in
ascending order, the p-th percentile is the value at rank ceil(p/100 * N)
(1-based); computed in SQL with ROW_NUMBER() over the sorted values.

Unfiltered ranges of two days or more are answered from hour rollups plus live
reads of the open edges (selectors.rollups, selectors.rolled): same answers,
without scanning every exchange of a month. There the sums are grouped rollup
rows, and percentiles are picked at the same ranks from every value, kept
sorted per hour and day in the rollups and merged per model in Python (one
sort of ~30 sorted runs beats a window function over a month of rows).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from apps.dashboard.schemas import ExchangeFilter, TimeseriesFilter
from apps.dashboard.selectors import rolled
from apps.dashboard.selectors.base import (
    _ERROR_COUNT,
    _ERROR_SQL,
    _TOKEN_FIELDS,
    _TOKEN_SUMS,
    MESSAGES_PATH,
    PERCENTILE_DEFINITION,
    PERCENTILES,
    _aggregate,
    _hit_rate,
    _tokens,
    _utc,
)
from apps.dashboard.selectors.rollups import (
    RollupPlan,
    hour_markers,
    rollup_plan,
    rollup_read,
    series_key,
    series_peek,
    series_put,
)
from apps.proxy.pricing import Usage, cache_savings

T = TypeVar("T")

# --- summary -----------------------------------------------------------------


def usage_summary(*, filters: ExchangeFilter) -> dict:
    """Return totals, errors by type, cache figures and latency percentiles."""
    answer = _from_rollups(
        filters, lambda plan: _summary_rolled(filters, plan), by_model=True
    )
    if answer is not None:
        return answer
    # One grouped scan gives the sums, the errors by type, the daily cache
    # reads and the latency counts; the percentiles need one more per column.
    parts = rolled.summary_fold(rolled.summary_live_rows(spans=[filters]), [])
    totals = parts[0]
    counts = [
        {
            "model": None,
            "ttfb_ms": totals["ttfb_n"],
            "duration_ms": totals["duration_n"],
        }
    ]
    latency = _percentiles_live(filters=filters, counts=counts, by_model=False)
    return _summary_out(filters, parts, latency[None])


def _from_rollups(
    filters: ExchangeFilter, answer: Callable[[RollupPlan], T], by_model: bool = False
) -> T | None:
    """Return answer(plan) read in one snapshot, or None: scan the range live.

    by_model: answer() reads only rollups kept per model, so a model or family
    filter can be rolled up too (rollups.rollup_plan).
    """
    plan = rollup_plan(filters=filters, by_model=by_model)
    if plan is None:
        return None
    with rollup_read(plan=plan) as holds:
        return answer(plan) if holds else None


def _summary_rolled(filters: ExchangeFilter, plan: RollupPlan) -> dict:
    parts = rolled.summary_parts(plan=plan)
    latency = _percentiles_of(rolled.latency_values(plan=plan), by_model=False)
    return _summary_out(filters, parts, latency[None])


def _summary_out(filters: ExchangeFilter, parts: tuple, latency: dict) -> dict:
    totals, errors_by_type, daily_reads = parts
    tokens = {kind: int(totals[kind]) for kind in _TOKEN_FIELDS}
    savings = 0.0
    for model, day, cache_read in daily_reads:
        usage = Usage(cache_read=cache_read)
        savings += cache_savings(model=model, usage=usage, at=day) or 0.0
    return {
        "from": filters.start,
        "to": filters.end,
        "requests": totals["requests"],
        "errors": totals["errors"],
        "errors_by_type": errors_by_type,
        "tokens": tokens,
        "cost_usd": float(totals["cost"]),
        "unpriced_requests": totals["unpriced"],
        "cache_hit_rate": _hit_rate(tokens),
        "cache_savings_usd": savings,
        "ttfb_ms": latency["ttfb_ms"],
        "duration_ms": latency["duration_ms"],
    }


def error_counts(*, filters: ExchangeFilter) -> dict[str, int]:
    """Count errors by type: the API's error type, else http_<status>, else state."""
    grouped = _aggregate(
        filters=filters,
        sql="SELECT error_type, status_code, state, COUNT(*) AS n FROM {rows}"
        f" AND {_ERROR_SQL} GROUP BY error_type, status_code, state",
    )
    counts: dict[str, int] = defaultdict(int)
    for row in grouped:
        status = row["status_code"]
        label = row["error_type"] or (
            f"http_{status}" if status and status >= 400 else row["state"]
        )
        counts[label] += row["n"]
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def request_counts(*, filters: ExchangeFilter) -> tuple[int, dict[str, int]]:
    """Return how many exchanges matched and their errors by type (most first)."""
    answer = _from_rollups(filters, lambda plan: rolled.request_counts(plan=plan))
    if answer is None:
        ((total,),) = [
            tuple(row.values())
            for row in _aggregate(filters=filters, sql="SELECT COUNT(*) FROM {rows}")
        ]
        return total, error_counts(filters=filters)
    total, errors = answer
    return total, dict(sorted(errors.items(), key=lambda item: (-item[1], item[0])))


def cache_savings_total(*, filters: ExchangeFilter) -> float:
    """Price cache reads per model and UTC day (prices change by date) in dollars.

    Uses each family's base rate: long-context tiers depend on single requests'
    prompt sizes, which a per-model sum no longer knows.
    """
    grouped = _aggregate(
        filters=filters,
        sql="SELECT model, substr(started_at, 1, 10) AS day,"
        " SUM(cache_read_tokens) AS cache_read FROM {rows} AND cache_read_tokens > 0"
        " GROUP BY model, day",
    )
    total = 0.0
    for row in grouped:
        usage = Usage(cache_read=row["cache_read"])
        day = date.fromisoformat(row["day"])
        total += cache_savings(model=row["model"], usage=usage, at=day) or 0.0
    return total


# --- percentiles -------------------------------------------------------------


def percentile_rank(*, p: int, n: int) -> int:
    """Return the 1-based nearest rank of percentile p among n sorted values."""
    return max(1, -(-p * n // 100))


def latency_percentiles(
    *, filters: ExchangeFilter, by_model: bool = False
) -> dict[str | None, dict]:
    """Return {model or None (overall): {ttfb_ms: pct, duration_ms: pct}}."""
    answer = _from_rollups(
        filters,
        lambda plan: _percentiles_of(
            rolled.latency_values(plan=plan), by_model=by_model
        ),
        by_model=True,
    )
    if answer is not None:
        return answer
    # Grouping needs a temporary b-tree over the scan; skip it when only the
    # overall figures are wanted.
    group = "model" if by_model else "NULL"
    counts = _aggregate(
        filters=filters,
        sql=f"SELECT {group} AS model, COUNT(ttfb_ms) AS ttfb_ms,"
        f" COUNT(duration_ms) AS duration_ms FROM {{rows}} GROUP BY {group}",
    )
    return _percentiles_live(filters=filters, counts=counts, by_model=by_model)


def _percentiles_live(
    *, filters: ExchangeFilter, counts: list[dict], by_model: bool
) -> dict[str | None, dict]:
    """Pick the percentiles by rank in SQL, given the values' counts per model."""
    result: dict[str | None, dict] = {}
    for column in ("ttfb_ms", "duration_ms"):
        sizes = {row["model"]: row[column] for row in counts if row[column]}
        groups: dict[str | None, int] = {None: sum(sizes.values())}
        if by_model:
            groups.update(sizes)
        values = _ranked_values(filters=filters, column=column, groups=groups)
        for group, n in groups.items():
            result.setdefault(group, {})[column] = {
                "count": n,
                **{
                    f"p{p}": values.get((group, percentile_rank(p=p, n=n)))
                    for p in PERCENTILES
                },
            }
    return result


def _percentiles_of(
    values: dict[str, tuple[list, list]], *, by_model: bool
) -> dict[str | None, dict]:
    # The same answer as latency_percentiles' SQL, from sorted runs per model;
    # ranks are selected across the runs without merging them.
    result: dict[str | None, dict] = {}
    for index, column in enumerate(("ttfb_ms", "duration_ms")):
        ranked = {
            model: [run for run in pair[index] if len(run)]
            for model, pair in values.items()
        }
        ranked = {model: runs for model, runs in ranked.items() if runs}
        groups = {
            None: [run for runs in ranked.values() for run in runs],
            **(ranked if by_model else {}),
        }
        for group, members in groups.items():
            n = sum(map(len, members))
            result.setdefault(group, {})[column] = {
                "count": n,
                **{
                    f"p{p}": _kth(members, percentile_rank(p=p, n=n)) if n else None
                    for p in PERCENTILES
                },
            }
    return result


def _kth(lists: list[list[float]], k: int) -> float:
    """Return the k-th smallest (1-based) value of several ascending lists."""
    if len(lists) == 1:
        return lists[0][k - 1]
    for values in lists:  # the answer is in one of them: binary search each
        lo, hi = 0, len(values) - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            below = sum(bisect_left(other, values[mid]) for other in lists)
            upto = sum(bisect_right(other, values[mid]) for other in lists)
            if upto < k:
                lo = mid + 1
            elif below >= k:
                hi = mid - 1
            else:
                return values[mid]
    raise ValueError(f"rank {k} is out of range")


def _ranked_values(
    *, filters: ExchangeFilter, column: str, groups: dict[str | None, int]
) -> dict[tuple[str | None, int], float]:
    # ROW_NUMBER() over the sorted values gives each value its 1-based rank;
    # only the rows at the wanted ranks leave SQLite. Overall and per-model
    # ranks are separate window partitions of one statement.
    assert column in ("ttfb_ms", "duration_ms")
    wanted = {
        (group, percentile_rank(p=p, n=n))
        for group, n in groups.items()
        if n
        for p in PERCENTILES
    }
    if not wanted:
        return {}
    overall = sorted(rank for group, rank in wanted if group is None)
    per_model = [(group, rank) for group, rank in wanted if group is not None]
    parts = [
        f"SELECT NULL AS g, rn, x FROM (SELECT {column} AS x, ROW_NUMBER() OVER"
        f" (ORDER BY {column}) AS rn FROM {{rows}} AND {column} IS NOT NULL)"
        f" WHERE rn IN ({', '.join(map(str, overall))})"
    ]
    params: list = []
    if per_model:
        pairs = ", ".join("(%s, %s)" for _ in per_model)
        parts.append(
            f"SELECT g, rn, x FROM (SELECT model AS g, {column} AS x, ROW_NUMBER()"
            f" OVER (PARTITION BY model ORDER BY {column}) AS rn FROM {{rows}}"
            f" AND {column} IS NOT NULL) WHERE (g, rn) IN (VALUES {pairs})"
        )
        params = [value for pair in per_model for value in pair]
    found: dict[tuple[str | None, int], float] = {}
    for index, sql in enumerate(parts):
        extra = tuple(params) if index else ()
        rows = _aggregate(filters=filters, sql=sql, params=extra)
        found.update({(row["g"], row["rn"]): row["x"] for row in rows})
    return found


def performance_stats(*, filters: ExchangeFilter) -> dict:
    """Return latency percentiles overall and per model."""
    by_group = latency_percentiles(filters=filters, by_model=True)
    models = sorted(
        ({"model": model, **metrics} for model, metrics in by_group.items() if model),
        key=lambda item: (-item["duration_ms"]["count"], item["model"]),
    )
    return {
        "definition": PERCENTILE_DEFINITION,
        "overall": by_group[None],
        "models": models,
    }


# --- time series -------------------------------------------------------------


def bucket_edges(
    *, start: datetime, end: datetime, zone: ZoneInfo, unit: str
) -> list[datetime]:
    """Return bucket boundaries covering [start, end) in local hours or days.

    Days run from local midnight to local midnight, so a DST change makes a
    23- or 25-hour day; hours step in real (UTC) time from a local hour.
    """
    local = start.astimezone(zone)
    if unit == "day":
        day = local.date()
        edges = [datetime.combine(day, time(), tzinfo=zone)]
        while edges[-1] < end:
            day += timedelta(days=1)
            edges.append(datetime.combine(day, time(), tzinfo=zone))
    else:
        edge = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        edges = [edge]
        while edges[-1] < end:
            edges.append(edges[-1] + timedelta(hours=1))
    return [edge.astimezone(zone) for edge in edges]


def usage_timeseries(*, filters: TimeseriesFilter) -> dict:
    """Return requests, tokens, cost and errors per local bucket, split by model."""
    edges = bucket_edges(
        start=filters.start, end=filters.end, zone=filters.zone, unit=filters.bucket
    )
    seconds = [int(edge.timestamp()) for edge in edges]
    # SQL groups by UTC slot and model: a slot is a UTC hour, or a quarter hour
    # when the zone's bucket edges are not on whole UTC hours (India, Nepal...).
    # Every slot lies inside one bucket, so Python folds slots into buckets
    # with work bounded by the number of slots, never by the number of rows.
    utc_edges = [edge.astimezone(UTC) for edge in edges]
    hourly = all(edge.minute == 0 and edge.second == 0 for edge in utc_edges)
    pieces = _from_rollups(
        filters,
        lambda plan: _series_rolled(plan=plan, seconds=seconds, hourly=hourly),
        by_model=True,
    )
    if pieces is None:
        rows = rolled.live_slot_rows(filters=filters, hourly=hourly)
        pieces = _series_pieces(_series_fold(rows, seconds=seconds))
    empty = (_series_sums([0] * len(_SERIES_SUMS)), [])
    buckets = []
    for index, (lo, hi) in enumerate(zip(edges, edges[1:], strict=False)):
        sums, models = pieces.get(index, empty)
        buckets.append({"start": lo, "end": hi, **sums, "models": models})
    # The pieces may be kept in memory and shared by later answers: callers
    # read the answer, never change it.
    return {"bucket": filters.bucket, "tz": filters.tz, "buckets": buckets}


_SERIES_SUMS = ("requests", "errors", "cost", *_TOKEN_FIELDS)
_Folded = dict[int, tuple[list, dict[str, list]]]  # bucket -> (total, per model)


def _series_fold(rows: list[tuple], *, seconds: list[int]) -> _Folded:
    """Sum (slot, model, sums) rows per bucket and per bucket and model."""
    folded: _Folded = {}
    for slot, model, values in rows:
        index = bisect_right(seconds, slot) - 1
        values = [value or 0 for value in values]
        part = folded.get(index)
        if part is None:
            folded[index] = (list(values), {model: values})
            continue
        total, models = part
        for position, value in enumerate(values):
            total[position] += value
        target = models.get(model)
        if target is None:
            models[model] = values
        else:
            for position, value in enumerate(values):
                target[position] += value
    return folded


def _series_pieces(folded: _Folded) -> dict[int, tuple[dict, list[dict]]]:
    """Return each folded bucket's output sums and its models' points."""
    return {
        index: (
            _series_sums(total),
            [
                {"model": model, **_series_sums(models[model])}
                for model in sorted(models)
            ],
        )
        for index, (total, models) in folded.items()
    }


def _series_rolled(
    *, plan: RollupPlan, seconds: list[int], hourly: bool
) -> dict[int, tuple[dict, list[dict]]]:
    # A bucket whose hours are all marked (closed) sums the same from one read
    # to the next: its output is kept in memory under its hours' markers
    # (rollups.series_key), and once every closed bucket is known only the
    # hours of the open ones are read again. Reading and folding a month of
    # hours into ~3,600 points took 14 ms of CPU a request; this takes 6.
    if not hourly:  # quarter-hour slots: no bucket is made of whole hours
        rows = rolled.slot_rows(plan=plan, hourly=False)
        return _series_pieces(_series_fold(rows, seconds=seconds))
    markers = hour_markers(lo=plan.lo, hi=plan.hi)
    keys: dict[int, tuple] = {}
    for index in range(len(seconds) - 1):
        lo, hi = seconds[index] // 3600, seconds[index + 1] // 3600
        if lo < hi and all(hour in markers for hour in range(lo, hi)):
            keys[index] = series_key(lo=lo, hi=hi, markers=markers, plan=plan)
    kept = {}
    for index, key in keys.items():
        part = series_peek(key=key)
        if part is not None:
            kept[index] = part
    if len(kept) < len(keys):  # read every hour once; keep the closed buckets
        rows = rolled.slot_rows(plan=plan, hourly=True)
        pieces = _series_pieces(_series_fold(rows, seconds=seconds))
        for index, key in keys.items():
            if index not in pieces:  # a closed bucket without a single exchange
                pieces[index] = (_series_sums([0] * len(_SERIES_SUMS)), [])
            series_put(key=key, value=pieces[index])
        return pieces
    open_hours = [
        hour for hour in markers if bisect_right(seconds, hour * 3600) - 1 not in kept
    ]
    rows = rolled.slot_rows(plan=plan, hourly=True, hours=open_hours)
    return {**_series_pieces(_series_fold(rows, seconds=seconds)), **kept}


def _series_sums(values: list) -> dict:
    requests, errors, cost, fresh, output, read, write_5m, write_1h = values
    return {
        "requests": requests,
        "errors": errors,
        "tokens": {"input": int(fresh), "output": int(output), "cache_read": int(read),
                   "cache_write_5m": int(write_5m), "cache_write_1h": int(write_1h)},
        "cost_usd": float(cost),
    }  # fmt: skip


def _model_point(row: dict, tokens: dict[str, int]) -> dict:
    return {
        "model": row["model"],
        "requests": row.get("requests", 0),
        "errors": row.get("errors", 0),
        "tokens": {kind: tokens.get(kind, 0) for kind in _TOKEN_FIELDS},
        "cost_usd": float(row.get("cost") or 0.0),
    }


# --- per model, tool, session ------------------------------------------------


def usage_by_model(*, filters: ExchangeFilter) -> list[dict]:
    """Return per-model requests, errors, tokens, cost and mean latencies."""
    grouped = _from_rollups(
        filters, lambda plan: rolled.model_rows(plan=plan), by_model=True
    )
    if grouped is None:
        grouped = _aggregate(
            filters=filters,
            sql=f"SELECT model, COUNT(*) AS requests, {_ERROR_COUNT}, {_TOKEN_SUMS},"
            " COALESCE(SUM(cost_usd), 0.0) AS cost, AVG(ttfb_ms) AS avg_ttfb,"
            " AVG(duration_ms) AS avg_duration FROM {rows} GROUP BY model"
            " ORDER BY cost DESC, requests DESC, model",
        )
    result = []
    for row in grouped:
        tokens = _tokens(row)
        result.append(
            {**_model_point(row, tokens), "cache_hit_rate": _hit_rate(tokens),
             "avg_ttfb_ms": row["avg_ttfb"], "avg_duration_ms": row["avg_duration"]}
        )  # fmt: skip
    return result


def usage_by_tool(*, filters: ExchangeFilter) -> list[dict]:
    """Return tools the model called (tool_use blocks), with call counts."""
    answer = _from_rollups(filters, lambda plan: rolled.tool_rows(plan=plan))
    if answer is not None:
        return answer
    grouped = _aggregate(
        filters=filters,
        sql="SELECT t.key AS tool, SUM(CAST(t.value AS INTEGER)) AS calls,"
        " COUNT(*) AS exchanges FROM {rows} AND tools_called <> '{{}}'"
        " AND json_type(tools_called) = 'object'"
        " GROUP BY t.key ORDER BY calls DESC, tool",
        join=", json_each(proxy_exchange.tools_called) AS t",
    )
    return grouped


def session_list(*, filters: ExchangeFilter, limit: int, offset: int) -> dict:
    """Return Claude Code sessions active in the range, most recent first."""
    answer = _from_rollups(
        filters, lambda plan: _sessions_rolled(plan=plan, limit=limit, offset=offset)
    )
    if answer is not None:
        return answer
    # COUNT(*) OVER () runs after grouping: the number of sessions, same scan.
    grouped = _aggregate(
        filters=filters,
        sql="SELECT session_id, MIN(started_at) AS first_at,"
        " MAX(started_at) AS last_at, COUNT(*) AS requests,"
        " SUM(CASE WHEN agent_id = '' AND path LIKE '%%" + MESSAGES_PATH
        + "' THEN 1 ELSE 0 END) AS turns,"
        " SUM(CASE WHEN agent_id <> '' THEN 1 ELSE 0 END) AS subagent_calls,"
        f" {_ERROR_COUNT}, {_TOKEN_SUMS}, COALESCE(SUM(cost_usd), 0.0) AS cost,"
        " GROUP_CONCAT(DISTINCT model) AS model_list, COUNT(*) OVER () AS total"
        " FROM {rows} AND session_id <> '' GROUP BY session_id"
        " ORDER BY last_at DESC, session_id LIMIT %s OFFSET %s",
        params=(limit, offset),
    )  # fmt: skip
    items = [
        {"session_id": row["session_id"], "first_at": _utc(row["first_at"]),
         "last_at": _utc(row["last_at"]), "requests": row["requests"],
         "turns": row["turns"], "subagent_calls": row["subagent_calls"],
         "errors": row["errors"], "tokens": _tokens(row),
         "cost_usd": float(row["cost"]),
         "models": sorted(m for m in (row["model_list"] or "").split(",") if m)}
        for row in grouped
    ]  # fmt: skip
    count = grouped[0]["total"] if grouped else _session_count(filters=filters)
    return {"count": count, "limit": limit, "offset": offset, "items": items}


def _sessions_rolled(*, plan: RollupPlan, limit: int, offset: int) -> dict:
    count, rows = rolled.session_page(plan=plan, limit=limit, offset=offset)
    items = [
        {"session_id": row["session_id"], "first_at": _utc(row["first_at"]),
         "last_at": _utc(row["last_at"]), "requests": row["requests"],
         "turns": row["turns"], "subagent_calls": row["subagent_calls"],
         "errors": row["errors"], "tokens": _tokens(row),
         "cost_usd": float(row["cost"]),
         "models": sorted({m for m in (row["model_list"] or "").split(",") if m})}
        for row in rows
    ]  # fmt: skip
    return {"count": count, "limit": limit, "offset": offset, "items": items}


def _session_count(*, filters: ExchangeFilter) -> int:
    # Only needed when the page is past the end (no row carries the total).
    (row,) = _aggregate(
        filters=filters,
        sql="SELECT COUNT(DISTINCT session_id) AS n FROM {rows} AND session_id <> ''",
    )
    return row["n"]
