"""One helper for the index's write transactions."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, transaction

T = TypeVar("T")


def write_retry(operation: Callable[[], T], *, attempts: int = 6) -> T:
    """Run operation in one IMMEDIATE transaction, retrying while the DB stays locked.

    Each attempt already waits up to the connection's busy timeout; the retries only
    matter when another writer holds the database longer than that.
    """
    for attempt in range(attempts):
        try:
            with transaction.atomic():
                return operation()
        except OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")
