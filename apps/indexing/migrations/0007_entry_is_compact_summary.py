"""Mark compaction summaries on their entries, so that a turn is one SQL expression.

After compacting a conversation Claude Code writes its summary as a user line
with isCompactSummary. The sessions list counted it as a prompt (user_count),
the session page did not. The column is added with ALTER TABLE: Django's SQLite
AddField would rebuild indexing_entry and drop the FTS triggers of 0005/0006.
Existing entries are marked from their original lines (read with a frozen copy
of the block layout of migration 0005), then user_count is recomputed with the
turn expression of apps.indexing.selectors (frozen here).
"""

import json
import struct

import zstandard
from django.db import migrations, models

from apps.proxy.migrations._by_vendor import columns_added

TURN_START = (
    "type = 'user' AND role = 'user' AND NOT is_meta AND NOT is_compact_summary"
)
_BLOCKS_PER_READ = 100


def _summaries_mark(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, block_id, slot FROM indexing_entry"
            " WHERE type = 'user' AND role = 'user' AND NOT is_meta ORDER BY block_id"
        )
        candidates: dict[int, list[tuple[int, int]]] = {}
        for entry_id, block_id, slot in cursor.fetchall():
            candidates.setdefault(block_id, []).append((entry_id, slot))
        marked = []
        block_ids = sorted(candidates)
        for start in range(0, len(block_ids), _BLOCKS_PER_READ):
            chunk = block_ids[start : start + _BLOCKS_PER_READ]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                f"SELECT id, data FROM indexing_block WHERE id IN ({marks})", chunk
            )
            for block_id, data in cursor.fetchall():
                records = block_unpack(data)
                for entry_id, slot in candidates[block_id]:
                    if slot < len(records) and _is_summary(records[slot][0]):
                        marked.append((entry_id,))
        cursor.executemany(
            "UPDATE indexing_entry SET is_compact_summary = TRUE WHERE id = %s", marked
        )
        cursor.execute(
            "UPDATE indexing_session SET user_count = (SELECT count(*)"
            " FROM indexing_entry WHERE indexing_entry.session_id = indexing_session.id"
            f" AND {TURN_START})"
        )


def block_unpack(data: bytes) -> list[tuple[bytes, bytes]]:
    """Return the (line, text) records of a block: one zstd frame holding a 4-byte
    big-endian count n, n pairs of 4-byte lengths, then the payloads in order."""
    plain = zstandard.ZstdDecompressor().decompress(bytes(data))
    (count,) = struct.unpack_from(">I", plain, 0)
    sizes = struct.unpack_from(f">{count * 2}I", plain, 4)
    position, records = 4 + 8 * count, []
    for index in range(count):
        line_size, text_size = sizes[2 * index], sizes[2 * index + 1]
        line = plain[position : position + line_size]
        position += line_size
        records.append((line, plain[position : position + text_size]))
        position += text_size
    return records


def _is_summary(line: bytes) -> bool:
    if b'"isCompactSummary"' not in line:
        return False
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(record, dict) and record.get("isCompactSummary") is True


class Migration(migrations.Migration):
    dependencies = [("indexing", "0006_fts_block_delete_trigger")]

    operations = [
        columns_added(
            sqlite=[
                migrations.RunSQL(
                    sql="ALTER TABLE indexing_entry ADD COLUMN"
                    " is_compact_summary bool NOT NULL DEFAULT 0",
                    reverse_sql="ALTER TABLE indexing_entry DROP COLUMN"
                    " is_compact_summary",
                ),
            ],
            fields=[
                migrations.AddField(
                    model_name="entry",
                    name="is_compact_summary",
                    field=models.BooleanField(default=False),
                ),
            ],
        ),
        migrations.RunPython(_summaries_mark, migrations.RunPython.noop),
    ]
