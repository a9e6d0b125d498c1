"""Feed the usage ledger: the speed of each response, and the transcript's calls
(renamed TranscriptCall: apps.proxy's ApiCall is the one call of the ledger) with
their message ids and speeds.

Entry.speed is added with ALTER TABLE: Django's SQLite AddField would rebuild
indexing_entry and drop the FTS triggers of 0005/0006. Existing rows get their
message ids and speeds, and the ledger its transcript calls, from
`manage.py ledger --rebuild` (run by the launcher when the ledger is empty).
"""

from django.db import migrations, models

from apps.proxy.migrations._by_vendor import columns_added


class Migration(migrations.Migration):
    dependencies = [
        ("indexing", "0009_call_request_id"),
        ("proxy", "0004_ledger"),
    ]

    operations = [
        columns_added(
            sqlite=[
                migrations.RunSQL(
                    sql="ALTER TABLE indexing_entry ADD COLUMN"
                    " speed varchar(16) NOT NULL DEFAULT ''",
                    reverse_sql="ALTER TABLE indexing_entry DROP COLUMN speed",
                ),
            ],
            fields=[
                migrations.AddField(
                    model_name="entry",
                    name="speed",
                    field=models.CharField(blank=True, default="", max_length=16),
                ),
            ],
        ),
        migrations.RenameModel(old_name="Call", new_name="TranscriptCall"),
        migrations.AddField(
            model_name="transcriptcall",
            name="message_id",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddField(
            model_name="transcriptcall",
            name="speed",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
    ]
