"""One rollup store over the usage ledger, replacing the exchange rollups.

The old tables were a cache of the exchanges; the new ones are rebuilt from the
ledger (apps.proxy's ApiCall) quarter hour by quarter hour as it marks them
dirty, so nothing is lost by dropping the old ones.
"""

from django.db import migrations, models

_OLD = (
    "RollupHour", "RollupWatermark", "UsageRollup", "ModelHourRollup", "ToolRollup",
    "LatencyRollup", "LatencyDayRollup", "RollupDay", "SessionRollup",
)  # fmt: skip


def _big(**kwargs):
    return models.BigIntegerField(**kwargs)


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0005_session_rollup_day_cover"),
        ("proxy", "0004_ledger"),
    ]

    operations = [
        *[migrations.DeleteModel(name=name) for name in _OLD],
        migrations.CreateModel(
            name="UsageRollup",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("quarter", models.IntegerField()),
                ("kind", models.CharField(max_length=16)),
                ("model", models.CharField(max_length=200)),
                ("session_id", models.CharField(max_length=100)),
                ("project_id", models.BigIntegerField(null=True)),
                ("error", models.CharField(max_length=100)),
                ("calls", models.IntegerField()),
                ("errors", models.IntegerField()),
                ("subagent_calls", models.IntegerField()),
                ("fast_calls", models.IntegerField()),
                ("relayed_calls", models.IntegerField()),
                ("unpriced_calls", models.IntegerField()),
                ("input_tokens", _big()),
                ("output_tokens", _big()),
                ("cache_read_tokens", _big()),
                ("cache_write_5m_tokens", _big()),
                ("cache_write_1h_tokens", _big()),
                ("cost_usd", models.FloatField()),
                ("savings_usd", models.FloatField()),
                ("ttfb_sum", models.FloatField()),
                ("ttfb_n", models.IntegerField()),
                ("duration_sum", models.FloatField()),
                ("duration_n", models.IntegerField()),
                ("first_at", models.DateTimeField()),
                ("last_at", models.DateTimeField()),
                ("tools", models.TextField()),
            ],
            options={
                "indexes": [
                    models.Index(fields=["quarter"], name="usagerollup_quarter"),
                    models.Index(fields=["session_id", "quarter"], name="usagerollup_session"),
                ],
            },
        ),
        migrations.CreateModel(
            name="LatencyRollup",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("quarter", models.IntegerField()),
                ("kind", models.CharField(max_length=16)),
                ("model", models.CharField(max_length=200)),
                ("ttfb", models.BinaryField()),
                ("duration", models.BinaryField()),
            ],
            options={
                "indexes": [models.Index(fields=["quarter"], name="latencyrollup_quarter")],
            },
        ),
    ]
