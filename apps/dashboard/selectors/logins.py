"""Reads of the login throttle: is a username or a client address locked out?"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.dashboard.models import LoginFailure

# One address may try several usernames (a shared machine, a typo in the name);
# it is locked out after this many times a username's allowance.
ADDRESS_FACTOR = 4


def login_throttled(*, username: str, address: str) -> bool:
    """Return whether too many logins failed lately for this username or address."""
    limit = settings.CLAUDEMON_LOGIN_FAILURES
    since = timezone.now() - timedelta(minutes=settings.CLAUDEMON_LOGIN_WINDOW_MINUTES)
    recent = LoginFailure.objects.filter(at__gte=since)
    if username and recent.filter(username=username.lower()[:150]).count() >= limit:
        return True
    by_address = recent.filter(address=address[:64]).count() if address else 0
    return by_address >= limit * ADDRESS_FACTOR
