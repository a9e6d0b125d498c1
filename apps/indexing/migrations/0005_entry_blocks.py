"""Store lines and their searchable text in compressed blocks of many lines.

Compressing lines one by one (even with a trained dictionary) kept the index
larger than half of what it copies; a zstd frame per ~256 KB of consecutive lines
of a file does much better. Entries written in the older layout are dropped and
their sources rewound, so the next `manage.py reindex` reads them again.
The FTS5 content view now reads an entry's text from its block with the SQL
function indexing_text(block id, block data, slot) (apps.indexing.apps).
https://www.sqlite.org/fts5.html#external_content_tables
"""

import django.db.models.deletion
from django.db import migrations, models

DROP_OLD = [
    "DROP TRIGGER IF EXISTS indexing_entry_fts_au",
    "DROP TRIGGER IF EXISTS indexing_entry_fts_ad",
    "DROP TRIGGER IF EXISTS indexing_entry_fts_ai",
    "DROP TABLE IF EXISTS indexing_entry_fts",
    "DROP VIEW IF EXISTS indexing_entry_fts_source",
    "DELETE FROM indexing_entry",
    "DELETE FROM indexing_todo",
    "DELETE FROM indexing_plan",
    "UPDATE indexing_sourcefile SET \"offset\" = 0, lines = 0, head = '', bad_lines = 0",
]

CREATE_NEW = [
    """
    CREATE VIEW indexing_entry_fts_source AS
    SELECT e.id AS id, indexing_text(b.id, b.data, e.slot) AS text, e.tools AS tools
    FROM indexing_entry e JOIN indexing_block b ON b.id = e.block_id
    """,
    """
    CREATE VIRTUAL TABLE indexing_entry_fts USING fts5(
        text, tools,
        content='indexing_entry_fts_source', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    )
    """,
    # Inserts are indexed by the writer (apps.indexing.fts.fts_insert); deletes and
    # updates by triggers. Entries must be deleted before their block.
    """
    CREATE TRIGGER indexing_entry_fts_ad AFTER DELETE ON indexing_entry BEGIN
        INSERT INTO indexing_entry_fts(indexing_entry_fts, rowid, text, tools)
        VALUES ('delete', old.id, (
            SELECT indexing_text(b.id, b.data, old.slot) FROM indexing_block b
            WHERE b.id = old.block_id), old.tools);
    END
    """,
    """
    CREATE TRIGGER indexing_entry_fts_au AFTER UPDATE OF block_id, slot, tools
    ON indexing_entry BEGIN
        INSERT INTO indexing_entry_fts(indexing_entry_fts, rowid, text, tools)
        VALUES ('delete', old.id, (
            SELECT indexing_text(b.id, b.data, old.slot) FROM indexing_block b
            WHERE b.id = old.block_id), old.tools);
        INSERT INTO indexing_entry_fts(rowid, text, tools)
        VALUES (new.id, (
            SELECT indexing_text(b.id, b.data, new.slot) FROM indexing_block b
            WHERE b.id = new.block_id), new.tools);
    END
    """,
]

DROP_NEW = [
    "DROP TRIGGER IF EXISTS indexing_entry_fts_au",
    "DROP TRIGGER IF EXISTS indexing_entry_fts_ad",
    "DROP TABLE IF EXISTS indexing_entry_fts",
    "DROP VIEW IF EXISTS indexing_entry_fts_source",
]


def _previous_fts():
    from importlib import import_module

    create = import_module("apps.indexing.migrations.0003_entry_text_packed").NEW_FTS
    return [sql for sql in create if "indexing_entry_fts_ai" not in sql]


class Migration(migrations.Migration):
    dependencies = [("indexing", "0004_fts_insert_from_writer")]

    operations = [
        migrations.RunSQL(sql=DROP_OLD, reverse_sql=_previous_fts()),
        migrations.CreateModel(
            name="Block",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                           serialize=False, verbose_name="ID")),
                ("data", models.BinaryField()),
                ("source", models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE, related_name="+",
                    to="indexing.sourcefile")),
            ],
        ),
        migrations.RemoveField(model_name="entry", name="raw"),
        migrations.RemoveField(model_name="entry", name="text_packed"),
        migrations.AddField(
            model_name="entry",
            name="block",
            field=models.ForeignKey(
                default=0, on_delete=django.db.models.deletion.CASCADE,
                related_name="+", to="indexing.block"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="entry",
            name="slot",
            field=models.PositiveIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.DeleteModel(name="Dictionary"),
        migrations.RunSQL(sql=CREATE_NEW, reverse_sql=DROP_NEW),
    ]
