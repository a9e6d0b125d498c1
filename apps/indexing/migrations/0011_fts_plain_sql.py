"""Make the FTS index readable, deletable and vacuumable with plain SQLite.

The external-content index of 0005/0006 read each entry's text through
indexing_text(), a Python function registered on Django's connections only: on
any other connection (a backup script, the sqlite3 shell, datasette) deleting an
entry or a block, or reading the index or its content view, failed with "no such
function: indexing_text". Now:
- indexing_entry_fts is contentless (content=''): postings only; the text stays
  in the blocks. Search needs nothing more (snippets are built in Python).
- A delete, whoever makes it, leaves a tombstone in indexing_fts_stale (the
  block, if it goes first, is copied to indexing_fts_stale_block): removing a
  row from a contentless index needs its exact text, which only Python can
  unpack. apps.indexing.fts.fts_stale_apply removes them; until then searches
  exclude them.
- Text and tools of an entry are written once; a trigger refuses to change them.
The index is filled here from the blocks, read with a frozen copy of their layout.
Migrations 0003 and 0005 register the indexing_text() their SQL needs themselves;
no connection gets it any more.
https://www.sqlite.org/fts5.html#contentless_tables
"""

import struct

import zstandard
from django.db import migrations

from apps.proxy.migrations._by_vendor import ByVendor

TOKENIZE = "porter unicode61 remove_diacritics 2"

DROP_OLD = [
    "DROP TRIGGER IF EXISTS indexing_entry_fts_au",
    "DROP TRIGGER IF EXISTS indexing_entry_fts_ad",
    "DROP TRIGGER IF EXISTS indexing_block_fts_bd",
    "DROP TABLE IF EXISTS indexing_entry_fts",
    "DROP VIEW IF EXISTS indexing_entry_fts_source",
]

CREATE_NEW = [
    f"""
    CREATE VIRTUAL TABLE indexing_entry_fts USING fts5(
        text, tools, content='', tokenize='{TOKENIZE}'
    )
    """,
    """
    CREATE TABLE indexing_fts_stale (
        entry_id integer NOT NULL PRIMARY KEY,
        block_id integer NOT NULL,
        slot integer NOT NULL,
        tools text NOT NULL
    )
    """,
    "CREATE INDEX indexing_fts_stale_block_id ON indexing_fts_stale (block_id)",
    """
    CREATE TABLE indexing_fts_stale_block (
        id integer NOT NULL PRIMARY KEY,
        data blob NOT NULL
    )
    """,
    """
    CREATE TRIGGER indexing_entry_fts_ad AFTER DELETE ON indexing_entry BEGIN
        INSERT OR REPLACE INTO indexing_fts_stale (entry_id, block_id, slot, tools)
        VALUES (old.id, old.block_id, old.slot, old.tools);
    END
    """,
    """
    CREATE TRIGGER indexing_block_fts_bd BEFORE DELETE ON indexing_block
    WHEN EXISTS (SELECT 1 FROM indexing_entry e WHERE e.block_id = old.id)
      OR EXISTS (SELECT 1 FROM indexing_fts_stale s WHERE s.block_id = old.id)
    BEGIN
        INSERT OR IGNORE INTO indexing_fts_stale_block (id, data)
        VALUES (old.id, old.data);
    END
    """,
    """
    CREATE TRIGGER indexing_entry_fts_bu BEFORE UPDATE OF block_id, slot, tools
    ON indexing_entry
    WHEN old.block_id IS NOT new.block_id OR old.slot IS NOT new.slot
      OR old.tools IS NOT new.tools
    BEGIN
        SELECT RAISE(ABORT, 'an indexed entry''s text and tools never change');
    END
    """,
]

DROP_NEW = [
    "DROP TRIGGER IF EXISTS indexing_entry_fts_bu",
    "DROP TRIGGER IF EXISTS indexing_block_fts_bd",
    "DROP TRIGGER IF EXISTS indexing_entry_fts_ad",
    "DROP TABLE IF EXISTS indexing_fts_stale_block",
    "DROP TABLE IF EXISTS indexing_fts_stale",
    "DROP TABLE IF EXISTS indexing_entry_fts",
]

