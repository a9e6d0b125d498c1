"""Transcript search on PostgreSQL: a weighted tsvector per entry under a GIN index.

SQLite keeps its FTS5 table (0011); on any other database 0002-0011 created no
index, and this migration creates PostgreSQL's (apps.indexing.fts.tsearch):
- claudemon_english: accents removed (the unaccent extension, trusted since
  PostgreSQL 13, in Debian's server package), then English snowball stems without
  a stop-word list, so that, as on FTS5 (porter, remove_diacritics, no stop
  words), "cafe" finds "café" and "the" or "if not" can be searched for;
- indexing_entry_tsv (entry_id, document) with the GIN index indexing_entry_tsv_gin;
  the text is not stored again: it lives compressed in the entry's block;
- triggers: a deleted entry's row goes with it (statement-level, through a
  transition table, so a bulk delete costs one join) and with a TRUNCATE of the
  entries; an entry's text and tools never change (as on SQLite, refused).
Entries already in the database are indexed from their blocks with frozen copies
of the block layout and of the weights.
https://www.postgresql.org/docs/current/textsearch-tables.html
"""

import re
import struct

import zstandard
from django.db import migrations

from apps.proxy.migrations._by_vendor import ByVendor

CREATE = [
    # Left installed on the way back: other objects of the database may use it.
    "CREATE EXTENSION IF NOT EXISTS unaccent",
    """
    CREATE TEXT SEARCH DICTIONARY claudemon_english_stem
        (TEMPLATE = snowball, Language = english)
    """,
    "CREATE TEXT SEARCH CONFIGURATION claudemon_english (COPY = english)",
    """
    ALTER TEXT SEARCH CONFIGURATION claudemon_english
        ALTER MAPPING FOR asciiword, word, asciihword, hword, hword_asciipart,
        hword_part WITH unaccent, claudemon_english_stem
    """,
    """
    CREATE TABLE indexing_entry_tsv (
        entry_id bigint NOT NULL PRIMARY KEY,
        document tsvector NOT NULL
    )
    """,
    "CREATE INDEX indexing_entry_tsv_gin ON indexing_entry_tsv USING gin (document)",
    """
    CREATE FUNCTION indexing_entry_tsv_delete() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM indexing_entry_tsv s USING gone WHERE s.entry_id = gone.id;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER indexing_entry_tsv_ad AFTER DELETE ON indexing_entry
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION indexing_entry_tsv_delete()
    """,
    """
    CREATE FUNCTION indexing_entry_tsv_truncate() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        TRUNCATE indexing_entry_tsv;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER indexing_entry_tsv_at AFTER TRUNCATE ON indexing_entry
    FOR EACH STATEMENT EXECUTE FUNCTION indexing_entry_tsv_truncate()
    """,
    """
    CREATE FUNCTION indexing_entry_tsv_refuse() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'an indexed entry''s text and tools never change'
            USING ERRCODE = 'integrity_constraint_violation';
    END $$
    """,
    """
    CREATE TRIGGER indexing_entry_tsv_bu BEFORE UPDATE OF block_id, slot, tools
    ON indexing_entry FOR EACH ROW
    WHEN (old.block_id IS DISTINCT FROM new.block_id
          OR old.slot IS DISTINCT FROM new.slot
          OR old.tools IS DISTINCT FROM new.tools)
    EXECUTE FUNCTION indexing_entry_tsv_refuse()
    """,
]

DROP = [
    "DROP TRIGGER IF EXISTS indexing_entry_tsv_bu ON indexing_entry",
    "DROP FUNCTION IF EXISTS indexing_entry_tsv_refuse()",
    "DROP TRIGGER IF EXISTS indexing_entry_tsv_at ON indexing_entry",
    "DROP FUNCTION IF EXISTS indexing_entry_tsv_truncate()",
    "DROP TRIGGER IF EXISTS indexing_entry_tsv_ad ON indexing_entry",
    "DROP FUNCTION IF EXISTS indexing_entry_tsv_delete()",
    "DROP TABLE IF EXISTS indexing_entry_tsv",
    "DROP TEXT SEARCH CONFIGURATION IF EXISTS claudemon_english",
    "DROP TEXT SEARCH DICTIONARY IF EXISTS claudemon_english_stem",
]

INSERT = """
INSERT INTO indexing_entry_tsv (entry_id, document)
SELECT id, setweight(to_tsvector('claudemon_english', text), weight)
           || setweight(to_tsvector('claudemon_english', tools), 'A')
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::"char"[])
     AS r(id, text, tools, weight)
"""
_NOT_WORD = re.compile(r"[\W_]+")
_BLOCKS_PER_READ = 100


def _index_fill(apps, schema_editor) -> None:
    """Index every entry's text (read from its block) and tools."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, block_id, slot, tools, type, role FROM indexing_entry"
        )
        entries: dict[int, list[tuple]] = {}
        for entry_id, block_id, slot, *rest in cursor.fetchall():
            entries.setdefault(block_id, []).append((entry_id, slot, *rest))
        block_ids = sorted(entries)
        for start in range(0, len(block_ids), _BLOCKS_PER_READ):
            chunk = block_ids[start : start + _BLOCKS_PER_READ]
            cursor.execute(
                "SELECT id, data FROM indexing_block WHERE id = ANY(%s)", [chunk]
            )
            texts = {block_id: _texts(data) for block_id, data in cursor.fetchall()}
            rows = [
                (entry_id, _at(texts.get(block_id, []), slot), tools, kind, role)
                for block_id in chunk
                for entry_id, slot, tools, kind, role in entries[block_id]
            ]
            cursor.execute(
                INSERT,
                [
                    [r[0] for r in rows],
                    [_NOT_WORD.sub(" ", r[1]) for r in rows],
                    [_NOT_WORD.sub(" ", r[2]) for r in rows],
                    [_weight(r[3], r[4]) for r in rows],
                ],
            )


def _weight(kind: str, role: str) -> str:
    if role == "user" or kind in ("summary", "custom-title", "ai-title"):
        return "B"
    return "D" if role == "tool" else "C"


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


class Migration(migrations.Migration):
    dependencies = [("indexing", "0011_fts_plain_sql")]

    operations = [
        ByVendor(
            other=[
                migrations.RunSQL(sql=CREATE, reverse_sql=DROP),
                migrations.RunPython(_index_fill, migrations.RunPython.noop),
            ]
        ),
    ]
