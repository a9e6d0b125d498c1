"""Reads that only the dashboard pages need: lists, one exchange, the live poll.

Usage figures (totals, series, per model, per tool, performance, slowest
calls, top sessions) come from apps.dashboard.selectors, over the usage ledger,
the same functions the API uses. Lists never load bodies or headers: they
select ROW_FIELDS only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import QuerySet

from apps.dashboard import sql
from apps.dashboard.page_state import PER_PAGE, RequestsPageFilter
from apps.dashboard.selectors.base import exchange_count, where_sql
from apps.proxy.models import Exchange
from apps.proxy.selectors import Viewer, exchange_visible

# The columns a row of a list (requests table, live feed) shows.
ROW_FIELDS = (
    "id",
    "started_at",
    "ended_at",
    "state",
    "status_code",
    "model",
    "model_requested",
    "session_id",
    "agent_id",
    "is_streaming",
    "path",
    "error_type",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cost_usd",
    "ttfb_ms",
    "duration_ms",
    "provider",
    "route",
)
_COVERED = {
    "id", "started_at", "model", "state", "status_code", "error_type", "is_streaming",
    "session_id", "agent_id", "path", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "cost_usd",
    "ttfb_ms", "duration_ms", "tools_called",
}  # fmt: skip
_LIVE_RECENT = 50
_LIVE_WATCH_MAX = 500


@dataclass(frozen=True)
class ExchangePage:
    rows: list[Exchange]
    number: int
    total: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def exchange_page(
    *,
    start: datetime,
    end: datetime,
    filters: RequestsPageFilter,
    viewer: Viewer,
    per_page: int = PER_PAGE,
) -> ExchangePage:
    """Return one sorted page of the exchanges a viewer sees in [start, end)
    matching filters."""
    queryset = _exchange_filtered(start=start, end=end, filters=filters, viewer=viewer)
    total = exchange_count(queryset=queryset, viewer=viewer)
    number = min(filters.page, max(1, -(-total // per_page)))
    offset = (number - 1) * per_page
    ids = _cover_ids(
        queryset=queryset, order_by=filters.order_by, viewer=viewer, limit=per_page,
        offset=offset,
    )  # fmt: skip
    return ExchangePage(
        rows=exchange_rows_by_ids(ids), number=number, total=total, per_page=per_page
    )


def _cover_ids(
    *,
    queryset: QuerySet[Exchange],
    order_by: tuple[str, ...],
    viewer: Viewer,
    limit: int,
    offset: int,
) -> list[int]:
    """Return the ids of one sorted page, read from the covering index alone.

    Rows carry compressed bodies of tens of KB; sorting them by cost or latency
    over a month would read every row. Every filter and sort column is in
    exchange_stats_cover (apps/proxy migration 0002), so the index suffices.
    """
    columns = {"started_at", "id", *(c.lstrip("-") for c in order_by)}
    if not columns <= _COVERED:  # names reach the SQL text: only known columns
        raise ValueError(f"cannot sort by {sorted(columns - _COVERED)}")
    if not viewer.sees_all:  # their credential's index narrows first (exchange_count)
        ids = queryset.order_by(*order_by).values_list("pk", flat=True)
        return list(ids[offset : offset + limit])
    where, params = where_sql(queryset)
    order = ", ".join(
        f"{c.lstrip('-')} {'DESC' if c.startswith('-') else 'ASC'}" for c in order_by
    )
    statement = sql.on(connection.vendor).EXCHANGE_PAGE_IDS.format(
        where=where, order=order
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [*params, limit, offset])
        return [row[0] for row in cursor.fetchall()]


def exchange_rows_by_ids(ids: list[int]) -> list[Exchange]:
    """Return the list columns of these exchanges, in the order of ids."""
    found = Exchange.objects.only(*ROW_FIELDS).in_bulk(ids)
    return [found[pk] for pk in ids if pk in found]


def _exchange_filtered(
    *, start: datetime, end: datetime, filters: RequestsPageFilter, viewer: Viewer
) -> QuerySet[Exchange]:
    queryset = exchange_visible(viewer=viewer).filter(
        started_at__gte=start, started_at__lt=end
    )
    if filters.model:
        queryset = queryset.filter(model=filters.model)
    if filters.state:
        queryset = queryset.filter(state=filters.state)
    if filters.status is not None:
        queryset = queryset.filter(status_code=filters.status)
    if filters.session:
        queryset = queryset.filter(session_id=filters.session)
    if filters.streaming is not None:
        queryset = queryset.filter(is_streaming=filters.streaming)
    if filters.tool:
        queryset = queryset.filter(tools_called__has_key=filters.tool)
    if filters.provider:
        queryset = queryset.filter(provider=filters.provider)
    return queryset


def exchange_model_names(*, viewer: Viewer) -> list[str]:
    """Return every model name seen, for the filter menu (an index-only scan)."""
    names = (
        exchange_visible(viewer=viewer)
        .order_by("model")
        .values_list("model", flat=True)
    )
    return [name for name in names.distinct() if name]


def exchange_detail(*, exchange_id: int, viewer: Viewer) -> Exchange | None:
    """Return one exchange with everything (bodies included), or None."""
    return exchange_visible(viewer=viewer).filter(pk=exchange_id).first()


def exchange_previous_in_session(
    *, exchange: Exchange, viewer: Viewer
) -> Exchange | None:
    """Return the same session and agent's previous messages call, bodies included."""
    if not exchange.session_id:
        return None
    return (
        exchange_visible(viewer=viewer)
        .filter(
            session_id=exchange.session_id,
            agent_id=exchange.agent_id,
            path=exchange.path,
            started_at__lte=exchange.started_at,
        )
        .exclude(pk=exchange.pk)
        .exclude(started_at=exchange.started_at, pk__gt=exchange.pk)
        .order_by("-started_at", "-id")
        .only("id", "started_at", "request_body")
        .first()
    )


