"""Reads of single exchanges and lists: list, detail, export, rate limits, health."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from django.apps import apps
from django.db import DatabaseError, connection
from django.db.models import (
    BooleanField,
    ExpressionWrapper,
    Q,
)
from django.db.models.expressions import RawSQL

from apps.dashboard import sql
from apps.dashboard.models import ApiToken
from apps.dashboard.schemas import ExchangeFilter
from apps.dashboard.selectors.base import (
    LIST_FIELDS,
    exchange_count,
    exchange_filter,
)
from apps.proxy.bodies import body_decode
from apps.proxy.models import Exchange
from apps.proxy.selectors import Viewer, exchange_visible, viewer_sql

# --- exchanges ---------------------------------------------------------------


def exchange_list(
    *, filters: ExchangeFilter, viewer: Viewer, limit: int, offset: int
) -> dict:
    """Return one page of exchanges (newest first, no bodies) and the match count."""
    qs = exchange_filter(filters=filters, viewer=viewer)
    items = list(
        qs.order_by("-started_at", "-id").values(*LIST_FIELDS)[offset : offset + limit]
    )
    count = exchange_count(queryset=qs, viewer=viewer)
    return {"count": count, "limit": limit, "offset": offset, "items": items}


def exchange_detail(*, exchange_id: int, viewer: Viewer) -> dict | None:
    """Return one exchange in full, bodies decoded to text, or None."""
    exchange = exchange_visible(viewer=viewer).filter(pk=exchange_id).first()
    if exchange is None:
        return None
    row = {
        field.attname: getattr(exchange, field.attname)
        for field in Exchange._meta.fields
    }
    row["uid"] = str(exchange.uid)
    row["request_body"] = _body_text(exchange.request_body)
    row["response_body"] = _body_text(exchange.response_body)
    return row


def _body_text(stored: bytes | memoryview | None) -> str | None:
    try:
        data = body_decode(stored)
    except Exception:  # a damaged stored body must not break the detail view
        return "(stored body could not be decoded)"
    return None if data is None else data.decode("utf-8", errors="replace")


def exchange_export_chunk(
    *,
    filters: ExchangeFilter,
    viewer: Viewer,
    after: tuple[datetime, int] | None,
    size: int,
) -> list[dict]:
    """Return the next `size` exchanges (oldest first) after a (started_at, id) key.

    Keyset pagination on the started_at index (which carries the rowid), so every
    chunk costs the same however deep the export is.
    """
    qs = exchange_filter(filters=filters, viewer=viewer)
    if after is not None:
        moment = connection.ops.adapt_datetimefield_value(after[0])
        qs = qs.filter(
            ExpressionWrapper(
                RawSQL(sql.on(connection.vendor).EXCHANGE_AFTER, (moment, after[1])),
                output_field=BooleanField(),
            )
        )
    return list(qs.order_by("started_at", "id").values(*LIST_FIELDS)[:size])


# --- rate limits ---------------------------------------------------------------


class Span(Protocol):
    """A range [start, end): the API's RangeFilter or a page's TimeRange."""

    @property
    def start(self) -> datetime: ...

    @property
    def end(self) -> datetime: ...


_UNIFIED_FIELDS = (
    "started_at", "unified_status", "unified_5h_utilization", "unified_5h_reset",
    "unified_7d_utilization", "unified_7d_reset", "ratelimits",
)  # fmt: skip


def ratelimit_state(*, filters: Span, viewer: Viewer, limit: int) -> dict:
    """Return the latest subscription limits before `to`, their history in the
    range (newest `limit` points) and the latest standard API-key limits, as
    the viewer's calls saw them."""
    unified = exchange_visible(viewer=viewer).filter(
        unified_5h_utilization__isnull=False
    )
    latest = (
        unified.filter(started_at__lt=filters.end)
        .order_by("-started_at")
        .values(*_UNIFIED_FIELDS)
        .first()
    )
    history = list(
        unified.filter(started_at__gte=filters.start, started_at__lt=filters.end)
        .order_by("-started_at")
        .values(*_UNIFIED_FIELDS[:-1])[:limit]
    )
    history.reverse()
    return {
        "unified": _unified_out(latest) if latest else None,
        "history": [_unified_point(row) for row in history],
        "standard": _standard_limits(end=filters.end, viewer=viewer),
    }


def _unified_out(row: dict) -> dict:
    claim = (row["ratelimits"] or {}).get("unified-representative-claim")
    return {
        **_unified_point(row),
        "five_hour_reset": row["unified_5h_reset"],
        "seven_day_reset": row["unified_7d_reset"],
        "representative_claim": None if claim is None else str(claim),
    }


def _unified_point(row: dict) -> dict:
    return {
        "at": row["started_at"],
        "status": row["unified_status"],
        "five_hour_utilization": row["unified_5h_utilization"],
        "seven_day_utilization": row["unified_7d_utilization"],
    }


def _standard_limits(*, end: datetime, viewer: Viewer) -> dict | None:
    mine, whose = viewer_sql(viewer=viewer)
    with connection.cursor() as cursor:  # one index probe: sql.STANDARD_LIMITS
        cursor.execute(
            sql.on(connection.vendor).STANDARD_LIMITS.format(where=mine),
            [connection.ops.adapt_datetimefield_value(end), *whose],
        )
        found = cursor.fetchone()
    if found is None:
        return None
    row = Exchange.objects.values("started_at", "model", "ratelimits").get(pk=found[0])
    values = {
        key: value
        for key, value in (row["ratelimits"] or {}).items()
        if not key.startswith("unified-")
    }
    return {"at": row["started_at"], "model": row["model"], "values": values}


# --- tokens, health ------------------------------------------------------------


def apitoken_list(*, username: str = "") -> list[ApiToken]:
    """Return API tokens (newest first), optionally of one user."""
    tokens = ApiToken.objects.select_related("user")
    if username:
        tokens = tokens.filter(user__username=username)
    return list(tokens)


def apitoken_find(*, key: str) -> list[ApiToken]:
    """Return the tokens whose id or displayed prefix is `key`."""
    match = Q(prefix=key)
    if key.isdigit():
        match |= Q(pk=int(key))
    return list(ApiToken.objects.filter(match)[:2])


def data_health() -> dict:
    """Return database status, index status and the newest exchange's start time."""
    try:
        newest = Exchange.objects.order_by("-started_at").values_list(
            "started_at", flat=True
        )
        latest = newest.first()
    except DatabaseError as exc:
        return {
            "status": "degraded",
            "database": f"error: {exc}",
            "index": index_health(),
            "newest_exchange": None,
        }
    return {
        "status": "ok",
        "database": "ok",
        "index": index_health(),
        "newest_exchange": latest.isoformat() if latest else None,
    }


def index_health() -> dict:
    """Return the transcript index's size, if the indexing app has built its tables."""
    try:
        config = apps.get_app_config("indexing")
        models = {model.__name__: model for model in config.get_models()}
        entry = models.get("Entry") or models.get("Message")
        if entry is None:
            return {"status": "absent", "entries": None}
        return {"status": "ok", "entries": entry._default_manager.count()}
    except (DatabaseError, LookupError) as exc:
        return {"status": f"error: {type(exc).__name__}", "entries": None}


def exchange_models(*, viewer: Viewer) -> list[str]:
    """Return the distinct model ids recorded (read from the model index)."""
    return list(
        exchange_visible(viewer=viewer)
        .exclude(model="")
        .order_by("model")
        .values_list("model", flat=True)
        .distinct()
    )
