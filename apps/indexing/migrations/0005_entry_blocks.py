"""Store lines and their searchable text in compressed blocks of many lines.

Compressing lines one by one (even with a trained dictionary) kept the index
larger than half of what it copies; a zstd frame per ~256 KB of consecutive lines
of a file does much better. Entries written in the older layout are moved into
blocks here, in place: Claude Code deletes its transcripts after 30 days, so
the index may be the only copy left and nothing may be dropped to be re-read.
The FTS5 content view now reads an entry's text from its block with the SQL
function indexing_text(block id, block data, slot). The old and new layouts are
read and written by frozen copies of apps.indexing.rawlines as they stood.
https://www.sqlite.org/fts5.html#external_content_tables
"""

import struct

import django.db.models.deletion
import zstandard
from django.db import migrations, models

from apps.proxy.migrations._by_vendor import ByVendor

DROP_OLD = [
    "DROP TRIGGER IF EXISTS indexing_entry_fts_au",
    "DROP TRIGGER IF EXISTS indexing_entry_fts_ad",
    "DROP TRIGGER IF EXISTS indexing_entry_fts_ai",
    "DROP TABLE IF EXISTS indexing_entry_fts",
    "DROP VIEW IF EXISTS indexing_entry_fts_source",
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


BLOCK_BYTES = 256 * 1024
_READ = 2000


def _line_decode(stored: bytes, dictionaries: dict) -> bytes:
    """The old stored form: b"r" + bytes, b"z" + zstd frame, or b"d" + 4-byte
    dictionary id + zstd frame made with that dictionary."""
    stored = bytes(stored or b"")
    tag, payload = stored[:1], stored[1:]
    if tag == b"z":
        return zstandard.ZstdDecompressor().decompress(payload)
    if tag == b"d":
        (dict_id,) = struct.unpack(">I", payload[:4])
        return dictionaries[dict_id].decompress(payload[4:])
    return payload


def _block_pack(records: list[tuple[bytes, bytes]]) -> bytes:
    """One zstd frame (level 3): a 4-byte big-endian count n, n pairs of 4-byte
    lengths (line, text), then the payloads in that order."""
    header = [struct.pack(">I", len(records))]
    header += [struct.pack(">II", len(line), len(text)) for line, text in records]
    payload = [part for record in records for part in record]
    return zstandard.ZstdCompressor(level=3).compress(b"".join(header + payload))


def _block_text(block_id: int, data: bytes, slot: int) -> str:
    """indexing_text() of this layout: one entry's text from its block."""
    if data is None:
        return ""
    plain = zstandard.ZstdDecompressor().decompress(bytes(data))
    (count,) = struct.unpack_from(">I", plain, 0)
    sizes = struct.unpack_from(f">{count * 2}I", plain, 4)
    position = 4 + 8 * count + sum(sizes[: 2 * slot + 1])
    return plain[position : position + sizes[2 * slot + 1]].decode(
        "utf-8", errors="replace"
    )


def _entries_into_blocks(apps, schema_editor) -> None:
    """Move every entry's line and text into blocks of its source, in id order."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT id, data FROM indexing_dictionary")
        dictionaries = {
            pk: zstandard.ZstdDecompressor(
                dict_data=zstandard.ZstdCompressionDict(bytes(data))
            )
            for pk, data in cursor.fetchall()
        }
        cursor.execute(
            "SELECT id, source_id FROM indexing_entry ORDER BY source_id, id"
        )
        order = cursor.fetchall()
        block: list[tuple[int, bytes, bytes]] = []
        source = None
        for start in range(0, len(order), _READ):
            chunk = order[start : start + _READ]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                "SELECT id, raw, text_packed FROM indexing_entry"
                f" WHERE id IN ({marks})",
                [pk for pk, _ in chunk],
            )
            stored = {pk: (raw, text) for pk, raw, text in cursor.fetchall()}
            for pk, source_id in chunk:
                if block and (source_id != source or _size(block) >= BLOCK_BYTES):
                    _block_write(cursor, source, block)
                    block = []
                source = source_id
                raw, text = stored[pk]
                block.append(
                    (
                        pk,
                        _line_decode(raw, dictionaries),
                        _line_decode(text, dictionaries),
                    )
                )
        if block:
            _block_write(cursor, source, block)


def _size(block: list[tuple[int, bytes, bytes]]) -> int:
    return sum(len(line) for _, line, _ in block)


def _block_write(cursor, source_id: int, block: list[tuple[int, bytes, bytes]]) -> None:
    data = _block_pack([(line, text) for _, line, text in block])
    cursor.execute(
        "INSERT INTO indexing_block (source_id, data) VALUES (%s, %s)",
        [source_id, data],
    )
    block_id = cursor.lastrowid
    cursor.executemany(
        "UPDATE indexing_entry SET block_id = %s, slot = %s WHERE id = %s",
        [(block_id, slot, pk) for slot, (pk, _, _) in enumerate(block)],
    )


def _index_rebuild(apps, schema_editor) -> None:
    schema_editor.connection.connection.create_function("indexing_text", 3, _block_text)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO indexing_entry_fts(indexing_entry_fts) VALUES ('rebuild')"
        )


class Migration(migrations.Migration):
    dependencies = [("indexing", "0004_fts_insert_from_writer")]
    # Where each removed column's data goes (tests/indexing/test_migrations.py).
    carries = {"entry.raw": "block.data", "entry.text_packed": "block.data"}

    operations = [
        ByVendor(sqlite=[migrations.RunSQL(sql=DROP_OLD, reverse_sql=_previous_fts())]),
        migrations.CreateModel(
            name="Block",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("data", models.BinaryField()),
                (
                    "source",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="indexing.sourcefile",
                    ),
                ),
            ],
        ),
        migrations.AddField(
            model_name="entry",
            name="block",
            field=models.ForeignKey(
                default=0,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="indexing.block",
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="entry",
            name="slot",
            field=models.PositiveIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.RunPython(_entries_into_blocks, migrations.RunPython.noop),
        migrations.RemoveField(model_name="entry", name="raw"),
        migrations.RemoveField(model_name="entry", name="text_packed"),
        migrations.DeleteModel(name="Dictionary"),
        ByVendor(
            sqlite=[
                migrations.RunSQL(sql=CREATE_NEW, reverse_sql=DROP_NEW),
                migrations.RunPython(_index_rebuild, migrations.RunPython.noop),
            ]
        ),
    ]
