"""Writes of the relay's record: exchanges recorded in short transactions, deleted
in short batches, each keeping the usage ledger (services.calls) in step."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from apps.proxy.bodies import (
    BodyBlocks,
    body_row_stored,
    bodyblock_lock,
    bodyblock_sweep,
)
from apps.proxy.models import Exchange
from apps.proxy.services.calls import call_record_exchanges, call_unrelay

_DELETE_BATCH = 2000
_OPEN = Exchange.State.IN_PROGRESS


def exchange_record(*, inserts: list[dict[str, Any]], finishes: list[Any]) -> None:
    """Insert new rows and complete rows already started, in one transaction,
    and enter the calls that finished in the ledger."""
    with transaction.atomic():
        # The sessions' blocks in one sorted step: taken one by one, in each
        # batch's order, two relays could each wait for the other.
        bodyblock_lock(
            scopes=[
                row["session_id"]
                for row in inserts
                if isinstance(row.get("request_body"), BodyBlocks)
            ]
        )
        if inserts:
            # A start re-read from the spill file after its finish already created
            # the row must not fail the batch: ON CONFLICT(uid) leaves that row as
            # it is. (Not INSERT OR IGNORE, which also drops rows breaking a CHECK
            # or NOT NULL rule without a word; those must fail, to be set aside.)
            Exchange.objects.bulk_create(
                [Exchange(**body_row_stored(row)) for row in inserts],
                update_conflicts=True,
                unique_fields=["uid"],
                update_fields=["uid"],
            )
        for finish in finishes:
            exchange_finish(outcome=finish.outcome, start_row=finish.start_row)
        ended = [row["uid"] for row in inserts if row.get("state", _OPEN) != _OPEN]
        call_record_exchanges(uids=ended + [f.outcome["uid"] for f in finishes])


def exchange_finish(
    *, outcome: dict[str, Any], start_row: Callable[[], dict[str, Any]]
) -> None:
    """Complete a finished call's row, or create it whole if its start never landed."""
    fields = {key: value for key, value in outcome.items() if key != "uid"}
    if not Exchange.objects.filter(uid=outcome["uid"]).update(**fields):
        Exchange.objects.create(**body_row_stored(start_row() | outcome))


def exchange_abandon_stale(*, before_ts: float, relay: str) -> int:
    """Mark exchanges that this relay's previous process left in progress as proxy
    errors. Other relays' exchanges are theirs to finish (rows from before relays
    had names, relay "", count as anyone's)."""
    before = datetime.fromtimestamp(before_ts, tz=UTC)
    stale = Exchange.objects.filter(
        state=_OPEN, started_at__lt=before, relay__in=[relay, ""]
    )
    with transaction.atomic():
        uids = list(stale.values_list("uid", flat=True))
        count = stale.update(
            state=Exchange.State.PROXY_ERROR,
            error_type="relay_stopped",
            error_message="The relay stopped before this exchange finished.",
        )
        call_record_exchanges(uids=uids)
    return count


def exchange_delete(*, queryset: QuerySet[Exchange]) -> int:
    """Delete the exchanges of a queryset in short batches; return how many.

    The one way exchanges are deleted (admin actions, prune): in the same
    transaction the ledger forgets the relay's side of their calls, so every
    figure reflects the delete at once, and the body blocks only they listed go.
    Batches keep each write transaction short, so the relay's recorder (one
    SQLite writer at a time) never waits long.
    """
    ids = queryset.order_by().values_list("pk", flat=True)
    deleted = 0
    while True:
        batch = list(ids[:_DELETE_BATCH])
        if not batch:
            return deleted
        with transaction.atomic():
            doomed = Exchange.objects.filter(pk__in=batch)
            scopes = set(
                doomed.exclude(session_id="").values_list("session_id", flat=True)
            )
            # Sessions before the ledger, as exchange_record takes them: two
            # writers taking both in opposite orders could each wait for the other.
            bodyblock_lock(scopes=sorted(scopes))
            call_unrelay(exchange_ids=batch)
            count, _ = doomed.delete()
            for scope in sorted(scopes):
                bodyblock_sweep(scope=scope)
        deleted += count
