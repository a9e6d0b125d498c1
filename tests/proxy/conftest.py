from __future__ import annotations

from typing import Any

from apps.proxy.models import Exchange
from tests.conftest import wait_for


def recorded(
    count: int = 1, *, timeout: float = 10.0, **filters: Any
) -> list[Exchange]:
    """Wait until `count` finished exchanges matching filters are in the database."""

    def finished() -> list[Exchange] | None:
        rows = list(
            Exchange.objects.filter(**filters)
            .exclude(state=Exchange.State.IN_PROGRESS)
            .order_by("started_at")
        )
        return rows if len(rows) >= count else None

    return wait_for(finished, timeout=timeout)
