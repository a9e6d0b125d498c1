"""Writes of the data deployment: API tokens, the first admin, pruning exchanges."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.dashboard.models import ApiToken
from apps.dashboard.selectors.readiness import worker_heartbeat_path
from apps.dashboard.selectors.rollups import rollup_invalidate
from apps.proxy.models import Exchange

TOKEN_PREFIX = "cm_"
_TOUCH_EVERY = timedelta(minutes=1)
_DELETE_BATCH = 2000


def apitoken_hash(*, raw: str) -> str:
    """Return the stored form of a raw token."""
    return hashlib.sha256(raw.encode()).hexdigest()


def apitoken_create(*, user: AbstractBaseUser, name: str = "") -> tuple[ApiToken, str]:
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


def apitoken_authenticate(*, raw: str) -> AbstractBaseUser | None:
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


def exchange_prune(*, before: datetime) -> int:
    """Delete every exchange that started before an instant; return how many."""
    return exchange_delete(queryset=Exchange.objects.filter(started_at__lt=before))


def exchange_delete(*, queryset: QuerySet[Exchange]) -> int:
    """Delete the exchanges of a queryset in short batches; return how many.

    Batches keep each write transaction short, so the relay's recorder (same
    SQLite file, one writer at a time) never waits long behind a big delete.
    """
    ids = queryset.order_by().values_list("pk", flat=True)
    deleted = 0
    while True:
        batch = list(ids[:_DELETE_BATCH])
        if not batch:
            return deleted
        with transaction.atomic():  # the stats rollups must not outlive their rows
            rollup_invalidate(exchange_ids=batch)
            count, _ = Exchange.objects.filter(pk__in=batch).delete()
        deleted += count


HEARTBEAT_EVERY = 5.0


def worker_heartbeat_start(*, name: str) -> threading.Thread:
    """Rewrite this worker's heartbeat file every HEARTBEAT_EVERY seconds, from a
    thread of its own for as long as the process lives.

    A thread, not the worker's loop: an indexer pass may rightly take minutes, and
    the rollups sleep a minute between passes; /ready asks whether they run.
    """

    def beat() -> None:
        while True:
            time.sleep(HEARTBEAT_EVERY)
            try:
                worker_heartbeat_write(name=name)
            except OSError:  # var/ away for a moment: the next beat tries again
                pass

    worker_heartbeat_write(name=name)  # at once: /ready must not wait for a beat
    thread = threading.Thread(target=beat, name=f"heartbeat-{name}", daemon=True)
    thread.start()
    return thread


def worker_heartbeat_write(*, name: str) -> None:
    """Write one heartbeat of this process as the worker `name` (owner-only)."""
    path = worker_heartbeat_path(name=name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    beat = {"pid": os.getpid(), "at": time.time(), "every": HEARTBEAT_EVERY}
    fresh = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(beat, handle)
    os.replace(fresh, path)  # readers never see half a file
