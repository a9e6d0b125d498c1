"""One helper for the index's write transactions."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, transaction

T = TypeVar("T")
# SQLite: "database is locked", "busy"; PostgreSQL: "deadlock detected",
# "could not serialize access".
_RETRIED = ("locked", "busy", "deadlock detected", "could not serialize")


def write_retry(operation: Callable[[], T], *, attempts: int = 6) -> T:
    """Run operation in one IMMEDIATE transaction, retrying while the DB stays locked.

    Each attempt already waits up to the connection's busy timeout; the retries only
    matter when another writer holds the database longer than that. On PostgreSQL
    writers do not lock each other out; a deadlock with one (the ledger's rows are
    the relay's too) rolls the attempt back, and it is retried the same way.
    """
    for attempt in range(attempts):
        try:
            with transaction.atomic():
                return operation()
        except OperationalError as exc:
            if not any(word in str(exc) for word in _RETRIED):
                raise
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")
