"""Reads for the dashboard and the stats API."""

from __future__ import annotations

from django.db import DatabaseError

from apps.proxy.models import Exchange


def data_health() -> dict:
    """Return database status and the newest exchange's start time."""
    try:
        newest = Exchange.objects.order_by("-started_at").values_list("started_at", flat=True)
        latest = newest.first()
    except DatabaseError as exc:
        return {"status": "degraded", "database": f"error: {exc}", "newest_exchange": None}
    return {
        "status": "ok",
        "database": "ok",
        "newest_exchange": latest.isoformat() if latest else None,
    }
