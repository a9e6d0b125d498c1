"""Keep one row per API response of a session (indexing_call), turn included.

The session page of a 20,000-line session read every assistant line and merged
a response's lines in Python; it now reads one row per call, rebuilt with the
session totals (apps.indexing.sessions). Existing sessions are filled here, in
SQL frozen as it stands (the turn is the number of prompts before the call,
TURN_START_SQL of migration 0007), then priced with apps.proxy.pricing.
"""

import django.db.models.deletion
from django.db import migrations, models

TURN_START = (
    "type = 'user' AND role = 'user' AND NOT is_meta AND NOT is_compact_summary"
)
FILL = f"""
INSERT INTO indexing_call (session_id, entry_id, uuid, turn, timestamp, request_id,
    model, tools, input_tokens, output_tokens, cache_read_tokens,
    cache_write_5m_tokens, cache_write_1h_tokens, cost_usd)
SELECT g.session_id, g.first, f.uuid, g.turn, f.timestamp, g.request_id, f.model,
       g.tools, g.i, g.o, g.cr, g.cw5, g.cw1, NULL
FROM (
    SELECT session_id, MIN(id) AS first, MIN(turn) AS turn, request_id,
           COALESCE(GROUP_CONCAT(NULLIF(tools, ''), ' '), '') AS tools,
           MAX(input_tokens) AS i, MAX(output_tokens) AS o,
           MAX(cache_read_tokens) AS cr, MAX(cache_write_5m_tokens) AS cw5,
           MAX(cache_write_1h_tokens) AS cw1
    FROM (
        SELECT *, SUM(CASE WHEN {TURN_START} THEN 1 ELSE 0 END)
                  OVER (PARTITION BY session_id ORDER BY id) AS turn
        FROM indexing_entry
        WHERE session_id IS NOT NULL AND (type = 'assistant' OR {TURN_START})
        ORDER BY id
    ) AS m
    WHERE type = 'assistant' AND model <> '<synthetic>'
    GROUP BY session_id, CASE WHEN message_id = '' THEN id ELSE message_id END,
             request_id
) AS g
JOIN indexing_entry f ON f.id = g.first
"""


def _calls_fill(apps, schema_editor) -> None:
    from datetime import UTC, datetime

    from apps.proxy.pricing import Usage, usage_cost

    with schema_editor.connection.cursor() as cursor:
        cursor.execute(FILL)
        cursor.execute(
            "SELECT id, model, '' || timestamp, input_tokens, output_tokens,"
            " cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens"
            " FROM indexing_call WHERE model <> ''"
        )
        prices = []
        for pk, model, stamp, *usage in cursor.fetchall():
            at = datetime.fromisoformat(stamp) if stamp else datetime.now(UTC)
            prices.append((usage_cost(model=model, usage=Usage(*usage), at=at), pk))
        cursor.executemany(
            "UPDATE indexing_call SET cost_usd = %s WHERE id = %s", prices
        )


class Migration(migrations.Migration):
    dependencies = [
        ("indexing", "0007_entry_is_compact_summary"),
    ]

    operations = [
        migrations.CreateModel(
            name="Call",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("entry_id", models.BigIntegerField()),
                ("uuid", models.CharField(blank=True, default="", max_length=64)),
                ("turn", models.PositiveIntegerField()),
                ("timestamp", models.DateTimeField(blank=True, null=True)),
                (
                    "request_id",
                    models.CharField(blank=True, default="", max_length=200),
                ),
                ("model", models.CharField(blank=True, default="", max_length=200)),
                ("tools", models.TextField(blank=True, default="")),
                ("input_tokens", models.PositiveIntegerField(default=0)),
                ("output_tokens", models.PositiveIntegerField(default=0)),
                ("cache_read_tokens", models.PositiveIntegerField(default=0)),
                ("cache_write_5m_tokens", models.PositiveIntegerField(default=0)),
                ("cache_write_1h_tokens", models.PositiveIntegerField(default=0)),
                ("cost_usd", models.FloatField(blank=True, null=True)),
                (
                    "session",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="indexing.session",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(
                        fields=["session", "turn", "entry_id"], name="call_turn"
                    )
                ],
            },
        ),
        migrations.RunPython(_calls_fill, migrations.RunPython.noop),
    ]
