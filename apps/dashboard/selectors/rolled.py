"""Usage statistics answered from hour rollups plus live reads of a range's edges.

Each function here mirrors one in selectors.usage and returns the same answer
(same keys, order and integers; the same percentile values, since every value
is kept; float sums of cost and latency equal up to the order of addition).
selectors.usage calls them when rollups.rollup_plan says a range is worth it.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_right
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from django.db import connection

from apps.dashboard.selectors.base import (
    _ERROR_COUNT,
    _TOKEN_FIELDS,
    _TOKEN_SUMS,
    _aggregate,
)
from apps.dashboard.selectors.rollups import (
    _LABEL_SQL,
    _SESSION_SUMS,
    RollupPlan,
    Span,
    _runs,
    bucket_get,
    hour_markers,
    merged_get,
)

_ROLLED_TOKENS = ", ".join(
    f"SUM({field}) AS {kind}" for kind, field in _TOKEN_FIELDS.items()
)


def _rolled(*, plan: RollupPlan, sql: str, params: tuple = ()) -> list[dict]:
    """Run `sql` over the rollup rows of the plan's hours ({hours} = the WHERE)."""
    where, where_params = _hours_where(plan)
    with connection.cursor() as cursor:
        cursor.execute(sql.format(hours=where), [*where_params, *params])
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _hours_where(plan: RollupPlan, hours: list[int] | None = None) -> tuple[str, list]:
    """Return the WHERE of a plan's hours (or these) and model filter on a rollup."""
    model, params = plan.model_sql()
    if hours is None:
        return "hour >= %s AND hour < %s" + model, [plan.lo, plan.hi, *params]
    runs = _runs(hours)
    ranges = " OR ".join(["hour >= %s AND hour < %s"] * len(runs))
    return f"({ranges}){model}", [*(edge for run in runs for edge in run), *params]


def _live(*, spans: list, sql: str, join: str = "") -> list[dict]:
    """Run the live `sql` ({rows} template of base._aggregate) over every span."""
    rows: list[dict] = []
    for span in spans:
        rows += _aggregate(filters=span, sql=sql, join=join)
    return rows


def _add(target: dict, row: dict, names: tuple[str, ...]) -> None:
    for name in names:
        target[name] = target.get(name, 0) + (row[name] or 0)


_SUMS = ("requests", "errors", *_TOKEN_FIELDS, "cost", "unpriced")


# --- summary ---------------------------------------------------------------------


def summary_parts(*, plan: RollupPlan) -> tuple[dict, dict[str, int], list]:
    """Return the summary's totals, errors by label and daily cache reads.

    One pass each over the rollups and the live edges, grouped by model, UTC
    day and error label.
    """
    rows = _rolled(
        plan=plan,
        sql="SELECT model, hour / 24 AS day, '' AS label, SUM(requests) AS requests,"
        f" SUM(errors) AS errors, {_ROLLED_TOKENS}, SUM(cost_usd) AS cost,"
        " SUM(unpriced) AS unpriced, SUM(ttfb_count) AS ttfb_n,"
        " SUM(duration_count) AS duration_n FROM dashboard_modelhourrollup"
        " WHERE {hours} GROUP BY model, day",
    )
    for row in rows:
        row["day"] = _EPOCH + timedelta(days=row["day"])
    labels = _rolled(
        plan=plan,
        sql="SELECT label, SUM(requests) AS n FROM dashboard_usagerollup"
        " WHERE {hours} AND label <> '' GROUP BY label",
    )
    return summary_fold(rows + summary_live_rows(spans=plan.live), labels)


