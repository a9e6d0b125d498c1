"""Reads of the relay's records."""

from __future__ import annotations

import sqlite3

from django.conf import settings


def database_status() -> str:
    """Return 'ok' if the database answers a read within half a second, else the error."""
    # A fresh read-only connection: it must not wait behind the recorder's writes.
    uri = f"file:{settings.CLAUDEMON_DB_PATH}?mode=ro"
    try:
        with sqlite3.connect(uri, uri=True, timeout=0.5) as db:
            db.execute("SELECT 1 FROM proxy_exchange LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        return f"error: {exc}"
    return "ok"
