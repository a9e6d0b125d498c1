"""Reads of claimed credentials: whose calls a user sees (apps.proxy's Viewer)."""

from __future__ import annotations

from typing import Any

from apps.dashboard.models import CredentialClaim
from apps.proxy.selectors import EVERYONE, Viewer


def viewer_of(*, user: Any, person: str = "") -> Viewer:
    """Return whose calls a user sees: staff everyone's, or one person's when
    `person` names a user; anyone else only the credentials they claimed."""
    if user.is_staff and not person:
        return EVERYONE
    claims = CredentialClaim.objects.all()
    if user.is_staff:
        claims = claims.filter(user__username=person)
    else:
        claims = claims.filter(user_id=user.pk)
    return Viewer(
        credentials=tuple(sorted(claims.values_list("fingerprint", flat=True)))
    )


def claim_list(*, user: Any) -> list[CredentialClaim]:
    """Return a user's claimed credentials, oldest first."""
    return list(CredentialClaim.objects.filter(user_id=user.pk))


def person_names() -> list[str]:
    """Return the usernames that claimed a credential (staff filter by them)."""
    names = CredentialClaim.objects.values_list("user__username", flat=True)
    return sorted(set(names))
