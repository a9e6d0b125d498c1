"""The usage pages: the overview, the usage reports and performance.

Views read the URL (apps.dashboard.page_state), call selectors and render;
every time is shown in the browser's zone (the tz cookie set by tz.js).
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.utils.dateformat import format as dateformat

from apps.dashboard import page_state, selectors
from apps.dashboard.auth import request_viewer
from apps.dashboard.page_state import render_page
from apps.dashboard.schemas import WEEKDAYS
from apps.dashboard.selectors import reports
from apps.dashboard.selectors import requests as request_selectors
from apps.dashboard.selectors import sessions as session_selectors
from apps.dashboard.selectors.ledger import Scope


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    """Answer 'what did I use and spend': totals, usage over time, limits, top lists."""
    zone = page_state.zone_from_request(request)
    span = page_state.range_from_query(request.GET, zone=zone, now=page_state.now_utc())
    metric = "cost" if request.GET.get("metric") == "cost" else "tokens"
    viewer = request_viewer(request)
    scope = Scope(span.start, span.end, viewer=viewer)
    series = selectors.usage_timeseries(scope=scope, zone=zone, unit=span.bucket)
    limits = selectors.ratelimit_state(filters=span, viewer=viewer, limit=1)
    limits = limits["unified"]
    context = {
        "span": span,
        "metric": metric,
        "summary": selectors.usage_summary(scope=scope),
        "chart": _usage_chart(series, metric=metric, zone=zone),
        "models": selectors.usage_by_model(scope=scope),
        "routes": selectors.usage_by_route(scope=scope),
        "limits": limits,
        "sessions": session_selectors.session_rows(
            viewer=viewer, start=span.start, end=span.end, sort="cost", limit=10
        )[0],
        "tools": selectors.usage_by_tool(scope=scope)[:12],
        "problems": span.problems,
    }
    return render_page(request, "dashboard/overview.html", context, zone=zone)


def _usage_chart(series: dict, *, metric: str, zone: tzinfo) -> dict:
    """Turn the time series into chart rows: one stacked series per model."""
    buckets = series["buckets"]
    fmt = "H:i" if series["bucket"] == "hour" else "M j"
    labels = [dateformat(bucket["start"].astimezone(zone), fmt) for bucket in buckets]
    names = sorted({m["model"] or "(none)" for b in buckets for m in b["models"]})
    values = {name: [0.0] * len(buckets) for name in names}
    for i, bucket in enumerate(buckets):
        for row in bucket["models"]:
            amount = (
                row["cost_usd"] if metric == "cost" else sum(row["tokens"].values())
            )
            values[row["model"] or "(none)"][i] += amount
    return {
        "labels": labels,
        "series": [{"name": name, "values": values[name]} for name in names],
        "rows": [
            {"label": label, "values": [values[name][i] for name in names]}
            for i, label in enumerate(labels)
        ],
        "unit": "usd" if metric == "cost" else "",
    }


REPORT_TABS = (
    ("daily", "Daily"), ("weekly", "Weekly"), ("monthly", "Monthly"),
    ("sessions", "Sessions"), ("projects", "Projects"), ("models", "Models"),
    ("blocks", "5-hour blocks"),
)  # fmt: skip


@login_required
def usage(request: HttpRequest) -> HttpResponse:
    """Answer 'what did I use, when': the usage reports, each a chart and a table."""
    zone = page_state.zone_from_request(request)
    report = request.GET.get("report", "daily")
    report = report if report in dict(REPORT_TABS) else "daily"
    query = request.GET.copy()
    query.setdefault("range", "1y" if report == "monthly" else "30d")
    span = page_state.range_from_query(query, zone=zone, now=page_state.now_utc())
    metric = "cost" if request.GET.get("metric") == "cost" else "tokens"
    week_start = request.GET.get("week_start", "monday")
    week_start = week_start if week_start in WEEKDAYS else "monday"
    found = _report(
        report,
        Scope(page_state.day_start(span), span.end, viewer=request_viewer(request)),
        zone,
        week_start=WEEKDAYS.index(week_start),
    )  # fmt: skip
    context = {
        "span": span, "report": report, "tabs": REPORT_TABS, "metric": metric,
        "week_start": week_start, "weekdays": WEEKDAYS,
        "command": {"sessions": "session", "projects": "project",
                    "models": "model"}.get(report, report),
        "data": found, "chart": _report_chart(report, found, metric=metric, zone=zone),
        "problems": span.problems,
    }  # fmt: skip
    return render_page(request, "dashboard/usage.html", context, zone=zone)


def _report(report: str, scope: Scope, zone: tzinfo, *, week_start: int) -> dict:
    if report in ("daily", "weekly", "monthly"):
        return reports.report_periods(
            scope=scope, zone=zone, report=report, week_start=week_start
        )
    if report == "sessions":
        return reports.report_sessions(scope=scope, zone=zone, limit=100, offset=0)
    if report == "projects":
        return reports.report_projects(scope=scope, zone=zone)
    if report == "models":
        return reports.report_models(scope=scope, zone=zone)
    return reports.report_blocks(scope=scope, zone=zone, now=page_state.now_utc())


def _report_chart(report: str, data: dict, *, metric: str, zone: tzinfo) -> dict:
    """Chart a report: periods stacked by model, blocks and lists one bar each."""

    def amount(row: dict) -> float:
        return (row["cost_usd"] or 0.0) if metric == "cost" else row["total_tokens"]

    if report in ("daily", "weekly", "monthly"):
        names = sorted(
            {m["model"] or "(none)" for r in data["rows"] for m in r["models"]}
        )
        series = {name: [0.0] * len(data["rows"]) for name in names}
        for i, row in enumerate(data["rows"]):
            for m in row["models"]:
                series[m["model"] or "(none)"][i] += amount(m)
        labels = [row["period"] for row in data["rows"]]
        chart_series = [{"name": n, "values": v} for n, v in series.items()]
    else:
        rows = [r for r in data["rows"] if r.get("kind", "block") == "block"][:40]
        labels = [_report_label(report, r, zone) for r in rows]
        chart_series = [{"name": metric, "values": [amount(r) for r in rows]}]
    return {"labels": labels, "series": chart_series,
            "unit": "usd" if metric == "cost" else ""}  # fmt: skip


def _report_label(report: str, row: dict, zone: tzinfo) -> str:
    if report == "blocks":
        return dateformat(row["start"].astimezone(zone), "M j H:i")
    if report == "sessions":
        return (row["title"] or row["session_id"])[:24]
    if report == "projects":
        return (row["project"] or "(no transcript)").rsplit("/", 1)[-1]
    return row["model"] or "(none)"


@login_required
def performance(request: HttpRequest) -> HttpResponse:
    """Answer 'how fast, how reliable': latency percentiles, errors, slowest calls."""
    zone = page_state.zone_from_request(request)
    span = page_state.range_from_query(request.GET, zone=zone, now=page_state.now_utc())
    scope = Scope(span.start, span.end, viewer=request_viewer(request))
    edges = selectors.bucket_edges(
        start=span.start, end=span.end, zone=zone, unit=span.bucket
    )
    totals = selectors.figures_of(next(iter(selectors.ledger_sums(scope=scope)), None))
    total, errors = totals["requests"], selectors.error_counts(scope=scope)
    latencies = selectors.latency_by_bucket(scope=scope, edges=edges)
    context = {
        "span": span,
        "stats": selectors.performance_stats(scope=scope),
        "charts": {
            column: _latency_chart(rows, edges=edges, zone=zone)
            for column, rows in latencies.items()
        },
        "total": total,
        "errors": [
            {"type": name, "count": count, "rate": count / total if total else None}
            for name, count in errors.items()
        ],
        "error_total": sum(errors.values()),
        "slowest": request_selectors.exchange_rows_by_ids(
            [
                row["exchange_id"]
                for row in selectors.ledger_slowest(scope=scope, limit=15)
            ]
        ),
        "problems": span.problems,
    }
    return render_page(request, "dashboard/performance.html", context, zone=zone)


def _latency_chart(rows: list[dict], *, edges: list[datetime], zone: tzinfo) -> dict:
    """Chart p50 and p95 per model and bucket: one line per model and percentile."""
    fmt = "H:i" if len(edges) > 1 and (edges[1] - edges[0]).days == 0 else "M j"
    labels = [dateformat(edge.astimezone(zone), fmt) for edge in edges[:-1]]
    models = sorted({row["model"] or "(none)" for row in rows})
    series = []
    for color, model in enumerate(models):
        for p in ("p50", "p95"):
            values: list[float | None] = [None] * len(labels)
            for row in rows:
                if (row["model"] or "(none)") == model:
                    values[row["bucket"]] = row.get(p)
            series.append(
                {"name": f"{model} {p}", "values": values, "color": color,
                 "dashed": p == "p95", "legend": model if p == "p50" else ""}
            )  # fmt: skip
    table = [{"label": labels[row["bucket"]], **row} for row in rows]
    return {"labels": labels, "series": series, "table": table}
