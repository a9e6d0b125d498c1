"""Index new entries from the writer, not by trigger.

The insert trigger unpacked every text it had just been handed packed; the one
writer of entries (apps.indexing.batches.entries_insert) now inserts the FTS rows
itself in the same transaction (apps.indexing.fts.fts_insert). Delete and update
triggers stay, so the index follows any other change.
"""

from django.db import migrations

from apps.proxy.migrations._by_vendor import ByVendor

INSERT_TRIGGER = """
CREATE TRIGGER indexing_entry_fts_ai AFTER INSERT ON indexing_entry BEGIN
    INSERT INTO indexing_entry_fts(rowid, text, tools)
    VALUES (new.id, indexing_text(new.text_packed), new.tools);
END
"""


class Migration(migrations.Migration):
    dependencies = [("indexing", "0003_entry_text_packed")]

    operations = [
        ByVendor(
            sqlite=[
                migrations.RunSQL(
                    sql="DROP TRIGGER IF EXISTS indexing_entry_fts_ai",
                    reverse_sql=INSERT_TRIGGER,
                )
            ]
        ),
    ]
