"""The Exchange: one relayed call, created when it starts, completed when it ends."""

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
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.state})"
