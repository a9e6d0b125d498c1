"""Notes on what the recorder could not keep or read of a body (issue 11).

Added with ALTER TABLE ... ADD COLUMN ... DEFAULT '' rather than AddField: for a
NOT NULL field with a default, Django's SQLite backend rebuilds the whole table
(copying every recorded body of the archive) and drops the indexes created by
RunSQL (exchange_status_time, the dashboard's covering indexes).
"""

from django.db import migrations, models

from apps.proxy.migrations._by_vendor import columns_added

COLUMNS = ("request_body_note", "response_body_note")


class Migration(migrations.Migration):
    dependencies = [("proxy", "0006_routing_exchange")]

    operations = [
        columns_added(
            sqlite=[
                migrations.RunSQL(
                    f"ALTER TABLE proxy_exchange ADD COLUMN {column} text "
                    "NOT NULL DEFAULT ''",
                    f"ALTER TABLE proxy_exchange DROP COLUMN {column}",
                )
                for column in COLUMNS
            ],
            fields=[
                migrations.AddField(
                    model_name="exchange",
                    name=column,
                    field=models.TextField(blank=True, default=""),
                )
                for column in COLUMNS
            ],
        )
    ]
