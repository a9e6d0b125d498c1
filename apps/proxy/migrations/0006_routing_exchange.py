"""Routing fields on the Exchange (apps/proxy/routing).

The columns are added with plain ALTER TABLE ... ADD COLUMN: Django's SQLite
editor would otherwise rebuild proxy_exchange for every NOT NULL column with a
default, copying a table of many gigabytes and dropping the indexes migration
0002 created with RunSQL (exchange_stats_cover among them).
"""

from django.db import migrations, models

from apps.proxy.migrations._by_vendor import columns_added

COLUMNS = [
    ("route", "varchar(200) NOT NULL DEFAULT ''"),
    ("provider", "varchar(100) NOT NULL DEFAULT ''"),
    ("provider_status", "integer unsigned NULL CHECK (provider_status >= 0)"),
    ("provider_request_body", "BLOB NULL"),
    ("provider_response_body", "BLOB NULL"),
    ("routing", "text NOT NULL DEFAULT '{}'"),
]


def _column(name, definition):
    return migrations.RunSQL(
        sql=f'ALTER TABLE proxy_exchange ADD COLUMN "{name}" {definition}',
        reverse_sql=f'ALTER TABLE proxy_exchange DROP COLUMN "{name}"',
    )


class Migration(migrations.Migration):
    dependencies = [
        ("proxy", "0005_bodies_blocks"),
    ]

    operations = [
        columns_added(
            sqlite=[_column(name, sql) for name, sql in COLUMNS],
            fields=[
                migrations.AddField(
                    model_name="exchange",
                    name="route",
                    field=models.CharField(blank=True, default="", max_length=200),
                ),
                migrations.AddField(
                    model_name="exchange",
                    name="provider",
                    field=models.CharField(blank=True, default="", max_length=100),
                ),
                migrations.AddField(
                    model_name="exchange",
                    name="provider_status",
                    field=models.PositiveSmallIntegerField(blank=True, null=True),
                ),
                migrations.AddField(
                    model_name="exchange",
                    name="provider_request_body",
                    field=models.BinaryField(blank=True, null=True),
                ),
                migrations.AddField(
                    model_name="exchange",
                    name="provider_response_body",
                    field=models.BinaryField(blank=True, null=True),
                ),
                migrations.AddField(
                    model_name="exchange",
                    name="routing",
                    field=models.JSONField(blank=True, default=dict),
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="exchange",
            index=models.Index(
                fields=["provider", "started_at"], name="exchange_provider_time"
            ),
        ),
    ]
