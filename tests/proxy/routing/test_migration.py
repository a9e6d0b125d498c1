"""The routing migration adds columns in place, keeping every index."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_the_routing_columns_leave_the_raw_sql_indexes_in_place():
    # Django's SQLite editor would rebuild the table for these NOT NULL columns
    # and drop the indexes migration 0002 made with RunSQL.
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "proxy_exchange")
        indexes = {name for name, c in constraints.items() if c["index"]}
        columns = {c.name for c in connection.introspection.get_table_description(
            cursor, "proxy_exchange"
        )}  # fmt: skip

    assert {"exchange_stats_cover", "exchange_provider_time"} <= indexes
    assert {"route", "provider", "provider_status", "routing"} <= columns
