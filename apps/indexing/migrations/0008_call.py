"""Keep one row per API response of a session (indexing_call), turn included.

The session page of a 20,000-line session read every assistant line and merged
a response's lines in Python; it now reads one row per call, rebuilt with the
session totals (apps.indexing.sessions). Existing sessions are filled here, in
SQL frozen as it stands (the turn is the number of prompts before the call,
TURN_START_SQL of migration 0007), then priced with a frozen copy of
apps.proxy.pricing and its built-in prices.json as they stood (2026-11-23): a
migration must compute the same whatever the live code becomes.
"""

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from apps.proxy.migrations._by_vendor import ByVendor

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


# (match, rates): each rate (from, input, write 5m, write 1h, read, output, tiers),
# each tier (above prompt tokens, input, write 5m, write 1h, read, output); USD
# per million tokens. The families of prices.json, in its order.
PRICES = [
    ("^claude-opus-5-5(?![0-9])", (("2026-01-01", 4, 5, 8, 0.4, 20, ()),)),
    ("^claude-opus-5(?![0-9])", (("2025-01-01", 5, 6.25, 10, 0.5, 25, ()),)),
    ("^claude-opus-4-([5-9]|[1-9][0-9])(?![0-9])",
     (("2025-01-01", 5, 6.25, 10, 0.5, 25, ()),)),
    ("^claude-opus-4(?![0-9])", (("2025-01-01", 15, 18.75, 30, 1.5, 75, ()),)),
    ("^claude-3-opus", (("2024-01-01", 15, 18.75, 30, 1.5, 75, ()),)),
    ("^claude-sonnet-5-5(?![0-9])", (("2026-01-01", 2, 2.5, 4, 0.2, 10, ()),
                                     ("2026-10-07", 2, 2.5, 4, 0.1, 10, ()))),
    ("^claude-sonnet-5(?![0-9])", (("2026-01-01", 2, 2.5, 4, 0.2, 10, ()),)),
    ("^claude-sonnet-4-([6-9]|[1-9][0-9])(?![0-9])",
     (("2025-01-01", 3, 3.75, 6, 0.3, 15, ()),)),
    ("^claude-sonnet-4(?![0-9])", (("2025-01-01", 3, 3.75, 6, 0.3, 15,
                                    ((200000, 6, 7.5, 12, 0.6, 22.5),)),)),
    ("^claude-3-7-sonnet", (("2025-01-01", 3, 3.75, 6, 0.3, 15, ()),)),
    ("^claude-haiku-5-5(?![0-9])", (("2026-01-01", 0.1, 0.125, 0.2, 0.01, 0.5,
                                     ((100000, 0.5, 0.625, 1, 0.05, 2.5),)),)),
    ("^claude-haiku-4-([5-9]|[1-9][0-9])(?![0-9])",
     (("2025-01-01", 1, 1.25, 2, 0.1, 5, ()),)),
    ("^claude-3-5-haiku", (("2024-01-01", 0.8, 1, 1.6, 0.08, 4, ()),)),
    ("^claude-3-haiku", (("2024-01-01", 0.25, 0.3, 0.5, 0.03, 1.25, ()),)),
]
_RATE_KEYS = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")


def _families() -> list:
    """The user's CLAUDEMON_PRICES_FILE families first (as the live code read them
    then), then the built-in ones; an override this copy cannot read is skipped."""
    families = []
    override = getattr(settings, "CLAUDEMON_PRICES_FILE", "")
    try:
        document = json.loads(Path(override).read_text()) if override else {}
        for row in document.get("families", []):
            rates = []
            for rate in sorted(row["rates"], key=lambda r: r["from"]):
                tiers = tuple(
                    (t["above_prompt_tokens"], *(float(t[k]) for k in _RATE_KEYS))
                    for t in rate.get("tiers", [])
                )
                rates.append((rate["from"], *(float(rate[k]) for k in _RATE_KEYS),
                              tiers))
            families.append((row["match"], tuple(rates)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        families = []
    return [(re.compile(match), rates) for match, rates in families + PRICES]


def _cost(families: list, model: str, usage: list, at: datetime) -> float | None:
    """usage_cost of apps.proxy.pricing: usage is (input, output, read, w5m, w1h)."""
    model = model.split("[", 1)[0].strip()
    found = next((rates for pattern, rates in families if pattern.search(model)), None)
    if found is None:
        return None
    day = at.date().isoformat()
    rate = found[0]
    for candidate in found:
        if candidate[0] <= day:
            rate = candidate
    prices = rate[1:6]
    for above, *tier in rate[6]:
        if sum(usage) - usage[1] > above:  # the prompt: all but output
            prices = tier
    i, o, r, w5, w1 = usage
    return (i * prices[0] + w5 * prices[1] + w1 * prices[2] + r * prices[3]
            + o * prices[4]) / 1_000_000


def _calls_fill(apps, schema_editor) -> None:
    families = _families()
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
            prices.append((_cost(families, model, usage, at), pk))
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
        # Fills the new table from entries already indexed: an archive only SQLite has.
        ByVendor(sqlite=[migrations.RunPython(_calls_fill, migrations.RunPython.noop)]),
    ]
