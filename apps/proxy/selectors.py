"""Reads of the relay's records, and whose calls a reader may see (Viewer)."""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection
from django.db.models import QuerySet

from apps.proxy import sql
from apps.proxy.models import ApiCall, Exchange
from apps.proxy.spill import lines_read, quarantine_files

# --- who sees what (issue 15 §4) ---------------------------------------------------
# Every read of calls (exchanges, ledger rows, sessions and their transcripts)
# takes a Viewer and applies it in one place per table: exchange_visible for
# the exchange table, viewer_sql for raw SQL over either table, and
# call_session_ids for what hangs off a session (transcripts, todos, search).


@dataclass(frozen=True)
class Viewer:
    """Whose calls a reader sees: `credentials` None for everyone's (staff),
    else the credential fingerprints they claimed (none: no call at all)."""

    credentials: tuple[str, ...] | None = None

    @property
    def sees_all(self) -> bool:
        return self.credentials is None


EVERYONE = Viewer()


def viewer_sql(*, viewer: Viewer, column: str = "credential") -> tuple[str, list]:
    """Return " AND <column> IN (...)" and its parameters ("" for everyone)."""
    if viewer.credentials is None:
        return "", []
    marks = ", ".join(["%s"] * len(viewer.credentials)) or "NULL"
    return f" AND {column} IN ({marks})", list(viewer.credentials)


def exchange_visible(*, viewer: Viewer) -> QuerySet[Exchange]:
    """Return the exchanges a viewer may see."""
    if viewer.credentials is None:
        return Exchange.objects.all()
    return Exchange.objects.filter(credential__in=viewer.credentials)


def call_session_ids(*, viewer: Viewer) -> QuerySet | None:
    """Return the ledger's session ids holding a call of the viewer (a subquery),
    or None for everyone: a session nobody claimed a call of is staff-only."""
    if viewer.credentials is None:
        return None
    calls = ApiCall.objects.filter(credential__in=viewer.credentials)
    return calls.exclude(session_id="").values("session_id").distinct()


def database_status() -> str:
    """Return 'ok' if the database answers a read within 0.5 s, else the error."""
    # A fresh connection: it must not wait behind the recorder's writes (SQLite: a
    # read-only one; PostgreSQL: one whose connect and statement time out).
    try:
        if connection.vendor == "sqlite":
            uri = f"file:{settings.CLAUDEMON_DB_PATH}?mode=ro"
            with sqlite3.connect(uri, uri=True, timeout=0.5) as db:
                db.execute(sql.EXCHANGE_ANY).fetchall()
        else:
            params = connection.get_connection_params()
            options = f"{params.get('options', '')} -c statement_timeout=500"
            params |= {"connect_timeout": 1, "options": options.strip()}
            with psycopg.connect(**params) as db:
                db.execute(sql.EXCHANGE_ANY).fetchall()
    except (sqlite3.Error, psycopg.Error) as exc:
        return f"error: {exc}"
    return "ok"


_CHUNK = 900  # below SQLite's bound-parameter limit on old builds


def exchange_ids_by_request_id(*, request_ids: Iterable[str]) -> dict[str, int]:
    """Return {upstream request-id: exchange id} for the ids that were relayed."""
    wanted = sorted({r for r in request_ids if r})
    found: dict[str, int] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = (
            Exchange.objects.filter(request_id__in=wanted[start : start + _CHUNK])
            .order_by("started_at")
            .values_list("request_id", "id")
        )
        found.update(rows)  # the latest exchange wins if an id repeats
    return found


_QUARANTINE_FIELDS = ("at", "reason", "kind", "uid", "method", "path", "query", "state")


def quarantine_list(*, limit: int = 50) -> list[dict[str, Any]]:
    """Return the newest steps the recorders set aside, newest first, without bodies.

    Read from CLAUDEMON_VAR_DIR/backlog/<database>.<relay>.quarantine.jsonl, where
    each relay appends them (JSON lines, secrets already fingerprinted).
    """
    steps: list[dict[str, Any]] = []
    for path in quarantine_files():
        newest: deque[dict[str, Any]] = deque(maxlen=limit)
        for line in lines_read(path):
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                record = {"reason": "unreadable quarantine line"}
            if not isinstance(record, dict):
                record = {"reason": "unreadable quarantine line"}
            newest.append({key: record.get(key) for key in _QUARANTINE_FIELDS})
        steps += newest
    steps.sort(key=lambda step: str(step.get("at") or ""), reverse=True)
    return steps[:limit]
