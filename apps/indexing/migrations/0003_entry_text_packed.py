"""Keep the searchable text compressed: the FTS5 index reads it through a view.

indexing_entry.text becomes text_packed; the external-content FTS5 table now
reads indexing_entry_fts_source, a view that unpacks it with the SQL function
indexing_text(). Triggers keep the index in step as before, now for every row
(FTS5's integrity-check expects one index row per content row). Existing texts
are packed before the text column goes, and the index is rebuilt from them,
with frozen copies of the packing (apps.indexing.rawlines as it stood then).
https://www.sqlite.org/fts5.html#external_content_tables
"""

import zstandard
from django.db import migrations, models

from apps.proxy.migrations._by_vendor import ByVendor

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


def _text_pack(text: str) -> bytes:
    """Stored form of a text: b"" when empty, b"r" + UTF-8 below 64 bytes, else
    b"z" + one zstd frame (level 3)."""
    data = text.encode("utf-8", errors="replace")
    if not data:
        return b""
    if len(data) < 64:
        return b"r" + data
    return b"z" + zstandard.ZstdCompressor(level=3).compress(data)


def _text_unpack(stored: bytes | None) -> str:
    if not stored:
        return ""
    stored = bytes(stored)
    data = stored[1:]
    if stored[:1] == b"z":
        data = zstandard.ZstdDecompressor().decompress(data)
    return data.decode("utf-8", errors="replace")


def _texts_pack(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT id, text FROM indexing_entry WHERE text != ''")
        packed = [(_text_pack(text), pk) for pk, text in cursor.fetchall()]
        cursor.executemany(
            "UPDATE indexing_entry SET text_packed = %s WHERE id = %s", packed
        )


def _texts_unpack(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT id, text_packed FROM indexing_entry")
        texts = [(_text_unpack(data), pk) for pk, data in cursor.fetchall()]
        cursor.executemany("UPDATE indexing_entry SET text = %s WHERE id = %s", texts)


def _index_rebuild(apps, schema_editor) -> None:
    # The view's indexing_text() of this layout: one argument, the packed text.
    raw = schema_editor.connection.connection
    raw.create_function("indexing_text", 1, _text_unpack)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO indexing_entry_fts(indexing_entry_fts) VALUES ('rebuild')"
        )


class Migration(migrations.Migration):
    dependencies = [("indexing", "0002_entry_fts")]
    # Where each removed column's data goes (tests/indexing/test_migrations.py).
    carries = {"entry.text": "entry.text_packed"}

    operations = [
        ByVendor(sqlite=[migrations.RunSQL(sql=OLD_FTS, reverse_sql=_old_fts())]),
        migrations.AddField(
            model_name="entry",
            name="text_packed",
            field=models.BinaryField(default=b""),
        ),
        migrations.RunPython(_texts_pack, _texts_unpack),
        migrations.RemoveField(model_name="entry", name="text"),
        ByVendor(
            sqlite=[
                migrations.RunSQL(sql=NEW_FTS, reverse_sql=DROP_NEW),
                migrations.RunPython(_index_rebuild, migrations.RunPython.noop),
            ]
        ),
    ]