# The index of 0005/0006, for going back (it needs indexing_text() again).
CREATE_OLD = [
    """
    CREATE VIEW indexing_entry_fts_source AS
    SELECT e.id AS id, indexing_text(b.id, b.data, e.slot) AS text, e.tools AS tools
    FROM indexing_entry e JOIN indexing_block b ON b.id = e.block_id
    """,
    f"""
    CREATE VIRTUAL TABLE indexing_entry_fts USING fts5(
        text, tools,
        content='indexing_entry_fts_source', content_rowid='id',
        tokenize='{TOKENIZE}'
    )
    """,
    """
    CREATE TRIGGER indexing_entry_fts_ad AFTER DELETE ON indexing_entry
    WHEN EXISTS (SELECT 1 FROM indexing_block b WHERE b.id = old.block_id) BEGIN
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
    """
    CREATE TRIGGER indexing_block_fts_bd BEFORE DELETE ON indexing_block BEGIN
        INSERT INTO indexing_entry_fts(indexing_entry_fts, rowid, text, tools)
        SELECT 'delete', e.id, indexing_text(old.id, old.data, e.slot), e.tools
        FROM indexing_entry e WHERE e.block_id = old.id;
    END
    """,
    "INSERT INTO indexing_entry_fts(indexing_entry_fts) VALUES ('rebuild')",
]

_BLOCKS_PER_READ = 100


def _index_fill(apps, schema_editor) -> None:
    """Index every entry's text (read from its block) and tools."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT id, block_id, slot, tools FROM indexing_entry")
        entries: dict[int, list[tuple[int, int, str]]] = {}
        for entry_id, block_id, slot, tools in cursor.fetchall():
            entries.setdefault(block_id, []).append((entry_id, slot, tools))
        block_ids = sorted(entries)
        for start in range(0, len(block_ids), _BLOCKS_PER_READ):
            chunk = block_ids[start : start + _BLOCKS_PER_READ]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                f"SELECT id, data FROM indexing_block WHERE id IN ({marks})", chunk
            )
            texts = {block_id: _texts(data) for block_id, data in cursor.fetchall()}
            rows = [
                (entry_id, _at(texts.get(block_id, []), slot), tools)
                for block_id in chunk
                for entry_id, slot, tools in entries[block_id]
            ]
            cursor.executemany(
                "INSERT INTO indexing_entry_fts(rowid, text, tools)"
                " VALUES (%s, %s, %s)",
                rows,
            )


def _at(texts: list[str], slot: int) -> str:
    return texts[slot] if slot < len(texts) else ""


def _texts(data: bytes) -> list[str]:
    """Return the searchable texts of a block: one zstd frame holding a 4-byte
    big-endian count n, n pairs of 4-byte lengths (line, text), then the payloads
    in that order (apps.indexing.rawlines as of migration 0005)."""
    plain = zstandard.ZstdDecompressor().decompress(bytes(data))
    (count,) = struct.unpack_from(">I", plain, 0)
    sizes = struct.unpack_from(f">{count * 2}I", plain, 4)
    position, texts = 4 + 8 * count, []
    for index in range(count):
        position += sizes[2 * index]
        text = plain[position : position + sizes[2 * index + 1]]
        texts.append(text.decode("utf-8", errors="replace"))
        position += sizes[2 * index + 1]
    return texts


def _old_function_register(apps, schema_editor) -> None:
    """Going back: give this connection the indexing_text() the old index reads."""

    def text(block_id: int, data: bytes, slot: int) -> str:
        return _at(_texts(data), slot) if data is not None else ""

    schema_editor.connection.connection.create_function("indexing_text", 3, text)


class Migration(migrations.Migration):
    dependencies = [("indexing", "0010_ledger")]

    operations = [
        ByVendor(
            sqlite=[
                migrations.RunSQL(sql=DROP_OLD + CREATE_NEW, reverse_sql=DROP_NEW + CREATE_OLD),
                migrations.RunPython(_index_fill, _old_function_register),
            ]
        ),
    ]
