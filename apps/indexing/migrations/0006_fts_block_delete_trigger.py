"""Keep the FTS index consistent when blocks are deleted before their entries.

The entry delete trigger reads the entry's text from its block; when the block
was already gone (Django's flush deletes tables in name order, indexing_block
first) it issued an FTS5 'delete' with NULL text, which corrupts an
external-content index ("database disk image is malformed"). Now a block takes
its remaining entries out of the index before it goes, and the entry trigger
runs only while its block still exists.
https://www.sqlite.org/fts5.html#external_content_tables
"""

from django.db import migrations

from apps.proxy.migrations._by_vendor import ByVendor

ENTRY_DELETE_OLD = """
CREATE TRIGGER indexing_entry_fts_ad AFTER DELETE ON indexing_entry BEGIN
    INSERT INTO indexing_entry_fts(indexing_entry_fts, rowid, text, tools)
    VALUES ('delete', old.id, (
        SELECT indexing_text(b.id, b.data, old.slot) FROM indexing_block b
        WHERE b.id = old.block_id), old.tools);
END
"""

ENTRY_DELETE = """
CREATE TRIGGER indexing_entry_fts_ad AFTER DELETE ON indexing_entry
WHEN EXISTS (SELECT 1 FROM indexing_block b WHERE b.id = old.block_id) BEGIN
    INSERT INTO indexing_entry_fts(indexing_entry_fts, rowid, text, tools)
    VALUES ('delete', old.id, (
        SELECT indexing_text(b.id, b.data, old.slot) FROM indexing_block b
        WHERE b.id = old.block_id), old.tools);
END
"""

BLOCK_DELETE = """
CREATE TRIGGER indexing_block_fts_bd BEFORE DELETE ON indexing_block BEGIN
    INSERT INTO indexing_entry_fts(indexing_entry_fts, rowid, text, tools)
    SELECT 'delete', e.id, indexing_text(old.id, old.data, e.slot), e.tools
    FROM indexing_entry e WHERE e.block_id = old.id;
END
"""


class Migration(migrations.Migration):
    dependencies = [("indexing", "0005_entry_blocks")]

    operations = [
        ByVendor(sqlite=[migrations.RunSQL(
            sql=[
                "DROP TRIGGER IF EXISTS indexing_entry_fts_ad",
                ENTRY_DELETE,
                BLOCK_DELETE,
            ],
            reverse_sql=[
                "DROP TRIGGER IF EXISTS indexing_block_fts_bd",
                "DROP TRIGGER IF EXISTS indexing_entry_fts_ad",
                ENTRY_DELETE_OLD,
            ],
        )]),
    ]
