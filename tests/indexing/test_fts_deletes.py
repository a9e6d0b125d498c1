"""The FTS index stays consistent whatever order entries and their blocks go in.

Django's flush (and any bulk delete by table) may delete indexing_block before
indexing_entry; the index must not be corrupted by that ("database disk image
is malformed" on the next search).
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from apps.indexing.fts import fts_integrity_check, fts_match_count, fts_row_count
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
