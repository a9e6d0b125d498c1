"""Usage reports: by day, week and month in a time zone, per session, project and
model, and 5-hour blocks with burn rate, projection and the real limits.

Each report reads the ledger through selectors.ledger and returns a plain dict in
the shape of schemas.ReportOut or schemas.BlocksReportOut: the pages, the API and
`manage.py usage` all take theirs from here, so they cannot disagree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

from django.db import connection

from apps.dashboard import sql
from apps.dashboard.blocks import Activity, Block, blocks_build, gaps_between
from apps.dashboard.selectors.ledger import (
    ALL_TIME,
    Scope,
    ledger_quarter_models,
    ledger_rows,
    ledger_sums,
    moment_utc,
)
from apps.dashboard.selectors.sessions.listing import session_out, session_rows
from apps.dashboard.selectors.usage import TOKEN_KINDS, figures_of, usage_in_buckets
from apps.indexing import selectors as index
from apps.proxy.selectors import Viewer, call_session_ids, viewer_sql

PERIODS = {"daily": "day", "weekly": "week", "monthly": "month"}
# How far back blocks are chained from: a block's start depends on the block
# before it, back to the last five-hour pause.
BLOCK_LOOKBACK = timedelta(days=7)


def figures_row(row: dict | None) -> dict:
    """Return the figures every report row carries, from summed ledger rows."""
    figures = figures_of(row)
    return {
        "calls": figures["requests"],
        "errors": figures["errors"],
        "tokens": figures["tokens"],
        "total_tokens": figures["total_tokens"],
        "cost_usd": figures["cost_usd"],
        "unpriced_calls": figures["unpriced_requests"],
        "cache_savings_usd": figures["cache_savings_usd"],
    }


def _total(rows: list[dict]) -> dict:
    """Return the figures of several report rows added up."""
    tokens = {kind: sum(r["tokens"][kind] for r in rows) for kind in TOKEN_KINDS}
    return {
        "calls": sum(r["calls"] for r in rows),
        "errors": sum(r["errors"] for r in rows),
        "tokens": tokens,
        "total_tokens": sum(tokens.values()),
        "cost_usd": sum(r["cost_usd"] for r in rows),
        "unpriced_calls": sum(r["unpriced_calls"] for r in rows),
        "cache_savings_usd": sum(r["cache_savings_usd"] for r in rows),
    }


def period_edges(
    *, start: datetime, end: datetime, zone: tzinfo, unit: str, week_start: int = 0
) -> list[datetime]:
    """Return local period boundaries covering [start, end): the first at or
    before start (a day's midnight, a week's first day, a month's first)."""
    day = start.astimezone(zone).date()
    if unit == "week":
        day -= timedelta(days=(day.weekday() - week_start) % 7)
    elif unit == "month":
        day = day.replace(day=1)
    edges = [datetime.combine(day, time(), tzinfo=zone)]
    while edges[-1] < end:
        day = _next_period(day, unit)
        edges.append(datetime.combine(day, time(), tzinfo=zone))
    return edges


def _next_period(day: date, unit: str) -> date:
    if unit == "day":
        return day + timedelta(days=1)
    if unit == "week":
        return day + timedelta(days=7)
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _label(edge: datetime, unit: str) -> str:
    return edge.strftime("%Y-%m") if unit == "month" else edge.date().isoformat()


def report_periods(
    *, scope: Scope, zone: tzinfo, report: str, week_start: int = 0
) -> dict:
    """Return the daily, weekly or monthly report: every period of the range in
    `zone` (clipped to the range), each split by model."""
    unit = PERIODS[report]
    edges = period_edges(
        start=scope.start, end=scope.end, zone=zone, unit=unit, week_start=week_start
    )
    rows = []
    for index_, groups in enumerate(usage_in_buckets(scope=scope, edges=edges)):
        models = [{"model": key[0], **figures_row(row)} for key, row in groups.items()]
        models.sort(key=lambda m: (-m["cost_usd"], -m["total_tokens"], m["model"]))
        rows.append({
            "period": _label(edges[index_], unit),
            "start": max(edges[index_], scope.start),
            "end": min(edges[index_ + 1], scope.end),
            **_total(models),
            "unpriced_models": [m["model"] for m in models if m["unpriced_calls"]],
            "models": models,
        })  # fmt: skip
    return _report(report, scope, zone, rows)


def _report(report: str, scope: Scope, zone: tzinfo, rows: list[dict]) -> dict:
    return {
        "report": report, "tz": str(zone), "from": scope.start, "to": scope.end,
        "rows": rows, "totals": _total(rows),
    }  # fmt: skip


def report_models(*, scope: Scope, zone: tzinfo) -> dict:
    """Return the per-model report of a range."""
    rows = [
        {"model": row["model"], **figures_row(row)}
        for row in ledger_sums(scope=scope, by=("model",))
    ]
    rows.sort(key=lambda r: (-r["cost_usd"], -r["total_tokens"], r["model"]))
    return _report("models", scope, zone, rows)


def report_projects(*, scope: Scope, zone: tzinfo) -> dict:
    """Return the per-project report of a range (calls no transcript places in a
    project are one row, project None)."""
    projects = index.project_list(visible=call_session_ids(viewer=scope.viewer))
    paths = {project.pk: project.path for project in projects}
    rows = [
        {
            "project_id": row["project_id"],
            "project": paths.get(row["project_id"], ""),
            **figures_row(row),
        }
        for row in ledger_sums(scope=scope, by=("project_id",))
    ]
    rows.sort(key=lambda r: (-r["cost_usd"], r["project"]))
    return _report("projects", scope, zone, rows)


def project_list(*, viewer: Viewer) -> list[dict]:
    """Return the indexed projects with every call of theirs (all time) a
    viewer sees."""
    figures = {
        row["project_id"]: figures_row(row)
        for row in ledger_sums(
            scope=Scope(*ALL_TIME, viewer=viewer), by=("project_id",)
        )
    }
    return [
        {
            "id": project.pk,
            "path": project.path,
            "path_known": project.path_known,
            "session_count": project.session_count,
            "last_at": project.last_at,
            **figures.get(project.pk, figures_row(None)),
        }  # fmt: skip
        for project in index.project_list(visible=call_session_ids(viewer=viewer))
    ]


def report_sessions(*, scope: Scope, zone: tzinfo, limit: int, offset: int) -> dict:
    """Return the sessions with a call in the range, with their whole figures
    (as the sessions list and the session pages count them)."""
    rows, total = session_rows(
        viewer=scope.viewer, start=scope.start, end=scope.end,
        project_id=scope.project_id,
        model=scope.model or "", limit=limit, offset=offset,
    )  # fmt: skip
    items = [session_out(row) for row in rows]
    report = _report("sessions", scope, zone, [])
    report["totals"] = _total([_session_figures(item) for item in items])
    return {**report, "rows": items, "count": total, "limit": limit, "offset": offset}


def _session_figures(item: dict) -> dict:
    tokens = item["tokens"]
    return {
        "calls": item["requests"], "errors": item["errors"], "tokens": tokens,
        "total_tokens": sum(tokens.values()), "cost_usd": item["cost_usd"] or 0.0,
        "unpriced_calls": item["unpriced_requests"], "cache_savings_usd": 0.0,
    }  # fmt: skip


# --- 5-hour blocks -----------------------------------------------------------


def report_blocks(*, scope: Scope, zone: tzinfo, now: datetime) -> dict:
    """Return the 5-hour blocks overlapping the range, gaps between them, the
    active block's burn rate and projection, and the limits the relay saw."""
    wide = Scope(**{**scope.__dict__, "start": scope.start - BLOCK_LOOKBACK})
    blocks = [
        b for b in blocks_build(block_activity(scope=wide)) if b.end > scope.start
    ]
    limits = limits_in_spans(
        spans=[(b.start, min(b.end, now)) for b in blocks], viewer=scope.viewer
    )
    rows: list[dict] = []
    gaps = dict(gaps_between(blocks))
    active = None
    for number, block in enumerate(blocks):
        rows.append(_block_row(block, now, limits.get(number)))
        if block.is_active(now):
            active = rows[-1]
        if block.end in gaps:
            rows.append({"kind": "gap", "start": block.end, "end": gaps[block.end]})
    report = _report("blocks", scope, zone, [])
    latest = limits_in_spans(
        spans=[(datetime(1970, 1, 1, tzinfo=UTC), now)], viewer=scope.viewer
    )
    return {
        **report,
        "rows": rows,
        "totals": _block_totals(blocks),
        "active": active,
        "limits": latest.get(0),
    }


def block_activity(*, scope: Scope) -> list[Activity]:
    """Return the ledger's calls of a scope as quarter-hour activity."""
    names, rows = ledger_rows(scope=scope, by=("quarter",))
    models = ledger_quarter_models(scope=scope)
    activity = []
    for values in rows:
        row = dict(zip(names, values, strict=True))
        activity.append(Activity(
            first_at=moment_utc(row["first_at"]), last_at=moment_utc(row["last_at"]),
            calls=row["calls"], tokens=figures_of(row)["total_tokens"],
            cost_usd=row["cost_usd"], unpriced=row["unpriced_calls"],
            models=frozenset(models.get(row["quarter"], ())),
        ))  # fmt: skip
    return activity


def _block_row(block: Block, now: datetime, limits: dict | None) -> dict:
    return {
        "kind": "block", "start": block.start, "end": block.end,
        "first_at": block.first_at, "last_at": block.last_at,
        "active": block.is_active(now), "calls": block.calls,
        "total_tokens": block.tokens, "cost_usd": block.cost_usd,
        "unpriced_calls": block.unpriced, "models": sorted(block.models - {""}),
        "burn": block.burn(now), "limits": limits,
    }  # fmt: skip


def _block_totals(blocks: list[Block]) -> dict:
    return {
        "blocks": len(blocks),
        "calls": sum(b.calls for b in blocks),
        "total_tokens": sum(b.tokens for b in blocks),
        "cost_usd": sum(b.cost_usd for b in blocks),
        "unpriced_calls": sum(b.unpriced for b in blocks),
    }


def limits_in_spans(
    *, spans: list[tuple[datetime, datetime]], viewer: Viewer
) -> dict[int, dict]:
    """Return {span index: the newest subscription limits the viewer's calls saw
    in it}: 5-hour and weekly utilization, their resets and the status."""
    if not spans:
        return {}
    adapt = connection.ops.adapt_datetimefield_value
    values = ", ".join(["(%s, %s, %s)"] * len(spans))
    params = [
        value for i, (lo, hi) in enumerate(spans) for value in (i, adapt(lo), adapt(hi))
    ]
    mine, whose = viewer_sql(viewer=viewer)
    with connection.cursor() as cursor:
        cursor.execute(
            sql.on(connection.vendor).LIMITS_IN_SPANS.format(spans=values, where=mine),
            params + whose,
        )
        rows = cursor.fetchall()
    return {
        i: {
            "at": moment_utc(at),
            "status": status,
            "five_hour_utilization": five,
            "five_hour_reset": moment_utc(five_reset),
            "seven_day_utilization": seven,
            "seven_day_reset": moment_utc(seven_reset),
        }  # fmt: skip
        for i, at, status, five, five_reset, seven, seven_reset in rows
    }


def day_range(*, since: date, until: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """Return [local midnight of since, local midnight after until) in UTC."""
    start = datetime.combine(since, time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(until + timedelta(days=1), time(), tzinfo=zone)
    return start, end.astimezone(UTC)
