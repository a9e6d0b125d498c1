"""Whose call: the fingerprint of the credential each call was sent with (issue 15).

Added with ALTER TABLE ... ADD COLUMN ... DEFAULT '' rather than AddField, as in
0007: for a NOT NULL field with a default, Django's SQLite backend rebuilds the
whole table (every recorded body) and drops the indexes created by RunSQL.
Calls recorded before this migration keep "" (unclaimed: staff see them).
"""

from django.db import migrations, models

from apps.proxy.migrations._by_vendor import columns_added

TABLES = {"exchange": "started_at", "apicall": "at"}
INDEXES = {"exchange": "exchange_credential_time", "apicall": "apicall_credential_at"}


class Migration(migrations.Migration):
    dependencies = [("proxy", "0009_exchange_relay")]

    operations = [
        columns_added(
            sqlite=[
                migrations.RunSQL(
                    f"ALTER TABLE proxy_{table} ADD COLUMN credential varchar(24) "
                    "NOT NULL DEFAULT ''",
                    f"ALTER TABLE proxy_{table} DROP COLUMN credential",
                )
                for table in TABLES
            ],
            fields=[
                migrations.AddField(
                    model_name=table,
                    name="credential",
                    field=models.CharField(blank=True, default="", max_length=24),
                )
                for table in TABLES
            ],
        ),
        *(
            migrations.AddIndex(
                model_name=table,
                index=models.Index(fields=["credential", time], name=INDEXES[table]),
            )
            for table, time in TABLES.items()
        ),
    ]
