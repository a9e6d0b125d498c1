"""Todo lists, tasks and plans."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from apps.indexing.models import Plan, Todo
from apps.indexing.selectors.sessions import findable, session_visible


def _todos(visible: QuerySet | None) -> QuerySet[Todo]:
    """Return the todos a reader sees: those of sessions they see."""
    if visible is None:
        return Todo.objects.all()
    keys = session_visible(visible=visible).values("session_id")
    return Todo.objects.filter(session_key__in=keys)


def _plans(visible: QuerySet | None) -> QuerySet[Plan]:
    """Return the plans a reader sees: those written under a session they see."""
    if visible is None:
        return Plan.objects.all()
    return Plan.objects.filter(
        slug__in=session_visible(visible=visible).exclude(slug="").values("slug")
    )


def todo_list(
    *,
    visible: QuerySet | None,
    session_id: str = "",
    status: str = "",
    limit: int = 200,
    offset: int = 0,
) -> list[Todo]:
    """Return todo and task items, grouped by file, in list order."""
    if not (findable(session_id) and findable(status)):
        return []
    todos = _todos(visible).order_by("source_id", "position")
    if session_id:
        todos = todos.filter(session_key=session_id)
    if status:
        todos = todos.filter(status=status)
    return list(todos[offset : offset + limit])


def todo_status_counts(
    *, visible: QuerySet | None, session_id: str = ""
) -> dict[str, int]:
    """Return {status: count} over todo items."""
    if not findable(session_id):
        return {}
    todos = _todos(visible)
    if session_id:
        todos = todos.filter(session_key=session_id)
    return dict(todos.values_list("status").annotate(n=Count("id")).order_by())


def plan_list(
    *, visible: QuerySet | None, limit: int = 50, offset: int = 0
) -> list[Plan]:
    """Return plans, most recently modified first."""
    plans = _plans(visible).order_by("-modified_at", "slug")
    return list(plans[offset : offset + limit])


def plan_by_slug(*, slug: str, visible: QuerySet | None) -> Plan | None:
    """Return the plan file written under a session's slug, or None."""
    if not slug or not findable(slug):
        return None
    return _plans(visible).filter(slug=slug).order_by("-modified_at").first()


def todo_sessions(
    *, visible: QuerySet | None, limit: int = 100
) -> list[tuple[str, int]]:
    """Return (session id, item count) of todo lists, most items first."""
    rows = (
        _todos(visible)
        .exclude(session_key="")
        .values_list("session_key")
        .annotate(n=Count("id"))
        .order_by("-n", "session_key")[:limit]
    )
    return list(rows)
