"""Todo lists, tasks and plans."""

from __future__ import annotations

from django.db.models import Count

from apps.indexing.models import Plan, Todo
from apps.indexing.selectors.sessions import findable


def todo_list(
    *, session_id: str = "", status: str = "", limit: int = 200, offset: int = 0
) -> list[Todo]:
    """Return todo and task items, grouped by file, in list order."""
    if not (findable(session_id) and findable(status)):
        return []
    todos = Todo.objects.order_by("source_id", "position")
    if session_id:
        todos = todos.filter(session_key=session_id)
    if status:
        todos = todos.filter(status=status)
    return list(todos[offset : offset + limit])


def todo_status_counts(*, session_id: str = "") -> dict[str, int]:
    """Return {status: count} over todo items."""
    if not findable(session_id):
        return {}
    todos = Todo.objects.all()
    if session_id:
        todos = todos.filter(session_key=session_id)
    return dict(todos.values_list("status").annotate(n=Count("id")).order_by())


def plan_list(*, limit: int = 50, offset: int = 0) -> list[Plan]:
    """Return plans, most recently modified first."""
    return list(Plan.objects.order_by("-modified_at", "slug")[offset : offset + limit])


def plan_by_slug(*, slug: str) -> Plan | None:
    """Return the plan file written under a session's slug, or None."""
    if not slug or not findable(slug):
        return None
    return Plan.objects.filter(slug=slug).order_by("-modified_at").first()


def todo_sessions(*, limit: int = 100) -> list[tuple[str, int]]:
    """Return (session id, item count) of todo lists, most items first."""
    rows = (
        Todo.objects.exclude(session_key="")
        .values_list("session_key")
        .annotate(n=Count("id"))
        .order_by("-n", "session_key")[:limit]
    )
    return list(rows)
