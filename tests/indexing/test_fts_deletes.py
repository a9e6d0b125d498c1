"""The FTS index stays consistent whatever deletes entries and blocks, in any order.

Django's flush (and any bulk delete by table) may delete indexing_block before
indexing_entry; the index must not be corrupted by that ("database disk image
is malformed" on the next search). And another program on the same file (a
backup script, the sqlite3 shell, datasette) must be able to read, delete and
vacuum it without any function of ours.
"""

from __future__ import annotations

import sqlite3

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
    assert fts_match_count(match='"rollback"') > 0

    with transaction.atomic(), connection.cursor() as cursor:
        for table in order:
            cursor.execute(f"DELETE FROM {table}")

    fts_integrity_check()
    assert fts_row_count() == 0
    assert fts_match_count(match='"rollback"') == 0
    index_sync(full=True)
    fts_integrity_check()
    assert fts_match_count(match='"rollback"') > 0


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
    assert fts_match_count(match='"downgrade"') == 0
    fts_integrity_check()


@pytest.mark.parametrize(
    "order",
    [("indexing_block", "indexing_entry"), ("indexing_entry", "indexing_block")],
)
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
    assert (fts_row_count(), fts_match_count(match='"rollback"')) == (0, 0)
    index_sync()
    assert fts_stale_count() == 0
    fts_integrity_check()
    index_sync(full=True)
    assert len(entry_search(visible=None, query="rollback")) > 0
    fts_integrity_check()


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
