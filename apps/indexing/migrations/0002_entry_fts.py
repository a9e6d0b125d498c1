"""The FTS5 index over entries: external content (the text lives once, in
indexing_entry), porter stemming over unicode61, kept in step by triggers so any
insert, update or delete of an entry (bulk, ORM or cascade) updates the index.
https://www.sqlite.org/fts5.html#external_content_tables
"""

from django.db import migrations

from apps.proxy.migrations._by_vendor import ByVendor

CREATE = [
    """
    CREATE VIRTUAL TABLE indexing_entry_fts USING fts5(
        text, tools,
        content='indexing_entry', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER indexing_entry_fts_ai AFTER INSERT ON indexing_entry
    WHEN new.text != '' OR new.tools != '' BEGIN
        INSERT INTO indexing_entry_fts(rowid, text, tools)
        VALUES (new.id, new.text, new.tools);
    END
    """,
    """
    CREATE TRIGGER indexing_entry_fts_ad AFTER DELETE ON indexing_entry
    WHEN old.text != '' OR old.tools != '' BEGIN
        INSERT INTO indexing_entry_fts(indexing_entry_fts, rowid, text, tools)
        VALUES ('delete', old.id, old.text, old.tools);
    END
    """,
    """
    CREATE TRIGGER indexing_entry_fts_au AFTER UPDATE OF text, tools ON indexing_entry
    BEGIN
        INSERT INTO indexing_entry_fts(indexing_entry_fts, rowid, text, tools)
        SELECT 'delete', old.id, old.text, old.tools
        WHERE old.text != '' OR old.tools != '';
        INSERT INTO indexing_entry_fts(rowid, text, tools)
        SELECT new.id, new.text, new.tools
        WHERE new.text != '' OR new.tools != '';
    END
    """,
]

DROP = [
    "DROP TRIGGER IF EXISTS indexing_entry_fts_au",
    "DROP TRIGGER IF EXISTS indexing_entry_fts_ad",
    "DROP TRIGGER IF EXISTS indexing_entry_fts_ai",
    "DROP TABLE IF EXISTS indexing_entry_fts",
]


class Migration(migrations.Migration):
    dependencies = [("indexing", "0001_initial")]

    operations = [
        ByVendor(sqlite=[migrations.RunSQL(sql=CREATE, reverse_sql=DROP)]),
    ]
