"""Indexes for the stats API and the admin list (added by the data deployment).

Raw CREATE INDEX so they stay out of the model state: they are read-side
tuning, and the partial indexes' conditions must match the selectors' SQL
literally for SQLite to use them.

- exchange_stats_cover: every column the stats aggregate, behind started_at.
  A range query then reads only this index (~200 bytes a row) instead of rows
  that carry compressed bodies (tens of KB), which made 30-day aggregates over
  200,000 exchanges 20-50x slower.
- exchange_unified_time: the latest subscription rate-limit state.
- exchange_std_limits: the latest standard (API-key) rate-limit headers.
"""

from django.db import migrations

COVER = (
    "started_at, model, state, status_code, error_type, is_streaming, session_id, "
    "agent_id, path, input_tokens, output_tokens, cache_read_tokens, "
    "cache_write_5m_tokens, cache_write_1h_tokens, cost_usd, ttfb_ms, duration_ms, "
    "tools_called"
)


class Migration(migrations.Migration):
    dependencies = [("proxy", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS exchange_stats_cover ON proxy_exchange "
            f"({COVER})",
            "DROP INDEX IF EXISTS exchange_stats_cover",
        ),
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS exchange_unified_time ON proxy_exchange "
            "(started_at) WHERE unified_5h_utilization IS NOT NULL",
            "DROP INDEX IF EXISTS exchange_unified_time",
        ),
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS exchange_std_limits ON proxy_exchange "
            "(started_at) WHERE unified_5h_utilization IS NULL AND ratelimits <> '{}'",
            "DROP INDEX IF EXISTS exchange_std_limits",
        ),
    ]
