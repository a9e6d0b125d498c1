"""Stats API (ninja Router mounted under /api/ by claudemon.api, which sets auth).

Operations parse with a schema, call one selector and return. Bad parameters
are 422 (ninja's validation errors name the parameter); an unknown id is 404.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from ninja import Path, Query, Router
from ninja.errors import HttpError

from apps.dashboard import schemas, selectors
from apps.dashboard.auth import request_viewer
from apps.dashboard.selectors import reports
from apps.dashboard.selectors import sessions as session_selectors
from apps.dashboard.selectors.ledger import scope_of
from apps.proxy.selectors import Viewer

router = Router(tags=["stats"])

_MAX_ID = 2**63 - 1
EXPORT_CHUNK = 1000


@router.get("/exchanges", response=schemas.answers(schemas.ExchangeListOut))
def exchange_list(
    request: HttpRequest,
    filters: Query[schemas.ExchangeFilter],
    page: Query[schemas.PageIn],
) -> dict:
    """List exchanges (newest first, without bodies)."""
    return selectors.exchange_list(
        filters=filters, viewer=request_viewer(request), limit=page.limit,
        offset=page.offset,
    )  # fmt: skip


@router.get("/exchanges/export", response=schemas.answers(None))
def exchange_export(
    request: HttpRequest,
    filters: Query[schemas.ExchangeFilter],
    export: Query[schemas.ExportIn],
) -> StreamingHttpResponse:
    """Stream every matching exchange (oldest first) as CSV or JSON lines."""
    # The viewer is read now: the lines are produced after this view returns.
    viewer = request_viewer(request)
    lines = _export_lines(filters=filters, viewer=viewer, fmt=export.format)
    content_type = "text/csv" if export.format == "csv" else "application/x-ndjson"
    response = StreamingHttpResponse(
        lines, content_type=f"{content_type}; charset=utf-8"
    )
    name = f"exchanges-{filters.start:%Y%m%dT%H%M}-{filters.end:%Y%m%dT%H%M}"
    response["Content-Disposition"] = f'attachment; filename="{name}.{export.format}"'
    return response


async def _export_lines(
    *, filters: schemas.ExchangeFilter, viewer: Viewer, fmt: str
) -> AsyncIterator[str]:
    # An async iterator: under ASGI Django would buffer a sync one whole. Each
    # chunk is one keyset query, so memory stays constant for any export size.
    fetch = sync_to_async(selectors.exchange_export_chunk)
    if fmt == "csv":
        yield _csv_line(selectors.LIST_FIELDS)
    after: tuple[datetime, int] | None = None
    while True:
        rows = await fetch(
            filters=filters, viewer=viewer, after=after, size=EXPORT_CHUNK
        )
        if not rows:
            return
        if fmt == "csv":
            yield "".join(
                _csv_line([_cell(row[f]) for f in selectors.LIST_FIELDS])
                for row in rows
            )
        else:
            yield "".join(json.dumps(row, default=str) + "\n" for row in rows)
        after = (rows[-1]["started_at"], rows[-1]["id"])


# A spreadsheet runs a cell starting with one of these as a formula; recorded
# paths, models and ids come from whoever called the relay. OWASP's remedy: a
# leading ' makes it text. https://owasp.org/www-community/attacks/CSV_Injection
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def _csv_line(values: list | tuple) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


@router.get(
    "/exchanges/{exchange_id}",
    response=schemas.answers(schemas.ExchangeDetailOut, not_found=True),
)
def exchange_detail(
    request: HttpRequest, exchange_id: int = Path(..., ge=1, le=_MAX_ID)
) -> dict:
    """Return one exchange in full: headers, bodies (as text), assembled message."""
    exchange = selectors.exchange_detail(
        exchange_id=exchange_id, viewer=request_viewer(request)
    )
    if exchange is None:
        raise HttpError(404, f"No exchange {exchange_id}.")
    return exchange


@router.get(
    "/stats/summary", response=schemas.answers(schemas.SummaryOut), by_alias=True
)
def stats_summary(request: HttpRequest, filters: Query[schemas.UsageFilter]) -> dict:
    """Totals over a range: requests, errors, tokens, cost, cache, latency."""
    return selectors.usage_summary(
        scope=scope_of(filters, viewer=request_viewer(request))
    )


@router.get("/stats/timeseries", response=schemas.answers(schemas.TimeseriesOut))
def stats_timeseries(
    request: HttpRequest, filters: Query[schemas.TimeseriesFilter]
) -> HttpResponse:
    """Per hour or day in `tz` (DST-aware), per model: requests, tokens, cost."""
    series = selectors.usage_timeseries(
        scope=scope_of(filters, viewer=request_viewer(request)),
        zone=filters.zone,
        unit=filters.bucket,
    )
    # Validated and encoded by pydantic-core, not ninja's model_dump + json.dumps:
    # a month of hours is ~3,600 objects and 1,440 datetimes, which ninja's
    # Python encoder took 13 ms of CPU over and pydantic-core takes 2. Same
    # schema, same values (datetimes too); `response=` still documents it.
    body = schemas.TimeseriesOut.model_validate(series).model_dump_json()
    return HttpResponse(body, content_type="application/json; charset=utf-8")


@router.get("/stats/models", response=schemas.answers(list[schemas.ModelStatsOut]))
def stats_models(request: HttpRequest, filters: Query[schemas.UsageFilter]) -> list:
    """Per model: requests, errors, tokens, cost, cache hit rate, mean latency."""
    return selectors.usage_by_model(
        scope=scope_of(filters, viewer=request_viewer(request))
    )


@router.get("/stats/tools", response=schemas.answers(list[schemas.ToolStatsOut]))
def stats_tools(request: HttpRequest, filters: Query[schemas.UsageFilter]) -> list:
    """Tools the model actually called, with call counts."""
    return selectors.usage_by_tool(
        scope=scope_of(filters, viewer=request_viewer(request))
    )


@router.get("/stats/routes", response=schemas.answers(list[schemas.RouteStatsOut]))
def stats_routes(request: HttpRequest, filters: Query[schemas.UsageFilter]) -> list:
    """Per provider and route: the calls a rule of the routes file sent elsewhere."""
    return selectors.usage_by_route(
        scope=scope_of(filters, viewer=request_viewer(request))
    )


@router.get("/stats/performance", response=schemas.answers(schemas.PerformanceOut))
def stats_performance(
    request: HttpRequest, filters: Query[schemas.UsageFilter]
) -> dict:
    """p50/p90/p95/p99 of time to first byte and duration, overall and per model."""
    return selectors.performance_stats(
        scope=scope_of(filters, viewer=request_viewer(request))
    )


@router.get("/sessions", response=schemas.answers(schemas.SessionListOut))
def session_list(
    request: HttpRequest,
    filters: Query[schemas.UsageFilter],
    page: Query[schemas.PageIn],
) -> dict:
    """Sessions with a call in the range, newest activity first, with their
    whole figures (the same as their pages)."""
    rows, total = session_selectors.session_rows(
        viewer=request_viewer(request),
        start=filters.start, end=filters.end, project_id=filters.project,
        model=filters.model or "", limit=page.limit, offset=page.offset,
    )  # fmt: skip
    items = [session_selectors.session_out(row) for row in rows]
    return {"count": total, "limit": page.limit, "offset": page.offset, "items": items}


@router.get(
    "/projects", response=schemas.answers(list[schemas.ProjectUsageOut], params=False)
)
def projects(request: HttpRequest) -> list:
    """Projects (real paths), most recently active first, with every call of their
    sessions (from the usage ledger)."""
    return reports.project_list(viewer=request_viewer(request))


@router.get("/limits", response=schemas.answers(schemas.LimitsOut))
def limits(
    request: HttpRequest,
    filters: Query[schemas.RangeFilter],
    options: Query[schemas.LimitsIn],
) -> dict:
    """Subscription (unified) limits now and over the range; API-key limits."""
    return selectors.ratelimit_state(
        filters=filters, viewer=request_viewer(request), limit=options.limit
    )


# --- usage reports: the same selectors as the usage pages and `manage.py usage`


@router.get(
    "/usage/daily",
    response=schemas.answers(schemas.PeriodReportOut),
    by_alias=True,
    tags=["usage"],
)
def usage_daily(request: HttpRequest, filters: Query[schemas.ReportFilter]) -> dict:
    """Calls, tokens and cost per local day of `tz`, split by model."""
    return _periods(request, filters, "daily")


@router.get(
    "/usage/weekly",
    response=schemas.answers(schemas.PeriodReportOut),
    by_alias=True,
    tags=["usage"],
)
def usage_weekly(request: HttpRequest, filters: Query[schemas.ReportFilter]) -> dict:
    """Calls, tokens and cost per week (starting on `week_start`), by model."""
    return _periods(request, filters, "weekly")


@router.get(
    "/usage/monthly",
    response=schemas.answers(schemas.PeriodReportOut),
    by_alias=True,
    tags=["usage"],
)
def usage_monthly(request: HttpRequest, filters: Query[schemas.MonthlyFilter]) -> dict:
    """Calls, tokens and cost per calendar month in `tz`, by model."""
    return _periods(request, filters, "monthly")


def _periods(request: HttpRequest, filters: schemas.ReportFilter, report: str) -> dict:
    return reports.report_periods(
        scope=scope_of(filters, viewer=request_viewer(request)),
        zone=filters.zone, report=report,
        week_start=filters.week_start_index,
    )  # fmt: skip


@router.get(
    "/usage/sessions",
    response=schemas.answers(schemas.SessionReportOut),
    by_alias=True,
    tags=["usage"],
)
def usage_sessions(
    request: HttpRequest,
    filters: Query[schemas.ReportFilter],
    page: Query[schemas.PageIn],
) -> dict:
    """Sessions with a call in the range, each with its whole figures."""
    return reports.report_sessions(
        scope=scope_of(filters, viewer=request_viewer(request)),
        zone=filters.zone, limit=page.limit,
        offset=page.offset,
    )  # fmt: skip


@router.get(
    "/usage/projects",
    response=schemas.answers(schemas.ProjectReportOut),
    by_alias=True,
    tags=["usage"],
)
def usage_projects(request: HttpRequest, filters: Query[schemas.ReportFilter]) -> dict:
    """Calls, tokens and cost per project over the range."""
    return reports.report_projects(
        scope=scope_of(filters, viewer=request_viewer(request)), zone=filters.zone
    )


@router.get(
    "/usage/models",
    response=schemas.answers(schemas.ModelReportOut),
    by_alias=True,
    tags=["usage"],
)
def usage_models(request: HttpRequest, filters: Query[schemas.ReportFilter]) -> dict:
    """Calls, tokens and cost per model over the range."""
    return reports.report_models(
        scope=scope_of(filters, viewer=request_viewer(request)), zone=filters.zone
    )


@router.get(
    "/usage/blocks",
    response=schemas.answers(schemas.BlocksReportOut),
    by_alias=True,
    tags=["usage"],
)
def usage_blocks(request: HttpRequest, filters: Query[schemas.ReportFilter]) -> dict:
    """5-hour blocks: calls, tokens, cost, gaps, the active block's burn rate and
    projection, and the 5-hour and weekly utilization the relay saw."""
    return reports.report_blocks(
        scope=scope_of(filters, viewer=request_viewer(request)),
        zone=filters.zone,
        now=timezone.now(),
    )
