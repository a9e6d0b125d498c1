"""Writes about people: API tokens, claimed credentials, failed logins and the
first admin."""

from __future__ import annotations

import hashlib
import os
import secrets
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.dashboard.models import ApiToken, CredentialClaim, LoginFailure
from apps.proxy.recorder import secret_fingerprint

TOKEN_PREFIX = "cm_"
_TOUCH_EVERY = timedelta(minutes=1)


class ClaimError(ValueError):
    """A credential that cannot be claimed (empty, or another user's)."""


def claim_add(*, user: User, secret: str, label: str = "") -> CredentialClaim:
    """Claim the API key or OAuth token `secret` for a user: its calls are theirs.

    Only its fingerprint is stored, computed as the relay fingerprints the key
    it forwards, so the claim matches the calls' `credential`. A pasted
    "Bearer " prefix is dropped, as the relay drops it.
    """
    value = secret.strip()
    if value.lower().startswith("bearer "):
        value = value[7:].strip()
    if not value:
        raise ClaimError("Paste an API key or OAuth token.")
    fingerprint = secret_fingerprint(value)
    mine = CredentialClaim.objects.filter(fingerprint=fingerprint, user=user).first()
    if mine is not None:
        return mine
    try:
        with transaction.atomic():
            return CredentialClaim.objects.create(
                user=user, fingerprint=fingerprint, label=label[:100]
            )
    except IntegrityError:  # unique fingerprint: someone else holds it
        raise ClaimError("Another user already claimed this credential.") from None


def claim_remove(*, user: User, claim_id: int) -> bool:
    """Give up one of a user's claims; return whether there was one."""
    deleted, _ = CredentialClaim.objects.filter(pk=claim_id, user=user).delete()
    return deleted > 0


def apitoken_hash(*, raw: str) -> str:
    """Return the stored form of a raw token."""
    return hashlib.sha256(raw.encode()).hexdigest()


def apitoken_create(*, user: User, name: str = "") -> tuple[ApiToken, str]:
    """Create a token for a user; return it with the raw value (shown only once)."""
    token = ApiToken(user=user, name=name)
    raw = apitoken_fill(token=token)
    token.save()
    return token, raw


def apitoken_fill(*, token: ApiToken) -> str:
    """Give an unsaved token a fresh secret; return the raw value."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token.key_hash = apitoken_hash(raw=raw)
    token.prefix = raw[:10]
    return raw


def apitoken_revoke(*, token: ApiToken) -> None:
    """Revoke a token (kept for the record, never accepted again)."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


def apitoken_authenticate(*, raw: str) -> User | None:
    """Return the active user owning a live token, or None."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=apitoken_hash(raw=raw), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    # Touch at most once a minute: a script polling the API must not turn every
    # read into a write on the database the relay records into.
    if token.last_used_at is None or now - token.last_used_at > _TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def login_failure_record(*, username: str, address: str) -> None:
    """Count a failed login; forget failures older than the throttle's window."""
    now = timezone.now()
    window = timedelta(minutes=settings.CLAUDEMON_LOGIN_WINDOW_MINUTES)
    with transaction.atomic():
        LoginFailure.objects.filter(at__lt=now - window).delete()
        LoginFailure.objects.create(
            username=username.lower()[:150], address=address[:64], at=now
        )


def login_failures_clear(*, username: str) -> None:
    """Forget a username's failed logins once it logged in."""
    LoginFailure.objects.filter(username=username.lower()[:150]).delete()


def admin_ensure(*, var_dir: Path) -> str | None:
    """Create superuser `admin` with a random password if no user exists.

    Return the password (also written to var_dir/admin-password.txt, mode 0600),
    or None when users already exist.
    """
    User = get_user_model()
    with transaction.atomic():
        if User.objects.exists():
            return None
        password = secrets.token_urlsafe(18)
        User.objects.create_superuser(username="admin", email="", password=password)
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / "admin-password.txt"
    path.unlink(missing_ok=True)  # a stale file from an old database
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"username: admin\npassword: {password}\n")
    return password
