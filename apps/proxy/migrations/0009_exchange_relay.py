"""The relay process that carried each exchange (CLAUDEMON_RELAY_NAME).

With several relays on one database, a relay that starts closes only the
exchanges its own earlier run left in progress, not those its peers are still
carrying. Added with ALTER TABLE on SQLite, as in 0007.
"""

from django.db import migrations, models

from apps.proxy.migrations._by_vendor import columns_added


class Migration(migrations.Migration):
    dependencies = [("proxy", "0008_sessions_rollup")]

    operations = [
        columns_added(
            sqlite=[
                migrations.RunSQL(
                    "ALTER TABLE proxy_exchange ADD COLUMN relay varchar(100) "
                    "NOT NULL DEFAULT ''",
                    "ALTER TABLE proxy_exchange DROP COLUMN relay",
                )
            ],
            fields=[
                migrations.AddField(
                    model_name="exchange",
                    name="relay",
                    field=models.CharField(blank=True, default="", max_length=100),
                )
            ],
        )
    ]
