"""The relay's record and the usage ledger.

Exchange: one relayed call, created when it starts, completed when it ends.
ApiCall: one billed API call, whichever way claudemon learnt of it (the ledger).
"""

from __future__ import annotations

from django.db import models


class Exchange(models.Model):
    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "in progress"
        COMPLETE = "complete", "complete"
        CLIENT_DISCONNECTED = "client_disconnected", "client disconnected"
        UPSTREAM_ERROR = "upstream_error", "upstream error"
        PROXY_ERROR = "proxy_error", "proxy error"

    # Identity chosen by the relay before the row exists, so the finishing write
    # can find the row even when the start write waited in the backlog.
    uid = models.UUIDField(unique=True, editable=False)

    # Timing: UTC instants plus derived milliseconds (first byte = upstream
    # response headers received).
    started_at = models.DateTimeField(db_index=True)
    first_byte_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ttfb_ms = models.FloatField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)

    # The call as the client made it.
    method = models.CharField(max_length=16)
    path = models.TextField()
    query = models.TextField(blank=True, default="")
    is_streaming = models.BooleanField(default=False)
    model_requested = models.CharField(max_length=200, blank=True, default="")
    session_id = models.CharField(max_length=100, blank=True, default="")
    agent_id = models.CharField(max_length=100, blank=True, default="")
    user_agent = models.CharField(max_length=500, blank=True, default="")
    tools_offered = models.JSONField(default=list, blank=True)
    # The fingerprint of the API key or OAuth token the call was sent with
    # (recorder.credential_fingerprint): whose call it is, once a user claims it.
    credential = models.CharField(max_length=24, blank=True, default="")

    # Outcome.
    state = models.CharField(
        max_length=24, choices=State.choices, default=State.IN_PROGRESS
    )
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    model = models.CharField(max_length=200, blank=True, default="")
    message_id = models.CharField(max_length=200, blank=True, default="")
    request_id = models.CharField(max_length=200, blank=True, default="")
    stop_reason = models.CharField(max_length=64, blank=True, default="")
    error_type = models.CharField(max_length=100, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    tools_called = models.JSONField(default=dict, blank=True)

    # Usage as the API reports it (stream: start values overwritten by the last
    # message_delta), and its price; cost is null when the model has no price.
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_5m_tokens = models.PositiveIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.FloatField(null=True, blank=True)
    # usage.speed of the response ("fast" for fast mode), which prices it.
    speed = models.CharField(max_length=16, blank=True, default="")

    # Rate limits: every anthropic-ratelimit-* header parsed, plus the
    # subscription (unified) values in columns for the limits panel.
    ratelimits = models.JSONField(default=dict, blank=True)
    unified_status = models.CharField(max_length=32, blank=True, default="")
    unified_5h_utilization = models.FloatField(null=True, blank=True)
    unified_5h_reset = models.DateTimeField(null=True, blank=True)
    unified_7d_utilization = models.FloatField(null=True, blank=True)
    unified_7d_reset = models.DateTimeField(null=True, blank=True)

    # Content. Headers are [name, value] pairs with secrets fingerprinted; bodies
    # go through apps.proxy.bodies (body_encode/body_decode) only.
    request_headers = models.JSONField(default=list, blank=True)
    response_headers = models.JSONField(default=list, blank=True)
    request_size = models.PositiveIntegerField(default=0)
    response_size = models.PositiveIntegerField(default=0)
    request_body = models.BinaryField(null=True, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    response_message = models.JSONField(null=True, blank=True)
    # What the recorder could not keep or read of a body (cut at
    # CLAUDEMON_RECORD_MAX_BODY, not JSON, nested too deeply); empty when whole.
    request_body_note = models.TextField(blank=True, default="")
    response_body_note = models.TextField(blank=True, default="")

    # Routing (apps/proxy/routing): the rule that took the call and the provider
    # that served it; the fields above hold what the client sent and saw, these
    # what the provider was sent and answered (bodies through apps.proxy.bodies).
    route = models.CharField(max_length=200, blank=True, default="")
    provider = models.CharField(max_length=100, blank=True, default="")
    provider_status = models.PositiveSmallIntegerField(null=True, blank=True)
    provider_request_body = models.BinaryField(null=True, blank=True)
    provider_response_body = models.BinaryField(null=True, blank=True)
    routing = models.JSONField(default=dict, blank=True)
    # The relay process that carried the call (CLAUDEMON_RELAY_NAME).
    relay = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["model", "started_at"], name="exchange_model_time"),
            models.Index(
                fields=["session_id", "started_at"], name="exchange_session_time"
            ),
            models.Index(fields=["state", "started_at"], name="exchange_state_time"),
            models.Index(fields=["request_id"], name="exchange_request_id"),
            models.Index(fields=["message_id"], name="exchange_message_id"),
            models.Index(
                fields=["provider", "started_at"], name="exchange_provider_time"
            ),
            models.Index(
                fields=["credential", "started_at"], name="exchange_credential_time"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.state})"


