"""Shared ground of the dashboard selectors: filters and raw SQL aggregation."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import connection
from django.db.models import (
    Q,
    QuerySet,
)

from apps.dashboard.schemas import ExchangeFilter, RangeFilter
from apps.proxy.models import Exchange

PERCENTILES = (50, 90, 95, 99)
PERCENTILE_DEFINITION = (
    "nearest rank: the value at 1-based rank ceil(p/100 * N) of the N values "
    "sorted ascending"
)
MESSAGES_PATH = "/v1/messages"
LIST_FIELDS = (
    "id", "started_at", "ended_at", "ttfb_ms", "duration_ms", "method", "path",
    "query", "is_streaming", "model_requested", "model", "session_id", "agent_id",
    "state", "status_code", "message_id", "request_id", "stop_reason", "error_type",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens",
    "cache_write_1h_tokens", "cost_usd", "tools_called", "unified_status",
    "unified_5h_utilization", "unified_7d_utilization", "request_size",
    "response_size",
)  # fmt: skip
_FAILED_STATES = (Exchange.State.UPSTREAM_ERROR, Exchange.State.PROXY_ERROR)
# An error: the API said so (status or a mid-stream error event) or the relay
# failed. A client disconnect is the user's choice, not an error.
ERROR_Q = ~Q(error_type="") | Q(status_code__gte=400) | Q(state__in=_FAILED_STATES)
_ERROR_SQL = (
    "(error_type <> '' OR status_code >= 400 "
    "OR state IN ('upstream_error', 'proxy_error'))"
)
_TOKEN_FIELDS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_tokens",
    "cache_write_5m": "cache_write_5m_tokens",
    "cache_write_1h": "cache_write_1h_tokens",
}


# --- filtering ---------------------------------------------------------------


def exchange_filter(*, filters: RangeFilter) -> QuerySet[Exchange]:
    """Return the exchanges in a filter's range matching its attribute filters."""
    qs = Exchange.objects.filter(
        started_at__gte=filters.start, started_at__lt=filters.end
    )
    if not isinstance(filters, ExchangeFilter):
        # A rollup plan's live span (rollups.Span) carries the model filter.
        model, family = (
            getattr(filters, "model", None),
            getattr(filters, "family", None),
        )
        if model is not None:
            qs = qs.filter(model=model)
        if family is not None:
            qs = qs.filter(model__startswith=family)
        return qs
    exact = {
        "model": filters.model,
        "model__startswith": filters.family,
        "state": filters.state,
        "session_id": filters.session,
        "is_streaming": filters.streaming,
    }
    qs = qs.filter(**{key: value for key, value in exact.items() if value is not None})
    if filters.status:
        qs = qs.filter(_status_q(filters.status))
    if filters.tool:
        qs = qs.filter(tools_called__has_key=filters.tool)
    if filters.kind == "messages":
        qs = qs.filter(path__endswith=MESSAGES_PATH)
    elif filters.kind == "other":
        qs = qs.exclude(path__endswith=MESSAGES_PATH)
    return qs


def _status_q(status: str) -> Q:
    if status.endswith("xx"):
        low = int(status[0]) * 100
        return Q(status_code__gte=low, status_code__lt=low + 100)
    return Q(status_code=int(status))


def _where_sql(queryset: QuerySet) -> tuple[str, list]:
    """Compile a queryset's WHERE clause for raw SQL over proxy_exchange."""
    query = queryset.query
    sql, params = query.get_compiler(using=queryset.db).compile(query.where)
    return sql, list(params)


def _tokens(row: dict) -> dict[str, int]:
    return {kind: int(row[kind] or 0) for kind in _TOKEN_FIELDS}


def _hit_rate(tokens: dict[str, int]) -> float | None:
    """cache_read / (input + cache_read + cache writes): prompt served from cache."""
    prompt = sum(tokens[k] for k in _TOKEN_FIELDS if k != "output")
    return tokens["cache_read"] / prompt if prompt else None


# --- raw aggregation over the covering index -----------------------------------

# Every column the aggregates read is in this index (apps/proxy migration 0002),
# so a range scan never touches the wide rows holding bodies. INDEXED BY pins it:
# with ANALYZE statistics SQLite otherwise prefers a skip-scan of the
# (model, started_at) index plus a row lookup per exchange, 10x slower.
COVER_INDEX = "exchange_stats_cover"
_TOKEN_SUMS = ", ".join(
    f"COALESCE(SUM({field}), 0) AS {kind}" for kind, field in _TOKEN_FIELDS.items()
)
_ERROR_COUNT = f"SUM(CASE WHEN {_ERROR_SQL} THEN 1 ELSE 0 END) AS errors"


def _aggregate(
    *, filters: RangeFilter, sql: str, params: tuple = (), join: str = ""
) -> list[dict]:
    """Run `sql` with {rows} standing for the filtered exchanges; return dicts.

    `sql` is a fixed template of this module; user input only reaches the
    parameters (the compiled WHERE clause of exchange_filter and `params`).
    """
    where, where_params = _where_sql(exchange_filter(filters=filters))
    rows = f"proxy_exchange INDEXED BY {COVER_INDEX}{join} WHERE {where}"
    with connection.cursor() as cursor:
        cursor.execute(sql.format(rows=rows), [*where_params, *params])
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _utc(text: str | None) -> datetime | None:
    """Parse a datetime column read by raw SQL (stored as naive UTC text)."""
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)
