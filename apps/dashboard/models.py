"""API tokens (per-user bearer credentials for scripts, stored only as a hash),
failed logins kept for the login throttle, and the stats rollups."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A bearer token; the raw value is shown once at creation and never stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, default="")
    # sha256 hex of the raw token: the token has 256 bits of entropy, so a plain
    # (unsalted) fast hash is enough and lets the lookup use an index.
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters of the raw token, to tell tokens apart in lists.
    prefix = models.CharField(max_length=16, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        label = self.name or "token"
        return f"{label} ({self.prefix}...) of {self.user}"


class LoginFailure(models.Model):
    """A failed login, kept while it counts towards the throttle (auth.py)."""

    username = models.CharField(max_length=150)  # lowercased, as typed
    address = models.CharField(max_length=64)  # the client's IP address
    at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["username", "at"], name="loginfailure_user"),
            models.Index(fields=["address", "at"], name="loginfailure_address"),
            models.Index(fields=["at"], name="loginfailure_at"),
        ]


# --- stats rollups -------------------------------------------------------------
# A read-through cache of the stats aggregates per closed UTC hour, filled and
# checked by apps.dashboard.selectors.rollups (never by the relay). An hour's
# data rows exist only while its RollupHour marker does; the marker holds the
# hour's row count and largest id, which every read compares with the live
# table, so a late insert or a delete is seen and the hour rebuilt.


class RollupHour(models.Model):
    """A UTC hour whose rollup rows are complete, with its fingerprint."""

    hour = models.BigIntegerField(primary_key=True)  # seconds since epoch / 3600
    rows = models.IntegerField()
    max_id = models.BigIntegerField()


class RollupWatermark(models.Model):
    """The largest exchange id whose hour the rollups have accounted for."""

    checked_id = models.BigIntegerField()


class _TokenSums(models.Model):
    """Token counts by kind and their cost, summed over a rollup's rows."""

    input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cache_read_tokens = models.BigIntegerField()
    cache_write_5m_tokens = models.BigIntegerField()
    cache_write_1h_tokens = models.BigIntegerField()
    cost_usd = models.FloatField()

    class Meta:
        abstract = True


class _UsageSums(_TokenSums):
    """Token sums plus unpriced calls and latency sums (means, not percentiles)."""

    unpriced = models.IntegerField()
    ttfb_sum = models.FloatField()
    ttfb_count = models.IntegerField()
    duration_sum = models.FloatField()
    duration_count = models.IntegerField()

    class Meta:
        abstract = True


class _SortedLatencies(models.Model):
    """Every latency of one model over a period, sorted (float64 arrays)."""

    model = models.CharField(max_length=200)
    ttfb = models.BinaryField()
    duration = models.BinaryField()

    class Meta:
        abstract = True


class UsageRollup(_UsageSums):
    """Additive usage of one model in one UTC quarter hour, per error label."""

    hour = models.BigIntegerField()
    quarter = models.SmallIntegerField()  # minute // 15: serves half-hour zones
    model = models.CharField(max_length=200)
    label = models.CharField(max_length=100)  # error label, "" for successes
    requests = models.IntegerField()

    class Meta:
        # Covering: a month's reads never touch the table.
        indexes = [
            models.Index(
                fields=[
                    "hour", "quarter", "model", "label", "requests", "input_tokens",
                    "output_tokens", "cache_read_tokens", "cache_write_5m_tokens",
                    "cache_write_1h_tokens", "cost_usd", "unpriced", "ttfb_sum",
                    "ttfb_count", "duration_sum", "duration_count",
                ],
                name="usagerollup_cover",
            )
        ]  # fmt: skip


class ModelHourRollup(_UsageSums):
    """UsageRollup summed per model and UTC hour: what hour-aligned reads need."""

    hour = models.BigIntegerField()
    model = models.CharField(max_length=200)
    requests = models.IntegerField()
    errors = models.IntegerField()

    class Meta:
        # Covering, one row per (hour, model): a month is ~3,000 index entries
        # read in order, where UsageRollup's quarters and labels make ~17,000.
        indexes = [
            models.Index(
                fields=[
                    "hour", "model", "requests", "errors", "input_tokens",
                    "output_tokens", "cache_read_tokens", "cache_write_5m_tokens",
                    "cache_write_1h_tokens", "cost_usd", "unpriced", "ttfb_sum",
                    "ttfb_count", "duration_sum", "duration_count",
                ],
                name="modelhourrollup_cover",
            )
        ]  # fmt: skip


class ToolRollup(models.Model):
    """Calls of one tool in one UTC hour."""

    hour = models.BigIntegerField()
    tool = models.CharField(max_length=200)
    calls = models.BigIntegerField()
    exchanges = models.IntegerField()

    class Meta:
        indexes = [
            models.Index(
                fields=["hour", "tool", "calls", "exchanges"], name="toolrollup_cover"
            )
        ]


class LatencyRollup(_SortedLatencies):
    """Every latency of one model in one UTC hour."""

    hour = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["hour"], name="latencyrollup_hour")]


class LatencyDayRollup(_SortedLatencies):
    """Every latency of one model in one UTC day: fewer runs to merge."""

    day = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["day"], name="latencydayrollup_day")]


class RollupDay(models.Model):
    """A UTC day whose session and latency rollups are complete (all its hours were)."""

    day = models.BigIntegerField(primary_key=True)  # seconds since epoch / 86400
    rows = models.IntegerField()


class SessionRollup(_TokenSums):
    """One Claude Code session's activity in one UTC day."""

    day = models.BigIntegerField()
    session_id = models.CharField(max_length=100)
    first_at = models.CharField(max_length=32)  # stored text of started_at
    last_at = models.CharField(max_length=32)
    requests = models.IntegerField()
    turns = models.IntegerField()
    subagent_calls = models.IntegerField()
    errors = models.IntegerField()
    model_list = models.TextField()  # distinct models, comma-separated

    class Meta:
        # Covering both ways: (day, session, last, ...) orders a range's
        # sessions and ranks them by cost; (session, day, ...) sums just the
        # sessions of the page shown.
        indexes = [
            models.Index(
                fields=[
                    "day", "session_id", "last_at", "requests", "cost_usd",
                    "output_tokens",
                ],
                name="sessionrollup_day_cover",
            ),
            models.Index(
                fields=[
                    "session_id", "day", "first_at", "last_at", "requests", "turns",
                    "subagent_calls", "errors", "input_tokens", "output_tokens",
                    "cache_read_tokens", "cache_write_5m_tokens",
                    "cache_write_1h_tokens", "cost_usd", "model_list",
                ],
                name="sessionrollup_cover",
            ),
        ]  # fmt: skip