class ApiCall(models.Model):
    """One billed API call: the ledger every usage figure is computed from.

    A call is known from the relay (an Exchange), from a transcript line, or
    both, and is one row whichever way: `key` is its request-id, else "msg:" and
    its message id, else "x:" and the exchange's uid. Where the relay saw it, its
    figures are the relay's (exact usage, timings, errors); `transcript` keeps the
    transcript's own figures, used when the exchange is deleted. The transcript
    supplies the context: session, agent, project. Written only through
    apps.proxy.services (calls), which also marks the row's quarter hour and
    session dirty so the dashboard's rollups are rebuilt
    (apps.dashboard.services.rollups).
    """

    class Kind(models.TextChoices):
        MESSAGES = "messages"
        COUNT_TOKENS = "count_tokens"

    key = models.CharField(max_length=210, unique=True)
    request_id = models.CharField(max_length=200, blank=True, default="")
    message_id = models.CharField(max_length=200, blank=True, default="")
    # The relayed exchange, when the relay saw the call (not a foreign key: the
    # exchange may be deleted; services.calls re-bases the row when it is).
    exchange_id = models.BigIntegerField(null=True, blank=True, unique=True)
    at = models.DateTimeField()  # the relay's start, else the transcript line's time
    quarter = models.IntegerField()  # UTC quarter hour of `at`: epoch seconds // 900
    kind = models.CharField(max_length=16, choices=Kind.choices)
    session_id = models.CharField(max_length=100, blank=True, default="")
    agent_id = models.CharField(max_length=100, blank=True, default="")  # "" = main
    # apps.indexing's Project, when a transcript placed the session (no foreign
    # key: the relay's deployment does not install the index).
    project_id = models.BigIntegerField(null=True, blank=True)
    model = models.CharField(max_length=200, blank=True, default="")
    speed = models.CharField(max_length=16, blank=True, default="")
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_5m_tokens = models.PositiveIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.FloatField(null=True, blank=True)  # None: price unknown
    savings_usd = models.FloatField(default=0.0)  # cache reads' saving
    error = models.CharField(max_length=100, blank=True, default="")  # "" = success
    ttfb_ms = models.FloatField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    tools = models.TextField(blank=True, default="")  # names called, one per call
    # The exchange's credential fingerprint; "" for a call only transcripts
    # record (no credential: unclaimed, seen by staff only).
    credential = models.CharField(max_length=24, blank=True, default="")
    # The transcript's figures (JSON), when a transcript records the call.
    transcript = models.TextField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["quarter"], name="apicall_quarter"),
            models.Index(fields=["session_id", "at"], name="apicall_session_at"),
            models.Index(fields=["at"], name="apicall_at"),
            models.Index(fields=["credential", "at"], name="apicall_credential_at"),
            # The slowest calls of a range: walked from the top, range checked.
            models.Index(fields=["duration_ms", "at"], name="apicall_duration"),
            models.Index(
                fields=["message_id"],
                name="apicall_message_id",
                condition=~models.Q(message_id=""),
            ),
        ]

    def __str__(self) -> str:
        return self.key


class ApiCallDirty(models.Model):
    """A quarter hour whose ledger rows changed since the rollups read them.

    `touched` is bumped by every writer: the row update takes the row lock, so a
    rollup build (which deletes the mark before reading the ledger) waits for a
    concurrent writer on PostgreSQL instead of missing its row.
    """

    quarter = models.IntegerField(primary_key=True)
    touched = models.BigIntegerField(default=0)


class ApiCallDirtySession(models.Model):
    """A session whose ledger rows changed since its totals were summed (the
    dashboard's SessionTotal); bumped like ApiCallDirty, for the same reason."""

    session_id = models.CharField(max_length=100, primary_key=True)
    touched = models.BigIntegerField(default=0)


class BodyBlock(models.Model):
    """A piece of request bodies, stored once per session (see apps.proxy.bodies).

    Exchanges of that session list block ids in their request_body; deletes sweep
    the blocks no remaining exchange lists (apps.proxy.bodies.bodyblock_sweep).
    """

    scope = models.CharField(max_length=100)  # the session_id of the exchanges
    digest = models.BinaryField(max_length=16)  # blake2b-128 of the raw bytes
    data = models.BinaryField()  # the raw bytes in body_encode's stored form

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "digest"], name="bodyblock_scope_digest"
            )
        ]

    def __str__(self) -> str:
        return f"block {self.pk} of {self.scope}"
