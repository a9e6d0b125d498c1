"""Readiness of the data deployment: the database answers and is migrated, and
the workers (indexer, rollups) are alive."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

WORKERS = ("indexer", "rollups")
# A worker rewrites its heartbeat every few seconds; this many missed beats and it
# is taken for dead.
_MISSED_BEATS = 4


def data_readiness() -> dict[str, Any]:
    """Return whether the data side is ready, with the state of each part."""
    database = _database_state()
    workers = {name: worker_state(name=name) for name in WORKERS}
    ready = database == "ok" and all(w["alive"] for w in workers.values())
    return {
        "status": "ready" if ready else "not ready",
        "database": database,
        "workers": workers,
    }


def _database_state() -> str:
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return f"error: {exc}"
    if pending:
        return f"not migrated: {len(pending)} migrations to apply (manage.py migrate)"
    return "ok"


def worker_state(*, name: str) -> dict[str, Any]:
    """Return whether a worker's heartbeat is recent, and how old it is."""
    try:
        beat = json.loads(worker_heartbeat_path(name=name).read_text())
        age = time.time() - float(beat["at"])
        limit = float(beat["every"]) * _MISSED_BEATS
    except (OSError, ValueError, KeyError, TypeError):
        return {"alive": False, "pid": None, "heartbeat_age_s": None}
    return {
        "alive": age <= limit,
        "pid": beat.get("pid"),
        "heartbeat_age_s": round(age, 1),
    }


def worker_heartbeat_path(*, name: str) -> Path:
    """Return where the worker `name` proves it is alive (worker_heartbeat_start)."""
    return settings.CLAUDEMON_VAR_DIR / "heartbeat" / f"{name}.json"
