"""Projects and sessions: lists, one session, subagents, models and totals."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from django.db.models import Count, Max, Q, QuerySet, Sum

from apps.indexing.models import Entry, Project, Session

if TYPE_CHECKING:  # django-stubs' helper: a dev dependency, read by the checker only
    from django_stubs_ext import WithAnnotations


def findable(text: str) -> bool:
    """Say whether a stored id, title, slug or status could contain text.

    None holds a NUL (the parser reads one as U+FFFD; PostgreSQL's text cannot
    hold one, and a query naming one fails there), so text with a NUL finds
    nothing, on every database.
    """
    return "\x00" not in text


class ProjectFigures(TypedDict):
    session_count: int
    last_at: datetime | None
    cost_usd: float | None


def session_visible(*, visible: QuerySet | None) -> QuerySet[Session]:
    """Return the sessions a reader sees: `visible` holds the ledger's session ids
    of their calls (apps.proxy.selectors.call_session_ids; None: every session);
    a subagent's calls are counted under its main session's id."""
    if visible is None:
        return Session.objects.all()
    return Session.objects.filter(Q(session_id__in=visible) | Q(parent_key__in=visible))


def project_list(
    *, visible: QuerySet | None
) -> list[WithAnnotations[Project, ProjectFigures]]:
    """Return projects with session count, last activity and cost, most recent
    first (of the sessions a reader sees, and only projects holding one)."""
    projects = Project.objects.all()
    mine = Q()
    if visible is not None:
        pks = session_visible(visible=visible).values("pk")
        projects = projects.filter(sessions__pk__in=pks).distinct()
        mine = Q(sessions__pk__in=pks)
    return list(
        projects.annotate(
            session_count=Count(
                "sessions", filter=Q(sessions__is_subagent=False) & mine, distinct=True
            ),
            last_at=Max("sessions__last_at", filter=mine),
            cost_usd=Sum("sessions__cost_usd", filter=mine),
        ).order_by("-last_at", "path")
    )


def session_list(
    *,
    visible: QuerySet | None,
    project_id: int | None = None,
    title: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    subagents: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> list[Session]:
    """Return sessions, most recently active first, with their project."""
    sessions = session_visible(visible=visible).select_related("project")
    sessions = sessions.order_by("-last_at", "-id")
    if not subagents:
        sessions = sessions.filter(is_subagent=False)
    if project_id is not None:
        sessions = sessions.filter(project_id=project_id)
    if title:
        if not findable(title):
            return []
        sessions = sessions.filter(title__icontains=title)
    if since is not None:
        sessions = sessions.filter(last_at__gte=since)
    if until is not None:
        sessions = sessions.filter(first_at__lt=until)
    return list(sessions[offset : offset + limit])


def session_get(*, session_id: str, visible: QuerySet | None) -> Session | None:
    """Return one session a reader sees, with its project and parent, or None."""
    if not findable(session_id):
        return None
    return (
        session_visible(visible=visible)
        .select_related("project", "parent")
        .filter(session_id=session_id)
        .first()
    )


def session_subagent_list(*, session: Session) -> list[Session]:
    """Return the subagent sessions a session spawned, in start order."""
    return list(Session.objects.filter(parent=session).order_by("first_at", "id"))


def sessions_by_id(*, session_ids: list[str]) -> dict[str, Session]:
    """Return {session id: Session with project} for the ids that are indexed."""
    wanted = [s for s in dict.fromkeys(session_ids) if s and findable(s)]
    found: dict[str, Session] = {}
    for start in range(0, len(wanted), 900):
        rows = Session.objects.select_related("project").filter(
            session_id__in=wanted[start : start + 900]
        )
        found.update({s.session_id: s for s in rows})
    return found


def session_subagent_counts(*, session_pks: list[int]) -> dict[int, int]:
    """Return {session pk: number of subagent sessions it spawned}."""
    rows = (
        Session.objects.filter(parent_id__in=session_pks)
        .values_list("parent_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return dict(rows)


def session_models(*, session_pks: list[int]) -> dict[int, list[str]]:
    """Return {session pk: sorted models its assistant entries name}."""
    rows = (
        Entry.objects.filter(session_id__in=session_pks, type="assistant")
        .exclude(model="")
        .exclude(model="<synthetic>")
        .values_list("session_id", "model")
        .distinct()
        .order_by()
    )
    models: dict[int, list[str]] = {}
    for pk, model in rows:
        models.setdefault(pk, []).append(model)
    return {pk: sorted(names) for pk, names in models.items()}


def session_keys_by_project() -> list[tuple[str, int, int]]:
    """Return (session id, pk, project pk) of every main session with a project."""
    rows = Session.objects.filter(is_subagent=False, project__isnull=False)
    return list(rows.values_list("session_id", "pk", "project_id").order_by())
