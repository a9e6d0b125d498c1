"""API tokens (per-user bearer credentials for scripts, stored only as a hash),
claimed credentials (whose calls are whose),
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


class CredentialClaim(models.Model):
    """A user's claim on an API key or OAuth token: calls sent with it are theirs.

    Only the fingerprint is kept (apps.proxy.recorder.secret_fingerprint, as the
    relay stores it); unique, so a credential belongs to one user at most.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="claims"
    )
    fingerprint = models.CharField(max_length=24, unique=True)
    label = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.fingerprint} of {self.user}"


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


class _QuarterSums(models.Model):
    """The ledger's calls of a quarter hour and a group, summed."""

    quarter = models.IntegerField()  # epoch seconds // 900
    kind = models.CharField(max_length=16)
    model = models.CharField(max_length=200)
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

    class Meta:
        abstract = True


class UsageRollup(_QuarterSums):
    """Per quarter hour, kind, model and error label: what every read without a
    project takes."""

    class Meta:
        indexes = [models.Index(fields=["quarter"], name="usagerollup_quarter")]


class ProjectRollup(_QuarterSums):
    """Per quarter hour, kind, model, project and error label: for reads of a
    project or by project (3x the rows of UsageRollup)."""

    project_id = models.BigIntegerField(null=True)

    class Meta:
        indexes = [
            models.Index(fields=["quarter"], name="projectrollup_quarter"),
            models.Index(
                fields=["project_id", "quarter"], name="projectrollup_project"
            ),
        ]


class ToolRollup(models.Model):
    """The tools called in a quarter hour: uses, and calls that used each."""

    quarter = models.IntegerField()
    kind = models.CharField(max_length=16)
    tool = models.CharField(max_length=200)
    uses = models.IntegerField()
    calls = models.IntegerField()

    class Meta:
        indexes = [models.Index(fields=["quarter"], name="toolrollup_quarter")]


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


class SessionTotal(models.Model):
    """A session's whole figures: every Messages call of the ledger under its id
    (subagents' included), summed, for the sessions list and the reports. Kept
    for the sessions the ledger marks dirty (apps.proxy's ApiCallDirtySession);
    reads take a dirty session's figures from the ledger itself."""

    session_id = models.CharField(max_length=100, primary_key=True)
    project_id = models.BigIntegerField(null=True)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    calls = models.IntegerField()
    errors = models.IntegerField()
    subagent_calls = models.IntegerField()
    relayed_calls = models.IntegerField()
    unpriced_calls = models.IntegerField()
    input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cache_read_tokens = models.BigIntegerField()
    cache_write_5m_tokens = models.BigIntegerField()
    cache_write_1h_tokens = models.BigIntegerField()
    cost_usd = models.FloatField()
    model_list = models.TextField()  # the distinct models, comma-separated

    class Meta:
        indexes = [models.Index(fields=["last_at"], name="sessiontotal_last")]
