"""A session's calls as the ledger has them (figures only), for its page."""

from __future__ import annotations

from typing import NamedTuple

from django.db import connection

from apps.dashboard import sql
from apps.proxy.selectors import Viewer, viewer_sql

_CHUNK = 900


class CallRow(NamedTuple):
    """One call of a session as its page shows it: the ledger's figures."""

    key: str
    exchange_id: int | None
    agent_id: str
    at: str  # stored text, naive UTC
    kind: str
    model: str
    ttfb_ms: float | None
    duration_ms: float | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cost_usd: float | None
    transcribed: bool


def calls_by_key(
    *, keys: list[str], session_id: str, viewer: Viewer
) -> dict[str, CallRow]:
    """Return {ledger key: figures} for the keys the ledger counts in a session,
    of the calls a viewer sees."""
    wanted = sorted({k for k in keys if k})
    found: dict[str, CallRow] = {}
    whose, credentials = viewer_sql(viewer=viewer)
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        marks = ", ".join(["%s"] * len(chunk))
        where = f"session_id = %s AND key IN ({marks}){whose}"
        rows = _rows(where, [session_id, *chunk, *credentials])
        found.update((row.key, row) for row in rows)
    return found


def call_list_by_session(
    *, session_id: str, viewer: Viewer, limit: int = 5000
) -> list[CallRow]:
    """Return a session's calls a viewer sees (figures only) in time order."""
    if not session_id:
        return []
    whose, credentials = viewer_sql(viewer=viewer)
    return _rows("session_id = %s" + whose, [session_id, *credentials], limit=limit)


def _rows(where: str, params: list, *, limit: int = 50_000) -> list[CallRow]:
    # Raw SQL, as session_turn_marks (apps.indexing.selectors): thousands of rows.
    columns = ", ".join(
        {"at": "'' || at", "transcribed": "transcript IS NOT NULL"}.get(name, name)
        for name in CallRow._fields
    )
    statement = sql.on(connection.vendor).SESSION_CALLS.format(
        columns=columns, where=where
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [*params, limit])
        return [CallRow._make(row) for row in cursor.fetchall()]
