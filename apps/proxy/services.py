"""Writes of the relay: exchanges recorded in short transactions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import transaction

from apps.proxy.models import Exchange


def exchange_record(*, inserts: list[dict[str, Any]], finishes: list[Any]) -> None:
    """Insert new rows and complete rows already started, in one transaction."""
    with transaction.atomic():
        if inserts:
            # A start re-read from the spill file after its finish already created
            # the row must not fail the batch: ON CONFLICT(uid) leaves that row as
            # it is. (Not INSERT OR IGNORE, which also drops rows breaking a CHECK
            # or NOT NULL rule without a word; those must fail, to be set aside.)
            Exchange.objects.bulk_create(
                [Exchange(**row) for row in inserts],
                update_conflicts=True,
                unique_fields=["uid"],
                update_fields=["uid"],
            )
        for finish in finishes:
            exchange_finish(outcome=finish.outcome, start_row=finish.start_row)


def exchange_finish(
    *, outcome: dict[str, Any], start_row: Callable[[], dict[str, Any]]
) -> None:
    """Complete a finished call's row, or create it whole if its start never landed."""
    fields = {key: value for key, value in outcome.items() if key != "uid"}
    if not Exchange.objects.filter(uid=outcome["uid"]).update(**fields):
        Exchange.objects.create(**(start_row() | outcome))


def exchange_abandon_stale(*, before_ts: float) -> int:
    """Mark exchanges left in progress by a previous relay process as proxy errors."""
    before = datetime.fromtimestamp(before_ts, tz=UTC)
    return Exchange.objects.filter(
        state=Exchange.State.IN_PROGRESS, started_at__lt=before
    ).update(
        state=Exchange.State.PROXY_ERROR,
        error_type="relay_stopped",
        error_message="The relay stopped before this exchange finished.",
    )
