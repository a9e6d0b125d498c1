"""The sessions list: every session with a call in a range, with its whole figures.

A row's figures are the session's (every call, whenever made: figures.py), the
same sums its page heads with, so the list and the pages cannot disagree. Title,
project and turns come from the index when a transcript of it was read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection

from apps.dashboard.selectors.sessions.figures import (
    SessionFigures,
    session_count,
    session_figures_fill,
    session_totals,
    sessions_since,
)
from apps.indexing import selectors as index
from apps.indexing.models import Session
from apps.proxy.selectors import Viewer


@dataclass(slots=True)
class SessionRow:
    session_id: str
    title: str = ""
    project_id: int | None = None
    project_path: str = ""
    first_at: datetime | None = None
    last_at: datetime | None = None
    turns: int = 0
    calls: int = 0
    subagent_calls: int = 0
    errors: int = 0
    tokens: int = 0
    token_kinds: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    unpriced: int = 0
    models: list[str] = field(default_factory=list)
    subagents: int = 0
    relayed: bool = False
    indexed: bool = False
    pk: int | None = None

    @property
    def duration(self) -> timedelta | None:
        """Return last activity minus start, when both are known."""
        if self.first_at and self.last_at:
            return self.last_at - self.first_at
        return None

    @property
    def duration_text(self) -> str:
        """Return the duration as '45 s', '12 min' or '3 h 05 min'."""
        if self.duration is None:
            return "—"
        seconds = int(self.duration.total_seconds())
        if seconds < 60:
            return f"{seconds} s"
        if seconds < 3600:
            return f"{seconds // 60} min"
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


_ORDERS = {
    "last": "last_at DESC, session_id DESC",
    "cost": "cost_usd DESC, last_at DESC, session_id DESC",
}


def session_rows(
    *,
    viewer: Viewer,
    start: datetime,
    end: datetime,
    project_id: int | None = None,
    model: str = "",
    sort: str = "last",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[SessionRow], int]:
    """Return one page of the sessions active in [start, end) (a call before its
    end, a call after its start), with a project and a model if given, and how
    many there are; newest activity or highest cost first."""
    adapt = connection.ops.adapt_datetimefield_value
    where = ["first_at < %s", "last_at >= %s"]
    params: list = [adapt(end), adapt(start)]
    if project_id is not None:
        where.append("project_id = %s")
        params.append(project_id)
    if model:
        where.append("',' || model_list || ',' LIKE %s ESCAPE '\\'")
        params.append("%," + re.sub(r"([\\%_])", r"\\\1", model) + ",%")
    condition = " AND ".join(where)
    totals, count = _totals_page(
        viewer, condition, params, order=_ORDERS.get(sort, _ORDERS["last"]),
        limit=limit, offset=offset, among=sessions_since(viewer=viewer, moment=start),
    )  # fmt: skip
    rows = []
    for total in totals:
        figures = SessionFigures()
        session_figures_fill(figures, total)
        rows.append(_row(total["session_id"], figures))
    _index_fill(rows)
    return rows, count


def _totals_page(
    viewer: Viewer,
    where: str,
    params: list,
    *,
    order: str,
    limit: int,
    offset: int,
    among: tuple[str, list],
) -> tuple[list[dict], int]:
    """Return one page of the matching sessions' totals and how many match."""
    if viewer.sees_all:  # kept totals: a page and a count, each read cheaply
        page = session_totals(
            viewer=viewer, where=where, params=params, order=order, limit=limit,
            offset=offset, among=among,
        )  # fmt: skip
        return page, session_count(
            viewer=viewer, where=where, params=params, among=among
        )
    # A viewer's totals are summed from their calls at every read: one pass for
    # the page and the count (bench/stats.py --member, sessions); their
    # sessions of a range are few.
    every = session_totals(
        viewer=viewer, where=where, params=params, order=order, among=among
    )
    return every[offset : offset + limit], len(every)


def _row(key: str, figures: SessionFigures) -> SessionRow:
    return SessionRow(
        session_id=key,
        project_id=figures.project_id,
        first_at=figures.first_at,
        last_at=figures.last_at,
        calls=figures.calls,
        subagent_calls=figures.subagent_calls,
        errors=figures.errors,
        tokens=figures.tokens,
        token_kinds=dict(figures.kinds),
        cost_usd=figures.cost_usd,
        unpriced=figures.unpriced,
        models=figures.models,
        relayed=figures.relayed > 0,
    )


def _index_fill(rows: list[SessionRow]) -> None:
    """Add what the transcripts know: title, project, turns, subagents."""
    known = index.sessions_by_id(session_ids=[r.session_id for r in rows])
    counts = index.session_subagent_counts(session_pks=[s.pk for s in known.values()])
    for row in rows:
        session: Session | None = known.get(row.session_id)
        if session is None:
            # No transcript: a turn per main-thread call, as its page counts.
            row.turns = row.calls - row.subagent_calls
            continue
        row.indexed, row.pk, row.title = True, session.pk, session.title
        row.turns = session.user_count  # prompts typed, each line counted once
        row.subagents = counts.get(session.pk, 0)
        if session.project is not None:
            row.project_id, row.project_path = session.project_id, session.project.path


def session_out(row: SessionRow) -> dict:
    """Return a sessions list row in the API's shape (schemas.SessionUsageOut)."""
    kinds = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
    return {
        "session_id": row.session_id, "title": row.title,
        "project_id": row.project_id, "project": row.project_path,
        "first_at": row.first_at, "last_at": row.last_at, "requests": row.calls,
        "turns": row.turns, "subagent_calls": row.subagent_calls,
        "errors": row.errors,
        "tokens": {kind: row.token_kinds.get(kind, 0) for kind in kinds},
        "total_tokens": row.tokens,
        "cost_usd": row.cost_usd, "unpriced_requests": row.unpriced,
        "models": row.models,
    }  # fmt: skip
