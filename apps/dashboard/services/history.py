"""Writes of history: deleting exchanges, and rebuilding the ledger from its
sources. Each brings the rollups up to date at once, so no read waits for them."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet

from apps.dashboard.services.rollups import rollup_refresh
from apps.indexing import services as index
from apps.proxy import services as relay
from apps.proxy.models import Exchange

_BATCH = 2000


def exchange_delete(*, queryset: QuerySet[Exchange]) -> int:
    """Delete exchanges (and the relay's side of their calls); return how many."""
    deleted = relay.exchange_delete(queryset=queryset)
    rollup_refresh()
    return deleted


def exchange_prune(*, before: datetime) -> int:
    """Delete every exchange that started before an instant; return how many."""
    return exchange_delete(queryset=Exchange.objects.filter(started_at__lt=before))


def ledger_rebuild() -> tuple[int, int]:
    """Enter every finished exchange and every indexed transcript call in the
    ledger (idempotent); return (exchanges read, sessions read)."""
    done = Exchange.objects.exclude(state=Exchange.State.IN_PROGRESS).order_by("pk")
    after, exchanges = 0, 0
    while True:
        batch = list(done.filter(pk__gt=after).values_list("pk", "uid")[:_BATCH])
        if not batch:
            break
        with transaction.atomic():
            relay.call_record_exchanges(uids=[uid for _, uid in batch])
        after, exchanges = batch[-1][0], exchanges + len(batch)
    sessions = index.sessions_refinalize()
    rollup_refresh()
    return exchanges, sessions
