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


# --- the ledger's rollups ------------------------------------------------------
# One store, kept by apps.dashboard.services.rollups (manage.py rollup --watch, and
# writers of history on demand): the ledger's calls summed per UTC quarter hour
# (every zone's offset is a whole number of quarters) and the dimensions every
# report groups by. A quarter is trusted only while the ledger has not marked it
# dirty (apps.proxy's ApiCallDirty); reads take dirty quarters and the open
# edges of a range from the ledger itself, in the same statement.


class UsageRollup(models.Model):
    """The ledger's calls of one quarter hour, kind, model, session, project and
    error label, summed; tools called as "name:count" words."""

    quarter = models.IntegerField()  # epoch seconds // 900
    kind = models.CharField(max_length=16)
    model = models.CharField(max_length=200)
    session_id = models.CharField(max_length=100)
    project_id = models.BigIntegerField(null=True)
    error = models.CharField(max_length=100)
    calls = models.IntegerField()
    errors = models.IntegerField()
    subagent_calls = models.IntegerField()
    fast_calls = models.IntegerField()
    relayed_calls = models.IntegerField()
    unpriced_calls = models.IntegerField()
    input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cache_read_tokens = models.BigIntegerField()
    cache_write_5m_tokens = models.BigIntegerField()
    cache_write_1h_tokens = models.BigIntegerField()
    cost_usd = models.FloatField()
    savings_usd = models.FloatField()
    ttfb_sum = models.FloatField()
    ttfb_n = models.IntegerField()
    duration_sum = models.FloatField()
    duration_n = models.IntegerField()
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    tools = models.TextField()

    class Meta:
        indexes = [
            models.Index(fields=["quarter"], name="usagerollup_quarter"),
            # A session's whole figures, whatever the range (sessions list).
            models.Index(fields=["session_id", "quarter"], name="usagerollup_session"),
        ]


class LatencyRollup(models.Model):
    """Every relayed latency of one quarter hour, kind and model, sorted
    (float64 arrays), so that percentiles stay exact nearest-rank."""

    quarter = models.IntegerField()
    kind = models.CharField(max_length=16)
    model = models.CharField(max_length=200)
    ttfb = models.BinaryField()
    duration = models.BinaryField()

    class Meta:
        indexes = [models.Index(fields=["quarter"], name="latencyrollup_quarter")]
