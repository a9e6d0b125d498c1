"""API tokens: per-user bearer credentials for scripts, stored only as a hash."""

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