def summary_live_rows(*, spans: list) -> list[dict]:
    """Return summary_fold's rows for exchanges read live (one scan per span)."""
    live = _live(
        spans=spans,
        sql="SELECT model, substr(started_at, 1, 10) AS day,"
        f" {_LABEL_SQL} AS label, COUNT(*) AS requests, {_TOKEN_SUMS},"
        " COALESCE(SUM(cost_usd), 0.0) AS cost, SUM(CASE WHEN cost_usd IS NULL"
        " AND (input_tokens > 0 OR output_tokens > 0) THEN 1 ELSE 0 END)"
        " AS unpriced, COUNT(ttfb_ms) AS ttfb_n, COUNT(duration_ms) AS duration_n"
        " FROM {rows} GROUP BY model, day, label",
    )
    for row in live:
        row["day"] = date.fromisoformat(row["day"])
        row["errors"] = row["requests"] if row["label"] else 0
    return live


_SUMMARY_SUMS = (*_SUMS, "ttfb_n", "duration_n")


def summary_fold(
    rows: list[dict], labels: list[dict]
) -> tuple[dict, dict[str, int], list]:
    """Fold rows per model, day and label into totals, errors, daily cache reads."""
    totals: dict = dict.fromkeys(_SUMMARY_SUMS, 0)
    errors: dict[str, int] = defaultdict(int)
    for row in labels:
        errors[row["label"]] += row["n"]
    reads: dict[tuple[str, date], int] = defaultdict(int)
    for row in rows:
        _add(totals, row, _SUMMARY_SUMS)
        if row["label"]:
            errors[row["label"]] += row["requests"]
        reads[(row["model"], row["day"])] += row["cache_read"] or 0
    by_type = dict(sorted(errors.items(), key=lambda item: (-item[1], item[0])))
    daily = [(model, day, n) for (model, day), n in sorted(reads.items()) if n > 0]
    return totals, by_type, daily


_EPOCH = date(1970, 1, 1)


def latency_values(*, plan: RollupPlan) -> dict[str, tuple[list, list]]:
    """Return {model: (ttfb runs, duration runs)}, each run sorted ascending.

    Whole days come as one run per model, merged once and kept in memory
    (rollups.merged_get); the other marked hours and the live edges as another.
    """
    runs: dict[str, tuple[list, list]] = {}
    if plan.days:
        whole = merged_get(days=plan.days, build=lambda: _days_merged(plan.days))
        for model, pair in whole.items():
            if plan.model_matches(model):
                runs[model] = ([pair[0]], [pair[1]])
    days = ", ".join(["%s"] * len(plan.days))
    where, params = _hours_where(plan)
    rest: dict[str, tuple[array, array]] = {}
    for model, ttfb, duration in _execute(
        f"SELECT model, ttfb, duration FROM dashboard_latencyrollup WHERE {where}"
        + (f" AND hour / 24 NOT IN ({days})" if days else ""),
        [*params, *plan.days],
    ):
        pair = rest.setdefault(model, (array("d"), array("d")))
        pair[0].frombytes(ttfb)
        pair[1].frombytes(duration)
    for row in _live(
        spans=plan.live,
        sql="SELECT model, ttfb_ms, duration_ms FROM {rows}",
    ):
        pair = rest.setdefault(row["model"], (array("d"), array("d")))
        for index, value in enumerate((row["ttfb_ms"], row["duration_ms"])):
            if value is not None:
                pair[index].append(value)
    for model, pair in rest.items():
        target = runs.setdefault(model, ([], []))
        for index in (0, 1):
            target[index].append(array("d", sorted(pair[index])))
    return runs


def _days_merged(days: list[int]) -> dict[str, tuple[array, array]]:
    # Each day's values arrive sorted, so each sort merges ~30 runs.
    marks = ", ".join(["%s"] * len(days))
    runs: dict[str, tuple[array, array]] = {}
    for model, ttfb, duration in _execute(
        "SELECT model, ttfb, duration FROM dashboard_latencydayrollup"
        f" WHERE day IN ({marks})",
        list(days),
    ):
        pair = runs.setdefault(model, (array("d"), array("d")))
        pair[0].frombytes(ttfb)
        pair[1].frombytes(duration)
    return {
        model: (array("d", sorted(ttfb)), array("d", sorted(duration)))
        for model, (ttfb, duration) in runs.items()
    }


# --- time series, models, tools -------------------------------------------------


