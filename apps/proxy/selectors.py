"""Reads of the relay's records."""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from collections.abc import Iterable
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection

from apps.proxy import sql
from apps.proxy.models import Exchange
from apps.proxy.spill import backlog_files, lines_read


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
    """Return the newest steps the recorder set aside, newest first, without bodies.

    Read from CLAUDEMON_VAR_DIR/backlog/<database>.quarantine.jsonl, where the relay
    appends them (JSON lines, secrets already fingerprinted).
    """
    newest: deque[dict[str, Any]] = deque(maxlen=limit)
    for line in lines_read(backlog_files().quarantine):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = {"reason": "unreadable quarantine line"}
        if not isinstance(record, dict):
            record = {"reason": "unreadable quarantine line"}
        newest.append({key: record.get(key) for key in _QUARANTINE_FIELDS})
    return list(reversed(newest))
