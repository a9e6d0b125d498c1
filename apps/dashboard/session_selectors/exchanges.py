"""The relay's figures of a session's calls, read by raw SQL (no bodies).

Session pages join these to the transcript index's calls by request-id.
"""

from __future__ import annotations

from typing import NamedTuple

from django.db import connection

_CHUNK = 900


class ExchangeRow(NamedTuple):
    """The figures of a relayed call a session page shows (no bodies, no model)."""

    id: int
    request_id: str
    agent_id: str
    started_at: str  # stored text, naive UTC
    ttfb_ms: float | None
    duration_ms: float | None
    model: str
    model_requested: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cost_usd: float | None
    path: str


def exchanges_by_request_id(
    *, request_ids: list[str], session_id: str
) -> dict[str, ExchangeRow]:
    """Return {request-id: exchange figures} for the ids the relay recorded
    under a session id (as figures.CALL_ROWS_SQL joins them)."""
    wanted = sorted({r for r in request_ids if r})
    found: dict[str, ExchangeRow] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        marks = ", ".join(["%s"] * len(chunk))
        where = f"session_id = %s AND request_id IN ({marks})"
        found.update(
            (row.request_id, row) for row in _exchange_rows(where, [session_id, *chunk])
        )  # ordered by start: the latest exchange wins if an id repeats
    return found


def exchange_list_by_session(
    *, session_id: str, limit: int = 5000
) -> list[ExchangeRow]:
    """Return a session's relayed calls (figures only) in time order."""
    if not session_id:
        return []
    return _exchange_rows("session_id = %s", [session_id], limit=limit)


def _exchange_rows(
    where: str, params: list, *, limit: int = 50_000
) -> list[ExchangeRow]:
    # Raw SQL for the same reason as session_turn_marks (apps.indexing.selectors):
    # thousands of rows.
    columns = ", ".join(
        "'' || started_at" if name == "started_at" else name
        for name in ExchangeRow._fields
    )
    sql = (
        f"SELECT {columns} FROM proxy_exchange WHERE {where}"
        " ORDER BY started_at, id LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        return [ExchangeRow._make(row) for row in cursor.fetchall()]
