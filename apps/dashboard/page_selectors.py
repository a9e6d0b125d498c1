"""Reads that only the dashboard pages need: lists, one exchange, the live poll.

Stats (totals, series, per model, per tool, performance) come from
apps.dashboard.selectors, the same functions the API uses. Lists never load
bodies or headers: they select LIST_FIELDS only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connection
from django.db.models import Q, QuerySet

from apps.dashboard.page_state import PER_PAGE, ExchangeFilter
from apps.dashboard.schemas import ExchangeFilter as StatsFilter
from apps.dashboard.selectors import exchange_filter, rolled
from apps.dashboard.selectors.usage import _from_rollups
from apps.proxy.models import Exchange

# The columns a row of a list (requests table, live feed) shows.
LIST_FIELDS = (
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
# The read-side covering index of the stats (apps/proxy migration 0002).
COVER_INDEX = "exchange_stats_cover"
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
    *, start: datetime, end: datetime, filters: ExchangeFilter, per_page: int = PER_PAGE
) -> ExchangePage:
    """Return one sorted page of exchanges in [start, end) matching filters."""
    queryset = _exchange_filtered(start=start, end=end, filters=filters)
    total = exchange_count(queryset=queryset)
    number = min(filters.page, max(1, -(-total // per_page)))
    offset = (number - 1) * per_page
    ids = _cover_ids(
        queryset=queryset, order_by=filters.order_by, limit=per_page, offset=offset
    )
    return ExchangePage(
        rows=_rows_by_ids(ids), number=number, total=total, per_page=per_page
    )


def _cover_ids(
    *, queryset: QuerySet[Exchange], order_by: tuple[str, ...], limit: int, offset: int
) -> list[int]:
    """Return the ids of one sorted page, read from the covering index alone.

    Rows carry compressed bodies of tens of KB; sorting them by cost or latency
    over a month would read every row. Every filter and sort column is in
    exchange_stats_cover (apps/proxy migration 0002), so the index suffices.
    """
    columns = {"started_at", "id", *(c.lstrip("-") for c in order_by)}
    assert columns <= _COVERED, columns - _COVERED
    where, params = _where_sql(queryset)
    order = ", ".join(
        f"{c.lstrip('-')} {'DESC' if c.startswith('-') else 'ASC'}" for c in order_by
    )
    sql = (
        f"SELECT id FROM proxy_exchange INDEXED BY {COVER_INDEX} WHERE {where}"
        f" ORDER BY {order} LIMIT %s OFFSET %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit, offset])
        return [row[0] for row in cursor.fetchall()]


def _rows_by_ids(ids: list[int]) -> list[Exchange]:
    """Return the list columns of these exchanges, in the order of ids."""
    found = Exchange.objects.only(*LIST_FIELDS).in_bulk(ids)
    return [found[pk] for pk in ids if pk in found]


def _where_sql(queryset: QuerySet[Exchange]) -> tuple[str, list]:
    """Compile a queryset's WHERE clause for raw SQL over proxy_exchange."""
    query = queryset.query
    try:
        sql, params = query.get_compiler(using=queryset.db).compile(query.where)
    except FullResultSet:  # no condition at all
        return "1 = 1", []
    except EmptyResultSet:  # a condition nothing can match (e.g. pk__in=[])
        return "1 = 0", []
    return sql, list(params)


def _exchange_filtered(
    *, start: datetime, end: datetime, filters: ExchangeFilter
) -> QuerySet[Exchange]:
    queryset = Exchange.objects.filter(started_at__gte=start, started_at__lt=end)
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
    return queryset


def exchange_model_names() -> list[str]:
    """Return every model name seen, for the filter menu (an index-only scan)."""
    names = Exchange.objects.order_by("model").values_list("model", flat=True)
    return [name for name in names.distinct() if name]


def exchange_detail(*, exchange_id: int) -> Exchange | None:
    """Return one exchange with everything (bodies included), or None."""
    return Exchange.objects.filter(pk=exchange_id).first()