# The columns of a time series slot, in selectors.usage._SERIES_SUMS order.
SLOT_SQL = f"COUNT(*) AS requests, {_ERROR_COUNT}, SUM(cost_usd) AS cost, {_TOKEN_SUMS}"
_ROLLED_SLOT = ", ".join(f"SUM({field})" for field in _TOKEN_FIELDS.values())


def slot_rows(
    *, plan: RollupPlan, hourly: bool, hours: list[int] | None = None
) -> list[tuple]:
    """Return (UTC slot start in epoch seconds, model, sums) per slot and model.

    A slot is an hour, or a quarter hour; sums are selectors.usage._SERIES_SUMS.
    hours: read only these marked hours' rollups (default: all the plan's);
    the plan's live spans are read either way.
    """
    if hourly:  # one row per hour and model already: no grouping
        sql = (
            "SELECT hour * 3600, model, requests, errors, cost_usd, "
            + ", ".join(_TOKEN_FIELDS.values())
            + " FROM dashboard_modelhourrollup WHERE {hours}"
        )
    else:
        sql = (
            "SELECT (hour * 4 + quarter) * 900 AS slot, model, SUM(requests),"
            " SUM(CASE WHEN label <> '' THEN requests ELSE 0 END), SUM(cost_usd),"
            f" {_ROLLED_SLOT} FROM dashboard_usagerollup"
            " WHERE {hours} GROUP BY slot, model"
        )
    result = []
    if hours is None or hours:
        where, params = _hours_where(plan, hours)
        rows = _execute(sql.format(hours=where), params)
        result = [(slot, model, sums) for slot, model, *sums in rows]
    for span in plan.live:
        result += live_slot_rows(filters=span, hourly=hourly)
    return result


def live_slot_rows(*, filters: object, hourly: bool) -> list[tuple]:
    """Return slot_rows' tuples for the exchanges of a filter, read live."""
    slot = (
        "substr(started_at, 1, 13)"
        if hourly
        else "CAST(strftime('%%s', started_at) AS INTEGER) / 900"
    )
    rows = _aggregate(
        filters=filters,
        sql=f"SELECT {slot} AS slot, model, {SLOT_SQL} FROM {{rows}}"
        " GROUP BY slot, model",
    )
    result = []
    for row in rows:
        slot, model, *sums = row.values()
        if hourly:
            moment = datetime.strptime(slot, "%Y-%m-%d %H").replace(tzinfo=UTC)
            slot = int(moment.timestamp())
        else:
            slot *= 900
        result.append((slot, model, sums))
    return result


_MODEL_SUMS = (*_SUMS, "ttfb_sum", "ttfb_n", "duration_sum", "duration_n")


def model_rows(*, plan: RollupPlan) -> list[dict]:
    """Return per-model sums in selectors.usage.usage_by_model's row shape."""
    merged: dict[str, dict] = {}
    rows = _rolled(
        plan=plan,
        sql="SELECT model, SUM(requests) AS requests, SUM(errors) AS errors,"
        f" {_ROLLED_TOKENS}, SUM(cost_usd) AS cost, SUM(unpriced) AS unpriced,"
        " SUM(ttfb_sum) AS ttfb_sum, SUM(ttfb_count) AS ttfb_n,"
        " SUM(duration_sum) AS duration_sum, SUM(duration_count) AS duration_n"
        " FROM dashboard_modelhourrollup WHERE {hours} GROUP BY model",
    ) + _live(
        spans=plan.live,
        sql=f"SELECT model, COUNT(*) AS requests, {_ERROR_COUNT}, {_TOKEN_SUMS},"
        " COALESCE(SUM(cost_usd), 0.0) AS cost, 0 AS unpriced,"
        " COALESCE(SUM(ttfb_ms), 0.0) AS ttfb_sum, COUNT(ttfb_ms) AS ttfb_n,"
        " COALESCE(SUM(duration_ms), 0.0) AS duration_sum,"
        " COUNT(duration_ms) AS duration_n FROM {rows} GROUP BY model",
    )
    for row in rows:
        _add(merged.setdefault(row["model"], {"model": row["model"]}), row, _MODEL_SUMS)
    result = []
    for row in merged.values():
        row["cost"] = float(row["cost"])
        row["avg_ttfb"] = row["ttfb_sum"] / row["ttfb_n"] if row["ttfb_n"] else None
        row["avg_duration"] = (
            row["duration_sum"] / row["duration_n"] if row["duration_n"] else None
        )
        result.append(row)
    return sorted(result, key=lambda r: (-r["cost"], -r["requests"], r["model"]))


