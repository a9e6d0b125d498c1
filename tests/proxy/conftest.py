from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from django.db import connection

from apps.proxy.models import Exchange
from tests.conftest import database_env, wait_for


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


@pytest.fixture(autouse=True)
def settled_relays(request: pytest.FixtureRequest) -> Any:
    """Keep tests apart: every relay has written its recordings before and after."""
    if "relay_factory" not in request.fixturenames:
        yield
        return
    if request.node.get_closest_marker("django_db"):
        request.getfixturevalue("transactional_db")
    factory = request.getfixturevalue("relay_factory")
    for relay in factory.started:
        relay.settle()
    Exchange.objects.all().delete()
    yield
    for relay in factory.started:
        relay.settle()


LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""
# PostgreSQL's counterpart of SQLite's write lock (BEGIN IMMEDIATE): EXCLUSIVE
# mode makes every write wait and lets reads go on, as SQLite's WAL does.
PG_LOCKER = """
import sys, psycopg
db = psycopg.connect(sys.argv[1], autocommit=True)
db.execute("BEGIN")
db.execute("LOCK TABLE proxy_exchange, proxy_apicall IN EXCLUSIVE MODE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


class Lock:
    """Another process holding the database's write lock until released."""

    def __init__(self) -> None:
        if connection.vendor == "sqlite":
            script, target = LOCKER, connection.settings_dict["NAME"]
        else:
            script, target = PG_LOCKER, database_env()["CLAUDEMON_DATABASE_URL"]
        self.process = subprocess.Popen(
            [sys.executable, "-c", script, target],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.process.poll() is None:
            self.process.communicate("\n", timeout=30)


@pytest.fixture
def db_lock():
    locks: list[Lock] = []

    def take() -> Lock:
        locks.append(Lock())
        return locks[-1]

    yield take
    for lock in locks:
        lock.release()
