"""Keep the searchable text compressed: the FTS5 index reads it through a view.

indexing_entry.text becomes text_packed (apps.indexing.rawlines.text_pack); the
external-content FTS5 table now reads indexing_entry_fts_source, a view that
unpacks it with the SQL function indexing_text() (registered on every connection
by apps.indexing.apps). Triggers keep the index in step as before, now for every
row (FTS5's integrity-check expects one index row per content row).
https://www.sqlite.org/fts5.html#external_content_tables
"""

from django.db import migrations, models

OLD_FTS = [
    "DROP TRIGGER IF EXISTS indexing_entry_fts_au",
    "DROP TRIGGER IF EXISTS indexing_entry_fts_ad",
    "DROP TRIGGER IF EXISTS indexing_entry_fts_ai",
    "DROP TABLE IF EXISTS indexing_entry_fts",
]

NEW_FTS = [
    """
    CREATE VIEW indexing_entry_fts_source AS
    SELECT id, indexing_text(text_packed) AS text, tools FROM indexing_entry
    """,
    """
    CREATE VIRTUAL TABLE indexing_entry_fts USING fts5(
        text, tools,
        content='indexing_entry_fts_source', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER indexing_entry_fts_ai AFTER INSERT ON indexing_entry BEGIN
        INSERT INTO indexing_entry_fts(rowid, text, tools)
        VALUES (new.id, indexing_text(new.text_packed), new.tools);
    END
    """,
    """
    CREATE TRIGGER indexing_entry_fts_ad AFTER DELETE ON indexing_entry BEGIN
        INSERT INTO indexing_entry_fts(indexing_entry_fts, rowid, text, tools)
        VALUES ('delete', old.id, indexing_text(old.text_packed), old.tools);
    END
    """,
    """
    CREATE TRIGGER indexing_entry_fts_au AFTER UPDATE OF text_packed, tools
    ON indexing_entry BEGIN
        INSERT INTO indexing_entry_fts(indexing_entry_fts, rowid, text, tools)
        VALUES ('delete', old.id, indexing_text(old.text_packed), old.tools);
        INSERT INTO indexing_entry_fts(rowid, text, tools)
        VALUES (new.id, indexing_text(new.text_packed), new.tools);
    END
    """,
]

DROP_NEW = [
    "DROP TRIGGER IF EXISTS indexing_entry_fts_au",
    "DROP TRIGGER IF EXISTS indexing_entry_fts_ad",
    "DROP TRIGGER IF EXISTS indexing_entry_fts_ai",
    "DROP TABLE IF EXISTS indexing_entry_fts",
    "DROP VIEW IF EXISTS indexing_entry_fts_source",
]


def _old_fts():
    from importlib import import_module

    return import_module("apps.indexing.migrations.0002_entry_fts").CREATE


class Migration(migrations.Migration):
    dependencies = [("indexing", "0002_entry_fts")]

    operations = [
        migrations.RunSQL(sql=OLD_FTS, reverse_sql=_old_fts()),
        migrations.RemoveField(model_name="entry", name="text"),
        migrations.AddField(
            model_name="entry",
            name="text_packed",
            field=models.BinaryField(default=b""),
        ),
        migrations.RunSQL(sql=NEW_FTS, reverse_sql=DROP_NEW),
    ]