def tool_rows(*, plan: RollupPlan) -> list[dict]:
    """Return tools called with call and exchange counts (most called first)."""
    merged: dict[str, dict] = {}
    rows = _rolled(
        plan=plan,
        sql="SELECT tool, SUM(calls) AS calls, SUM(exchanges) AS exchanges"
        " FROM dashboard_toolrollup WHERE {hours} GROUP BY tool",
    ) + _live(
        spans=plan.live,
        sql="SELECT t.key AS tool, SUM(CAST(t.value AS INTEGER)) AS calls,"
        " COUNT(*) AS exchanges FROM {rows} AND tools_called <> '{{}}'"
        " AND json_type(tools_called) = 'object' GROUP BY t.key",
        join=", json_each(proxy_exchange.tools_called) AS t",
    )
    for row in rows:
        _add(merged.setdefault(row["tool"], {"tool": row["tool"]}), row,
             ("calls", "exchanges"))  # fmt: skip
    return sorted(merged.values(), key=lambda r: (-r["calls"], r["tool"]))


# --- sessions -------------------------------------------------------------------

_SESSION_FIELDS = (
    "first_at", "last_at", "requests", "turns", "subagent_calls", "errors",
    *_TOKEN_FIELDS, "cost", "model_list",
)  # fmt: skip


def session_page(
    *, plan: RollupPlan, limit: int, offset: int
) -> tuple[int, list[dict]]:
    """Return how many sessions were active and one page of them, latest first."""
    # Order every session by its last activity (one narrow column), then sum
    # only the page's sessions: a month holds thousands of sessions.
    days = ", ".join(["%s"] * len(plan.days)) or "NULL"
    latest = dict(
        _execute(
            "SELECT session_id, MAX(last_at) FROM dashboard_sessionrollup"
            f" WHERE day IN ({days}) GROUP BY session_id",
            list(plan.days),
        )
    )
    for span in plan.session_live:
        for row in _aggregate(
            filters=span,
            sql="SELECT session_id, MAX(started_at) AS last_at FROM {rows}"
            " AND session_id <> '' GROUP BY session_id",
        ):
            found = latest.get(row["session_id"])
            if found is None or row["last_at"] > found:
                latest[row["session_id"]] = row["last_at"]
    ordered = sorted(sorted(latest), key=latest.__getitem__, reverse=True)
    page = ordered[offset : offset + limit]
    return len(ordered), _session_details(plan=plan, sessions=page, days=days)


def _session_details(*, plan: RollupPlan, sessions: list[str], days: str) -> list:
    if not sessions:
        return []
    names = ", ".join(["%s"] * len(sessions))
    rows = _execute(
        "SELECT session_id, MIN(first_at), MAX(last_at), SUM(requests),"
        " SUM(turns), SUM(subagent_calls), SUM(errors),"
        + ", ".join(f"SUM({f})" for f in _TOKEN_FIELDS.values())
        + ", SUM(cost_usd), GROUP_CONCAT(model_list) FROM dashboard_sessionrollup"
        f" WHERE session_id IN ({names}) AND day IN ({days}) GROUP BY session_id",
        [*sessions, *plan.days],
    )
    for span in plan.session_live:
        rows += [
            tuple(row.values())
            for row in _aggregate(
                filters=span,
                sql=f"SELECT session_id, {_SESSION_SUMS} FROM {{rows}}"
                f" AND session_id IN ({names}) GROUP BY session_id",
                params=tuple(sessions),
            )
        ]
    merged: dict[str, dict] = {}
    for session, *values in rows:
        row = dict(zip(_SESSION_FIELDS, values, strict=True))
        found = merged.get(session)
        if found is None:
            merged[session] = {"session_id": session, **row}
            continue
        found["first_at"] = min(found["first_at"], row["first_at"])
        found["last_at"] = max(found["last_at"], row["last_at"])
        for name in _SESSION_FIELDS[2:-1]:
            found[name] += row[name]
        found["model_list"] = ",".join(
            filter(None, (found["model_list"], row["model_list"]))
        )
    return [merged[session] for session in sessions]


