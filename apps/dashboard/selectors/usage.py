"""Usage figures: every number the overview, the performance page, the stats API
and the reports show, computed from the ledger (selectors.ledger) and nothing else.

Definitions (one place each):
- A call is a Messages call of the ledger (count_tokens calls are counted apart);
  probes and telemetry are exchanges, never calls.
- An error: a call whose error label is set (ledger.call_error).
- Cache hit rate: cache_read / (input + cache_read + cache writes).
- Percentiles: nearest rank, the value at rank ceil(p/100 * N) of the N values
  sorted ascending (PERCENTILE_DEFINITION).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from apps.dashboard.selectors.ledger import (
    Scope,
    ledger_latencies,
    ledger_route_sums,
    ledger_rows,
    ledger_sums,
    ledger_tools,
)
from apps.dashboard.sql import SUM_COLUMNS

PERCENTILES = (50, 90, 95, 99)
PERCENTILE_DEFINITION = (
    "nearest rank: the value at 1-based rank ceil(p/100 * N) of the N values "
    "sorted ascending"
)
TOKEN_KINDS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_tokens",
    "cache_write_5m": "cache_write_5m_tokens",
    "cache_write_1h": "cache_write_1h_tokens",
}


def figures_of(row: dict | None) -> dict:
    """Return the figures of a group of calls: counts, tokens, cost, cache."""
    row = row or {}
    tokens = {kind: int(row.get(column) or 0) for kind, column in TOKEN_KINDS.items()}
    calls = int(row.get("calls") or 0)
    return {
        "requests": calls,
        "errors": int(row.get("errors") or 0),
        "tokens": tokens,
        "total_tokens": sum(tokens.values()),
        "cost_usd": float(row.get("cost_usd") or 0.0),
        "unpriced_requests": int(row.get("unpriced_calls") or 0),
        "subagent_calls": int(row.get("subagent_calls") or 0),
        "fast_calls": int(row.get("fast_calls") or 0),
        "relayed_calls": int(row.get("relayed_calls") or 0),
        "cache_hit_rate": hit_rate(tokens),
        "cache_savings_usd": float(row.get("savings_usd") or 0.0),
        "avg_ttfb_ms": _mean(row.get("ttfb_sum"), row.get("ttfb_n")),
        "avg_duration_ms": _mean(row.get("duration_sum"), row.get("duration_n")),
        "first_at": row.get("first_at"),
        "last_at": row.get("last_at"),
    }


def hit_rate(tokens: dict[str, int]) -> float | None:
    """cache_read / (input + cache_read + cache writes): prompt served from cache."""
    prompt = sum(value for kind, value in tokens.items() if kind != "output")
    return tokens["cache_read"] / prompt if prompt else None


def _mean(total: float | None, count: int | None) -> float | None:
    return float(total or 0) / count if count else None


def usage_summary(*, scope: Scope) -> dict:
    """Return totals, errors by type, cache figures and latency percentiles."""
    # One grouped read gives the totals, the errors by label, the unpriced
    # models and the token counts (listed apart); one more the latencies.
    every_kind = Scope(**{**scope.__dict__, "kind": ""})
    rows = ledger_sums(scope=every_kind, by=("kind", "model", "error"))
    wanted = scope.kind or "messages"
    calls = [row for row in rows if row["kind"] == wanted]
    totals = figures_of(_summed(calls))
    errors: dict[str, int] = defaultdict(int)
    for row in calls:
        if row["error"]:
            errors[row["error"]] += int(row["calls"])
    latency = latency_percentiles(scope=scope)[None]
    return {
        "from": scope.start,
        "to": scope.end,
        **totals,
        "errors_by_type": dict(sorted(errors.items(), key=lambda i: (-i[1], i[0]))),
        "unpriced_models": sorted(
            {row["model"] or "(none)" for row in calls if row["unpriced_calls"]}
        ),
        "count_tokens_calls": sum(
            int(row["calls"]) for row in rows if row["kind"] == "count_tokens"
        ),
        "ttfb_ms": latency["ttfb_ms"],
        "duration_ms": latency["duration_ms"],
    }


def _summed(rows: list[dict]) -> dict:
    """Return the sums of several ledger rows (ledger_sums' shape)."""
    total: dict = {}
    for row in rows:
        for name in SUM_COLUMNS:
            total[name] = total.get(name, 0) + (row[name] or 0)
    return total


def error_counts(*, scope: Scope) -> dict[str, int]:
    """Count errors by label (the API's error type, http_<status>, relay state)."""
    rows = ledger_sums(scope=scope, by=("error",))
    counts = {row["error"]: int(row["calls"]) for row in rows if row["error"]}
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def usage_by_model(*, scope: Scope) -> list[dict]:
    """Return per model: requests, errors, tokens, cost, cache, mean latencies."""
    rows = ledger_sums(scope=scope, by=("model",))
    models = [{"model": row["model"], **figures_of(row)} for row in rows]
    return sorted(models, key=lambda item: (-item["cost_usd"], item["model"]))


def usage_by_route(*, scope: Scope) -> list[dict]:
    """Return per provider and route (routed calls only): the figures of
    figures_of, most expensive first, then most used."""
    rows = [
        {"provider": row["provider"], "route": row["route"], **figures_of(row)}
        for row in ledger_route_sums(scope=scope)
    ]
    return sorted(rows, key=lambda r: (-r["cost_usd"], -r["requests"], r["route"]))


def usage_by_tool(*, scope: Scope) -> list[dict]:
    """Return the tools the model called, with uses and calls using them."""
    return [
        {"tool": name, "calls": uses, "exchanges": calls}
        for name, uses, calls in ledger_tools(scope=scope)
    ]


# --- percentiles -------------------------------------------------------------


def percentile_rank(*, p: int, n: int) -> int:
    """Return the 1-based nearest rank of percentile p among n sorted values."""
    return max(1, -(-p * n // 100))


def percentiles(values: np.ndarray) -> dict:
    """Return the count and nearest-rank percentiles of some values.

    np.partition puts the values at the wanted ranks where sorting would: a
    selection in linear time (a month is 150,000 values; bench/usage.py).
    """
    n = len(values)
    if not n:
        return {"count": 0, **{f"p{p}": None for p in PERCENTILES}}
    ranks = [percentile_rank(p=p, n=n) - 1 for p in PERCENTILES]
    picked = np.partition(values, ranks)[ranks]
    return {
        "count": n,
        **{f"p{p}": float(v) for p, v in zip(PERCENTILES, picked, strict=True)},
    }


def latency_percentiles(
    *, scope: Scope, by_model: bool = False
) -> dict[str | None, dict]:
    """Return {model or None (overall): {ttfb_ms: pct, duration_ms: pct}}."""
    groups = ledger_latencies(scope=scope, by=("model",))
    empty = np.empty(0)
    everything = (
        np.concatenate([t for t, _ in groups.values()] or [empty]),
        np.concatenate([d for _, d in groups.values()] or [empty]),
    )
    chosen: dict = {None: everything}
    if by_model:
        chosen.update({key[0]: pair for key, pair in groups.items()})
    return {
        model: {"ttfb_ms": percentiles(ttfb), "duration_ms": percentiles(duration)}
        for model, (ttfb, duration) in chosen.items()
    }


def performance_stats(*, scope: Scope) -> dict:
    """Return latency percentiles overall and per model."""
    by_group = latency_percentiles(scope=scope, by_model=True)
    models = sorted(
        ({"model": model, **metrics} for model, metrics in by_group.items() if model),
        key=lambda item: (-item["duration_ms"]["count"], item["model"]),
    )
    return {
        "definition": PERCENTILE_DEFINITION,
        "overall": by_group[None],
        "models": models,
    }


def latency_by_bucket(*, scope: Scope, edges: list[datetime]) -> dict[str, list]:
    """Return p50/p95 of each latency per local bucket and model, for charts."""
    groups = ledger_latencies(scope=scope, by=("model",), edges=edges)
    charts: dict[str, list] = {"ttfb_ms": [], "duration_ms": []}
    for (bucket, model), pair in sorted(groups.items()):
        for column, values in zip(charts, pair, strict=True):
            ranks = percentiles(values)
            if ranks["count"]:
                charts[column].append(
                    {"bucket": bucket, "model": model, "count": ranks["count"],
                     "p50": ranks["p50"], "p95": ranks["p95"]}
                )  # fmt: skip
    return charts


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


def usage_in_buckets(
    *, scope: Scope, edges: list[datetime], by: tuple[str, ...] = ("model",)
) -> list[dict[tuple, dict]]:
    """Return, per bucket [edges[i], edges[i+1]), {group: summed ledger row}.

    Every zone's offset is a whole number of quarter hours, so each of the
    ledger's quarter hours lies inside one bucket; a range's partial edge
    quarters are clipped by the scope itself.
    """
    names, rows = ledger_rows(scope=scope, by=by, edges=edges)
    buckets: list[dict[tuple, dict]] = [{} for _ in edges[:-1]]
    last = len(buckets) - 1
    for row in rows:
        found = dict(zip(names, row, strict=True))
        index = min(max(found["bucket"], 0), last)
        buckets[index][tuple(found[name] for name in by)] = found
    return buckets


def usage_timeseries(*, scope: Scope, zone: ZoneInfo, unit: str) -> dict:
    """Return requests, tokens, cost and errors per local bucket, split by model."""
    edges = bucket_edges(start=scope.start, end=scope.end, zone=zone, unit=unit)
    buckets = []
    for index, groups in enumerate(usage_in_buckets(scope=scope, edges=edges)):
        models = [
            _point(row["model"], figures_of(row))
            for (_model,), row in sorted(groups.items())
        ]
        total = _sum_points(models)
        buckets.append(
            {"start": edges[index], "end": edges[index + 1], **total, "models": models}
        )
    return {"bucket": unit, "tz": str(zone), "buckets": buckets}


def _point(model: str, figures: dict) -> dict:
    return {
        "model": model,
        "requests": figures["requests"],
        "errors": figures["errors"],
        "tokens": figures["tokens"],
        "cost_usd": figures["cost_usd"],
    }


def _sum_points(points: list[dict]) -> dict:
    tokens: dict[str, int] = defaultdict(int)
    for point in points:
        for kind, value in point["tokens"].items():
            tokens[kind] += value
    return {
        "requests": sum(p["requests"] for p in points),
        "errors": sum(p["errors"] for p in points),
        "tokens": {kind: tokens[kind] for kind in TOKEN_KINDS},
        "cost_usd": sum(p["cost_usd"] for p in points),
    }


def usage_by_project(*, scope: Scope) -> dict[int | None, dict]:
    """Return {project id (None: no transcript placed it): figures}."""
    rows = ledger_sums(scope=scope, by=("project_id",), times=True)
    return {row["project_id"]: figures_of(row) for row in rows}