def exchange_previous_in_session(*, exchange: Exchange) -> Exchange | None:
    """Return the same session and agent's previous messages call, bodies included."""
    if not exchange.session_id:
        return None
    return (
        Exchange.objects.filter(
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


def exchange_next_in_session(*, exchange: Exchange) -> int | None:
    """Return the id of the same session and agent's next messages call, or None."""
    if not exchange.session_id:
        return None
    return (
        Exchange.objects.filter(
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


def exchange_live_recent(*, limit: int = _LIVE_RECENT) -> list[Exchange]:
    """Return the newest exchanges plus every one still in flight, newest first."""
    recent = list(Exchange.objects.only(*LIST_FIELDS).order_by("-id")[:limit])
    seen = {row.pk for row in recent}
    in_flight = Exchange.objects.only(*LIST_FIELDS).filter(
        state=Exchange.State.IN_PROGRESS
    )
    extra = [
        row for row in in_flight.order_by("-started_at")[:limit] if row.pk not in seen
    ]
    return sorted(recent + extra, key=lambda row: row.pk, reverse=True)


def exchange_live_changes(*, after_id: int, watch_ids: list[int]) -> list[Exchange]:
    """Return exchanges inserted after after_id, and watched ones that have finished.

    New rows are found by primary key (rows are inserted when a call starts, or
    late with their end already set); finishes by re-reading the rows the feed
    showed in flight. Both use the primary key index, whatever the table size.
    """
    watched = watch_ids[-_LIVE_WATCH_MAX:]
    condition = Q(pk__gt=after_id) | (
        Q(pk__in=watched) & ~Q(state=Exchange.State.IN_PROGRESS)
    )
    return list(Exchange.objects.only(*LIST_FIELDS).filter(condition).order_by("id"))


def exchange_count(*, queryset: QuerySet[Exchange]) -> int:
    """Return how many exchanges a filtered queryset holds (from the covering index).

    With ANALYZE statistics SQLite may otherwise count through a skip-scan of
    another index plus a row lookup per exchange.
    """
    where, params = _where_sql(queryset)
    sql = f"SELECT COUNT(*) FROM proxy_exchange INDEXED BY {COVER_INDEX} WHERE {where}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def exchange_slowest(*, filters: StatsFilter, limit: int = 15) -> list[Exchange]:
    """Return the slowest finished exchanges of a filter's range (list columns).

    Over a rolled-up range only the hours whose largest duration reaches the
    range's `limit`-th largest (selectors.rolled.slowest_spans) and the live
    edges are read, instead of sorting a month of index entries.
    """
    found = _from_rollups(
        filters, lambda plan: rolled.slowest_spans(plan=plan, limit=limit)
    )
    if found is None or len(found[1]) > _MAX_SPANS:
        finished = exchange_filter(filters=filters).filter(duration_ms__isnull=False)
        order = ("-duration_ms", "-id")
        ids = _cover_ids(queryset=finished, order_by=order, limit=limit, offset=0)
        return _rows_by_ids(ids)
    floor, spans = found
    return _rows_by_ids(_span_ids(spans=spans, floor=floor, limit=limit))


# SQLite allows 500 terms in a compound SELECT; past a few dozen spans one
# sorted scan of the range is as cheap.
_MAX_SPANS = 48


def _span_ids(*, spans: list, floor: float | None, limit: int) -> list[int]:
    """Return the ids of the slowest exchanges inside some spans (no other filter).

    Each span is its own range scan: with the whole range in the WHERE too,
    SQLite would bound the index scan by the range instead of the span.
    """
    if not spans:
        return []
    adapt = connection.ops.adapt_datetimefield_value
    part = (
        f"SELECT id, duration_ms FROM proxy_exchange INDEXED BY {COVER_INDEX}"
        " WHERE started_at >= %s AND started_at < %s AND duration_ms >= %s"
    )
    sql = (
        " UNION ALL ".join([part] * len(spans))
        + " ORDER BY duration_ms DESC, id DESC LIMIT %s"
    )
    low = float("-inf") if floor is None else floor
    values = [v for span in spans for v in (adapt(span.start), adapt(span.end), low)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, limit])
        return [row[0] for row in cursor.fetchall()]


def session_top_by_cost(*, filters: StatsFilter, limit: int = 10) -> list[dict]:
    """Return the sessions of a filter's range that cost the most."""
    rows = _from_rollups(
        filters, lambda plan: rolled.session_top(plan=plan, limit=limit)
    )
    if rows is None:
        queryset = exchange_filter(filters=filters)
        rows = _session_top_live(queryset=queryset, limit=limit)
    for row in rows:  # raw SQL returns the stored text: naive UTC
        row["last_at"] = datetime.fromisoformat(row["last_at"]).replace(tzinfo=UTC)
    return rows


def _session_top_live(*, queryset: QuerySet[Exchange], limit: int) -> list[dict]:
    where, params = _where_sql(queryset)
    sql = (
        "SELECT session_id, COUNT(*) AS requests, COALESCE(SUM(cost_usd), 0.0) AS cost,"
        " COALESCE(SUM(output_tokens), 0) AS output, MAX(started_at) AS last_at"
        f" FROM proxy_exchange INDEXED BY {COVER_INDEX} WHERE {where}"
        " AND session_id <> '' GROUP BY session_id"
        " ORDER BY cost DESC, requests DESC, session_id LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def latency_by_bucket(
    *, filters: StatsFilter, edges: list[datetime]
) -> dict[str, list[dict]]:
    """Return latency_percentiles_by_bucket's rows for ttfb_ms and duration_ms.

    A rolled-up range whose bucket edges fall on whole UTC hours (every zone
    but the half-hour ones) is answered from the hourly sorted latencies plus
    the live edges: the same values, so the same nearest-rank picks.
    """
    utc = [edge.astimezone(UTC) for edge in edges]
    if all(edge.minute == edge.second == edge.microsecond == 0 for edge in utc):
        found = _from_rollups(
            filters, lambda plan: rolled.bucket_percentiles(plan=plan, edges=utc)
        )
        if found is not None:
            return found
    queryset = exchange_filter(filters=filters)
    return {
        column: latency_percentiles_by_bucket(
            queryset=queryset, edges=edges, column=column
        )
        for column in ("ttfb_ms", "duration_ms")
    }


def latency_percentiles_by_bucket(
    *, queryset: QuerySet[Exchange], edges: list[datetime], column: str
) -> list[dict]:
    """Return p50/p95 of column per (bucket index, model) over [edges[i], edges[i+1]).

    Same nearest-rank definition as apps.dashboard.selectors: the value at
    1-based rank ceil(p/100 * N); one statement over the covering index, ranks
    from ROW_NUMBER(). The bucket list is MATERIALIZED and CROSS JOINed first so
    SQLite range-scans the index once per bucket (otherwise it re-reads the JSON
    bounds for every exchange: 3x slower over a month).
    """
    assert column in ("ttfb_ms", "duration_ms")
    where, params = _where_sql(queryset)
    adapt = connection.ops.adapt_datetimefield_value
    bounds = json.dumps([[adapt(lo), adapt(hi)] for lo, hi in pairwise(edges)])
    sql = (
        "WITH b AS MATERIALIZED (SELECT CAST(key AS INTEGER) AS i,"
        " json_extract(value, '$[0]') AS lo,"
        " json_extract(value, '$[1]') AS hi FROM json_each(%s)),"
        f" v AS (SELECT b.i AS i, model AS g, {column} AS x FROM b"
        f" CROSS JOIN proxy_exchange INDEXED BY {COVER_INDEX}"
        f" WHERE started_at >= b.lo AND started_at < b.hi AND {where}"
        f" AND {column} IS NOT NULL),"
        " r AS (SELECT i, g, x, ROW_NUMBER() OVER (PARTITION BY i, g ORDER BY x) AS rn,"
        " COUNT(*) OVER (PARTITION BY i, g) AS n FROM v)"
        " SELECT i, g, n, rn, x FROM r WHERE rn = (50 * n + 99) / 100"
        " OR rn = (95 * n + 99) / 100 ORDER BY i, g, rn"
    )
    found: dict[tuple[int, str], dict] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [bounds, *params])
        for index, model, n, rank, value in cursor.fetchall():
            row = found.setdefault(
                (index, model), {"bucket": index, "model": model, "count": n}
            )
            if rank == (50 * n + 99) // 100:
                row["p50"] = value
            if rank == (95 * n + 99) // 100:
                row["p95"] = value
    return list(found.values())