def _execute(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- pages: counts, top sessions, latency per bucket, slowest ---------------------


def request_counts(*, plan: RollupPlan) -> tuple[int, dict[str, int]]:
    """Return the number of exchanges and the errors by label (unordered)."""
    rows = _rolled(
        plan=plan,
        sql="SELECT label, SUM(requests) AS n FROM dashboard_usagerollup"
        " WHERE {hours} GROUP BY label",
    ) + _live(
        spans=plan.live,
        sql=f"SELECT {_LABEL_SQL} AS label, COUNT(*) AS n FROM {{rows}} GROUP BY label",
    )
    total, errors = 0, defaultdict(int)
    for row in rows:
        total += row["n"]
        if row["label"]:
            errors[row["label"]] += row["n"]
    return total, dict(errors)


def session_top(*, plan: RollupPlan, limit: int) -> list[dict]:
    """Return the sessions that cost the most, as page_selectors reads them live."""
    days = ", ".join(["%s"] * len(plan.days)) or "NULL"
    rows = _execute(
        "SELECT session_id, SUM(requests), SUM(cost_usd), SUM(output_tokens),"
        " MAX(last_at) FROM dashboard_sessionrollup"
        f" WHERE day IN ({days}) GROUP BY session_id",
        list(plan.days),
    )
    for span in plan.session_live:
        rows += [
            tuple(row.values())
            for row in _aggregate(
                filters=span,
                sql="SELECT session_id, COUNT(*), COALESCE(SUM(cost_usd), 0.0),"
                " COALESCE(SUM(output_tokens), 0), MAX(started_at) FROM {rows}"
                " AND session_id <> '' GROUP BY session_id",
            )
        ]
    merged: dict[str, dict] = {}
    for session, requests, cost, output, last in rows:
        row = merged.setdefault(
            session,
            {
                "session_id": session,
                "requests": 0,
                "cost": 0.0,
                "output": 0,
                "last_at": last,
            },  # fmt: skip
        )
        row["requests"] += requests
        row["cost"] += cost
        row["output"] += output
        row["last_at"] = max(row["last_at"], last)
    ordered = sorted(
        merged.values(), key=lambda r: (-r["cost"], -r["requests"], r["session_id"])
    )
    return ordered[:limit]


def bucket_percentiles(*, plan: RollupPlan, edges: list[datetime]) -> dict:
    """Return p50/p95 per bucket and model: {column: [row]}, rows in bucket order.

    Every edge must fall on a whole UTC hour, so each rolled-up hour lies in
    one bucket. A bucket whose hours are all marked is the same from one read
    to the next: its figures are kept in memory (rollups.bucket_get).
    """
    seconds = [int(edge.timestamp()) for edge in edges]
    markers = hour_markers(lo=plan.lo, hi=plan.hi)
    found: dict[int, dict] = {}
    open_hours: dict[int, int] = {}  # marked hour -> its bucket, if partly live
    for index in range(len(edges) - 1):
        lo, hi = seconds[index] // 3600, seconds[index + 1] // 3600
        if lo < hi and all(hour in markers for hour in range(lo, hi)):
            found[index] = bucket_get(
                lo=lo, hi=hi, markers=markers,
                build=lambda lo=lo, hi=hi: _ranks(_hour_values(lo=lo, hi=hi)),
            )  # fmt: skip
        else:
            for hour in range(lo, hi):
                if hour in markers:
                    open_hours[hour] = index
    values: dict[int, dict[str, tuple[array, array]]] = defaultdict(dict)
    for lo, hi in _runs(list(open_hours)):
        for hour, model, pair in _hour_blobs(lo=lo, hi=hi):
            _extend(values[open_hours[hour]], model, pair)
    bounds = [connection.ops.adapt_datetimefield_value(edge) for edge in edges]
    for row in _live(
        spans=plan.live,
        sql="SELECT CAST(started_at AS TEXT) AS at, model, ttfb_ms, duration_ms"
        " FROM {rows}",
    ):
        target = values[bisect_right(bounds, row["at"]) - 1]
        pair = target.setdefault(row["model"], (array("d"), array("d")))
        for column, value in enumerate((row["ttfb_ms"], row["duration_ms"])):
            if value is not None:
                pair[column].append(value)
    for index, per_model in values.items():
        found[index] = _ranks(per_model)
    result: dict[str, list[dict]] = {"ttfb_ms": [], "duration_ms": []}
    for index in sorted(found):
        for model, figures in sorted(found[index].items()):
            for column, picked in zip(result, figures, strict=True):
                if picked is not None:
                    n, p50, p95 = picked
                    result[column].append(
                        {"bucket": index, "model": model, "count": n,
                         "p50": p50, "p95": p95}
                    )  # fmt: skip
    return result


def _hour_blobs(*, lo: int, hi: int) -> list[tuple]:
    return [
        (hour, model, (ttfb, duration))
        for hour, model, ttfb, duration in _execute(
            "SELECT hour, model, ttfb, duration FROM dashboard_latencyrollup"
            " WHERE hour >= %s AND hour < %s",
            [lo, hi],
        )
    ]


def _hour_values(*, lo: int, hi: int) -> dict[str, tuple[array, array]]:
    per_model: dict[str, tuple[array, array]] = {}
    for _, model, pair in _hour_blobs(lo=lo, hi=hi):
        _extend(per_model, model, pair)
    return per_model


def _extend(per_model: dict, model: str, blobs: tuple[bytes, bytes]) -> None:
    pair = per_model.setdefault(model, (array("d"), array("d")))
    pair[0].frombytes(blobs[0])
    pair[1].frombytes(blobs[1])


def _ranks(per_model: dict[str, tuple[array, array]]) -> dict[str, tuple]:
    """Return {model: ((n, p50, p95) or None per column)}, nearest rank."""
    figures = {}
    for model, pair in per_model.items():
        picked = []
        for column in pair:
            ordered = sorted(column)
            n = len(ordered)
            picked.append(
                (n, ordered[percentile_index(50, n)], ordered[percentile_index(95, n)])
                if n
                else None
            )
        figures[model] = tuple(picked)
    return figures


def percentile_index(p: int, n: int) -> int:
    """Return the 0-based index of the nearest-rank p-th percentile of n values."""
    return max(1, -(-p * n // 100)) - 1


def slowest_spans(*, plan: RollupPlan, limit: int) -> tuple[float | None, list]:
    """Return a duration floor and the spans that hold the `limit` slowest calls.

    The `limit`-th largest rolled-up duration is a floor for the range's
    `limit` slowest (there are already that many at or above it); only hours
    whose largest duration reaches it, and the live edges, can hold them.
    """
    # Each hour's sorted durations end with its largest: read only those tails.
    tails, tops = array("d"), []
    for hour, tail in _execute(
        "SELECT hour, substr(duration, %s) FROM dashboard_latencyrollup"
        " WHERE hour >= %s AND hour < %s AND length(duration) > 0",
        [-8 * limit, plan.lo, plan.hi],
    ):
        tails.frombytes(tail)
        tops.append((tails[-1], hour))
    largest = heapq.nlargest(limit, tails)
    floor = largest[-1] if len(largest) == limit else None
    hours = sorted({hour for top, hour in tops if floor is None or top >= floor})
    spans = [Span(_instant(hour * 3600), _instant((hour + 1) * 3600)) for hour in hours]
    return floor, spans + list(plan.live)


def _instant(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
