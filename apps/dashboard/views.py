"""Server-rendered pages of the data deployment: one small view per page.

Views read the URL (apps.dashboard.page_state), call selectors and render;
every time is shown in the browser's zone (the tz cookie set by tz.js).
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from django.contrib.auth.decorators import login_not_required, login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.dateformat import format as dateformat

from apps.dashboard import (
    inspector,
    page_selectors,
    page_state,
    selectors,
    session_selectors,
)
from apps.dashboard.page_state import render_page
from apps.dashboard.schemas import WEEKDAYS
from apps.dashboard.selectors import reports
from apps.dashboard.selectors.ledger import Scope
from apps.dashboard.selectors.readiness import data_readiness
from apps.proxy.bodies import body_decode
from apps.proxy.models import Exchange

CONVERSATION_PAGE = 100  # messages per page of the conversation tab
INSPECTOR_TABS = (
    ("new", "What's new"),
    ("conversation", "Conversation"),
    ("response", "Response"),
    ("request", "System & tools"),
    ("headers", "Headers"),
    ("raw", "Raw JSON"),
)


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    """Answer 'what did I use and spend': totals, usage over time, limits, top lists."""
    zone = page_state.zone_from_request(request)
    span = page_state.range_from_query(request.GET, zone=zone, now=page_state.now_utc())
    metric = "cost" if request.GET.get("metric") == "cost" else "tokens"
    scope = Scope(span.start, span.end)
    series = selectors.usage_timeseries(scope=scope, zone=zone, unit=span.bucket)
    limits = selectors.ratelimit_state(filters=span, limit=1)["unified"]
    context = {
        "span": span,
        "metric": metric,
        "summary": selectors.usage_summary(scope=scope),
        "chart": _usage_chart(series, metric=metric, zone=zone),
        "models": selectors.usage_by_model(scope=scope),
        "limits": limits,
        "sessions": session_selectors.session_rows(
            start=span.start, end=span.end, sort="cost", limit=10
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
        report, Scope(page_state.day_start(span), span.end), zone,
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
    scope = Scope(span.start, span.end)
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
        "slowest": page_selectors.exchange_rows_by_ids(
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


@login_required
def requests_list(request: HttpRequest) -> HttpResponse:
    """List exchanges: filtered, sorted and paginated by GET parameters."""
    zone = page_state.zone_from_request(request)
    span = page_state.range_from_query(request.GET, zone=zone, now=page_state.now_utc())
    filters = page_state.filter_from_query(request.GET)
    page = page_selectors.exchange_page(start=span.start, end=span.end, filters=filters)
    export = page_state.query_string(
        **{"from": span.start.isoformat(), "to": span.end.isoformat()}, **filters.params
    )
    context = {
        "span": span,
        "filters": filters,
        "page": page,
        "models": page_selectors.exchange_model_names(),
        "states": Exchange.State.choices,
        "export_query": export,
        "problems": span.problems + filters.problems,
    }
    return render_page(request, "dashboard/requests.html", context, zone=zone)


@login_required
def exchange_detail(request: HttpRequest, exchange_id: int) -> HttpResponse:
    """Inspect one exchange; ?tab= picks the part shown (new messages by default)."""
    exchange = page_selectors.exchange_detail(exchange_id=exchange_id)
    if exchange is None:
        raise Http404("No such exchange.")
    tab = request.GET.get("tab", "new")
    if tab not in dict(INSPECTOR_TABS):
        tab = "new"
    page = page_state.int_param(request.GET, "page", low=1)
    context = {
        "exchange": exchange,
        "tab": tab,
        "tabs": INSPECTOR_TABS,
        "next_id": page_selectors.exchange_next_in_session(exchange=exchange),
        **_inspector_context(exchange, tab=tab, page=page),
    }
    zone = page_state.zone_from_request(request)
    return render_page(request, "dashboard/inspector.html", context, zone=zone)


def _inspector_context(exchange: Exchange, *, tab: str, page: int | None) -> dict:
    """Decode bodies (only through body_decode) and shape what the tab shows."""
    request_bytes = _decoded(exchange.request_body)
    body = inspector.json_load(request_bytes)
    view = inspector.request_view(body)
    previous = page_selectors.exchange_previous_in_session(exchange=exchange)
    start = 0
    if previous is not None:
        previous_body = inspector.json_load(_decoded(previous.request_body))
        previous_messages = (previous_body or {}).get("messages")
        if isinstance(previous_messages, list) and isinstance(body, dict):
            start = inspector.new_messages_start(
                body.get("messages") or [], previous_messages
            )
    context = {
        "view": view,
        "new_start": start,
        "new_messages": view["messages"][start:],
        "conversation": _conversation_page(view["messages"], page=page, start=start),
        "previous_id": previous.pk if previous else None,
        "ratelimits": sorted((exchange.ratelimits or {}).items()),
    }
    if tab == "response":
        context["response_blocks"] = _response_blocks(exchange)
        if exchange.is_streaming:
            stream = _decoded(exchange.response_body)
            context["events"] = inspector.stream_events(stream)
    if tab == "headers":
        context["request_headers"] = inspector.header_rows(exchange.request_headers)
        context["response_headers"] = inspector.header_rows(exchange.response_headers)
    if tab == "raw":
        context["raw_request"] = inspector.raw_text(request_bytes)
        response_bytes = _decoded(exchange.response_body)
        context["raw_response"] = inspector.raw_text(response_bytes)
        if exchange.route:  # routed: what the provider was sent and answered too
            for key in ("provider_request_body", "provider_response_body"):
                raw = _decoded(getattr(exchange, key))
                context[f"raw_{key}"] = inspector.raw_text(raw) if raw else None
    return context


def _conversation_page(messages: list[dict], *, page: int | None, start: int) -> dict:
    """Return one page of a long conversation (by default the one holding the new)."""
    size = CONVERSATION_PAGE
    pages = max(1, -(-len(messages) // size))
    if page is None or page > pages:
        page = min(start // size + 1, pages)
    return {
        "messages": messages[(page - 1) * size : page * size],
        "number": page,
        "pages": pages,
        "new_page": min(start // size + 1, pages),
        "numbers": range(1, pages + 1),
    }


def _response_blocks(exchange: Exchange) -> list[dict]:
    message = exchange.response_message
    if not isinstance(message, dict):
        return []
    return inspector.message_view(message, index=0, names={})["blocks"]


def _decoded(stored: bytes | memoryview | None) -> bytes | None:
    try:
        return body_decode(stored)
    except Exception:  # a damaged stored body is shown as absent, never a 500
        return None


@login_required
def live(request: HttpRequest) -> HttpResponse:
    """Show in-flight and just-finished exchanges; live.js keeps them current."""
    rows = page_selectors.exchange_live_recent()
    context = {
        "rows": rows,
        "after_id": max((row.pk for row in rows), default=0),
        "watch_ids": ",".join(
            str(row.pk) for row in rows if row.state == Exchange.State.IN_PROGRESS
        ),
    }
    zone = page_state.zone_from_request(request)
    return render_page(request, "dashboard/live.html", context, zone=zone)


@login_not_required  # public on purpose: status and a timestamp, no content
def health(request: HttpRequest) -> JsonResponse:
    """Report database and index status and the newest exchange time as JSON."""
    report = selectors.data_health()
    return JsonResponse(report, status=200 if report["database"] == "ok" else 503)


@login_not_required  # public on purpose, for load balancers: states, no content
def ready(request: HttpRequest) -> JsonResponse:
    """Say whether the data side can serve: database migrated, workers alive."""
    report = data_readiness()
    return JsonResponse(report, status=200 if report["status"] == "ready" else 503)