def exchange_next_in_session(*, exchange: Exchange, viewer: Viewer) -> int | None:
    """Return the id of the same session and agent's next messages call, or None."""
    if not exchange.session_id:
        return None
    return (
        exchange_visible(viewer=viewer)
        .filter(
            session_id=exchange.session_id,
            agent_id=exchange.agent_id,
            path=exchange.path,
            started_at__gte=exchange.started_at,
        )
        .exclude(pk=exchange.pk)
        .exclude(started_at=exchange.started_at, pk__lt=exchange.pk)
        .order_by("started_at", "id")
        .values_list("id", flat=True)
        .first()
    )


def exchange_live_recent(
    *, viewer: Viewer, limit: int = _LIVE_RECENT
) -> list[Exchange]:
    """Return the newest exchanges plus every one still in flight, newest first."""
    visible = exchange_visible(viewer=viewer).only(*ROW_FIELDS)
    recent = list(visible.order_by("-id")[:limit])
    seen = {row.pk for row in recent}
    # The few in flight by the state index, then the viewer's among them: SQLite
    # preferred a viewer's credential index, reading their every row for its
    # state (140 ms for 20,000 calls; bench/pages.py --member).
    flying = Exchange.objects.filter(state=Exchange.State.IN_PROGRESS).values("pk")
    in_flight = visible.filter(pk__in=flying)
    extra = [
        row for row in in_flight.order_by("-started_at")[:limit] if row.pk not in seen
    ]
    return sorted(recent + extra, key=lambda row: row.pk, reverse=True)


def exchange_live_changes(
    *, after_id: int, watch_ids: list[int], viewer: Viewer, late_ids: Sequence[int] = ()
) -> list[Exchange]:
    """Return exchanges inserted after after_id, watched ones that have finished,
    and the late_ids (rows below after_id the feed has not shown yet).

    New rows are found by primary key (rows are inserted when a call starts, or
    late with their end already set); finishes by re-reading the rows the feed
    showed in flight. Both use the primary key index, whatever the table size.
    """
    watched = watch_ids[-_LIVE_WATCH_MAX:]
    visible = exchange_visible(viewer=viewer).only(*ROW_FIELDS).order_by()
    # A UNION, not an OR: SQLite scanned the whole table for the OR, reading
    # each row's credential past its bodies (3.9 s a poll over 200,000 rows for
    # a viewer who is not staff, 0.13 s for staff); each branch seeks the key.
    new = visible.filter(pk__gt=after_id)
    finished = visible.filter(pk__in=watched).exclude(state=Exchange.State.IN_PROGRESS)
    if late_ids:
        new = new.union(visible.filter(pk__in=late_ids))
    return list(new.union(finished).order_by("id"))


def exchange_ids_between(*, above: int, upto: int) -> list[int]:
    """Return the ids of the exchanges in (above, upto], from the key index alone."""
    rows = Exchange.objects.filter(pk__gt=above, pk__lte=upto).order_by()
    return list(rows.values_list("pk", flat=True))
