"""The FTS index stays consistent whatever deletes entries and blocks, in any order.

Django's flush (and any bulk delete by table) may delete indexing_block before
indexing_entry; the index must not be corrupted by that ("database disk image
is malformed" on the next search). And another program on the same file (a
backup script, the sqlite3 shell, datasette) must be able to read, delete and
vacuum it without any function of ours.
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from apps.indexing.fts import (
    fts_integrity_check,
    fts_match_count,
    fts_row_count,
    fts_stale_count,
)
from apps.indexing.models import Entry
from apps.indexing.selectors import entry_search, entry_text
from apps.indexing.services import index_sync
from tests.indexing.conftest import conversation_write

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    "order",
    [("indexing_block", "indexing_entry"), ("indexing_entry", "indexing_block")],
)
def test_it_keeps_the_index_consistent_when_blocks_go_first_or_last(claude_tree, order):
    conversation_write(claude_tree)
    index_sync()
    assert fts_match_count(query="rollback") > 0

    with transaction.atomic(), connection.cursor() as cursor:
        for table in order:
            cursor.execute(f"DELETE FROM {table}")

    fts_integrity_check()
    assert fts_row_count() == 0
    assert fts_match_count(query="rollback") == 0
    index_sync(full=True)
    fts_integrity_check()
    assert fts_match_count(query="rollback") > 0


@pytest.mark.sqlite_only("another program opening the SQLite file")
def test_it_lets_plain_sqlite_read_delete_and_vacuum_the_file(claude_tree):
    conversation_write(claude_tree)
    index_sync()
    [hit] = entry_search(visible=None, query="downgrade")

    other = sqlite3.connect(connection.settings_dict["NAME"])  # no Django at all
    try:
        tables = other.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
        ).fetchall()
        for (name,) in tables:  # every table and view, as datasette shows them
            other.execute(f'SELECT * FROM "{name}" LIMIT 5').fetchall()
        other.execute("DELETE FROM indexing_entry WHERE id = ?", [hit.entry_id])
        other.commit()
        other.execute("VACUUM")
    finally:
        other.close()

    assert entry_search(visible=None, query="downgrade") == []  # gone at once
    assert (Entry.objects.count(), fts_row_count()) == (10, 10)
    fts_integrity_check()
    index_sync()  # the next pass takes its postings out of the index
    assert fts_stale_count() == 0
    assert fts_match_count(query="downgrade") == 0
    fts_integrity_check()


@pytest.mark.parametrize(
    "order",
    [("indexing_block", "indexing_entry"), ("indexing_entry", "indexing_block")],
)
@pytest.mark.sqlite_only("another program opening the SQLite file")
def test_it_follows_plain_sqlite_deleting_everything(claude_tree, order):
    conversation_write(claude_tree)
    index_sync()
    other = sqlite3.connect(connection.settings_dict["NAME"])
    try:
        for table in order:
            other.execute(f"DELETE FROM {table}")
        other.commit()
        other.execute("VACUUM")
    finally:
        other.close()
    assert (fts_row_count(), fts_match_count(query="rollback")) == (0, 0)
    index_sync()
    assert fts_stale_count() == 0
    fts_integrity_check()
    index_sync(full=True)
    assert len(entry_search(visible=None, query="rollback")) > 0
    fts_integrity_check()


@pytest.mark.sqlite_only("FTS5's contentless table and its delete command")
@pytest.mark.django_db  # rolled back: the index must not keep the ghost row
def test_it_reports_drift_between_the_index_and_the_entries(claude_tree):
    conversation_write(claude_tree)
    index_sync()
    entry = Entry.objects.exclude(tools="").first()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO indexing_entry_fts(indexing_entry_fts, rowid, text, tools)"
            " VALUES ('delete', %s, %s, %s)",
            [entry.pk, entry_text(entry=entry), entry.tools],
        )
    with pytest.raises(DatabaseError, match="1 entries not indexed"):
        fts_integrity_check()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO indexing_entry_fts(rowid, text, tools) VALUES (%s, %s, %s)",
            [entry.pk, entry_text(entry=entry), entry.tools],
        )
        cursor.execute(
            "INSERT INTO indexing_entry_fts(rowid, text, tools)"
            " VALUES (999999, 'ghost', '')"
        )
    with pytest.raises(DatabaseError, match="1 indexed rowids without an entry"):
        fts_integrity_check()


@pytest.mark.django_db
def test_it_refuses_to_change_an_entrys_text_or_tools(claude_tree):
    conversation_write(claude_tree)
    index_sync()
    entries = Entry.objects.exclude(tools="")
    with pytest.raises(IntegrityError, match="text and tools never change"):
        with transaction.atomic():
            entries.update(tools="Edit")
    assert entries.update(is_meta=True) == 2  # other columns are free
    fts_integrity_check()


@pytest.mark.parametrize(
    "order",
    [("indexing_block", "indexing_entry"), ("indexing_entry", "indexing_block")],
)
def test_it_follows_another_session_deleting_in_any_order(claude_tree, order):
    conversation_write(claude_tree)
    index_sync()
    [hit] = entry_search(visible=None, query="downgrade")
    with _other_connection() as other:
        other.execute(f"DELETE FROM indexing_entry WHERE id = {int(hit.entry_id)}")
    assert entry_search(visible=None, query="downgrade") == []  # gone at once
    assert (Entry.objects.count(), fts_row_count()) == (10, 10)
    fts_integrity_check()
    with _other_connection() as other:
        for table in order:
            other.execute(f"DELETE FROM {table}")
    assert (fts_row_count(), fts_match_count(query="rollback")) == (0, 0)
    index_sync(full=True)
    assert len(entry_search(visible=None, query="rollback")) > 0
    fts_integrity_check()


@contextmanager
def _other_connection() -> Iterator[Any]:
    """A second connection to the test database, outside Django, committed at exit:
    on SQLite the sqlite3 module, on PostgreSQL psycopg (a backup script, psql)."""
    if connection.vendor == "sqlite":
        other: Any = sqlite3.connect(connection.settings_dict["NAME"])
    else:
        other = psycopg.connect(**connection.get_connection_params())
    try:
        yield other
        other.commit()
    finally:
        other.close()


@pytest.mark.django_db
def test_it_reports_an_entry_missing_from_the_index(claude_tree):
    conversation_write(claude_tree)
    index_sync()
    entry = Entry.objects.exclude(tools="").first()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "INSERT INTO indexing_entry_fts(indexing_entry_fts, rowid, text, tools)"
                " VALUES ('delete', %s, %s, %s)",
                [entry.pk, entry_text(entry=entry), entry.tools],
            )
        else:
            cursor.execute(
                "DELETE FROM indexing_entry_tsv WHERE entry_id = %s", [entry.pk]
            )
    with pytest.raises(DatabaseError, match="1 entries not indexed"):
        fts_integrity_check()


# The quickest way each engine has to empty the tables: no row trigger fires.
EMPTY_ALL = {
    "sqlite": ["DELETE FROM indexing_entry", "DELETE FROM indexing_block"],
    "postgresql": ["TRUNCATE indexing_entry, indexing_block"],
}


def test_it_follows_the_tables_emptied_at_once(claude_tree):
    conversation_write(claude_tree)
    index_sync()
    with _other_connection() as other:
        for statement in EMPTY_ALL[connection.vendor]:
            other.execute(statement)
    assert (fts_row_count(), fts_match_count(query="rollback")) == (0, 0)
    assert entry_search(visible=None, query="rollback") == []
    index_sync(full=True)
    assert len(entry_search(visible=None, query="rollback")) > 0
    fts_integrity_check()


# The migration that filled each engine's index from the blocks (frozen copies).
FILLED_BY = {"sqlite": "0011_fts_plain_sql", "postgresql": "0012_entry_tsv"}
EMPTY_INDEX = {
    "sqlite": "INSERT INTO indexing_entry_fts(indexing_entry_fts)"
    " VALUES ('delete-all')",
    "postgresql": "DELETE FROM indexing_entry_tsv",
}


def test_it_fills_the_index_from_the_blocks_as_the_writer_does(claude_tree):
    conversation_write(claude_tree)
    index_sync()
    before = [
        (h.entry_id, h.rank)
        for h in entry_search(visible=None, query="alembic rollback*")
    ]
    with connection.cursor() as cursor:
        cursor.execute(EMPTY_INDEX[connection.vendor])
    migration = importlib.import_module(
        f"apps.indexing.migrations.{FILLED_BY[connection.vendor]}"
    )
    migration._index_fill(None, SimpleNamespace(connection=connection))
    fts_integrity_check()
    after = [
        (h.entry_id, h.rank)
        for h in entry_search(visible=None, query="alembic rollback*")
    ]
    assert after == before and before
