"""The merged session list: sessions the relay saw and sessions the index read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from apps.dashboard import schemas, selectors
from apps.dashboard.session_selectors.figures import session_figures
from apps.indexing import selectors as index
from apps.indexing.models import Session

CANDIDATES = 2000  # sessions read per side before merging (newest first)


@dataclass(slots=True)
class SessionRow:
    session_id: str
    title: str = ""
    project_id: int | None = None
    project_path: str = ""
    first_at: datetime | None = None
    last_at: datetime | None = None
    turns: int = 0
    tokens: int = 0
    cost_usd: float | None = None
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


def session_rows(
    *,
    start: datetime,
    end: datetime,
    tz: str,
    project_id: int | None = None,
    model: str = "",
    sort: str = "last",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[SessionRow], int]:
    """Return one page of sessions active in [start, end) and how many match."""
    rows = _relay_rows(start=start, end=end, tz=tz)
    indexed = index.session_list(since=start, until=end, limit=CANDIDATES)
    known = {s.session_id: s for s in indexed}
    known.update(index.sessions_by_id(session_ids=[r for r in rows if r not in known]))
    for key, session in known.items():
        _merge_index(rows.setdefault(key, SessionRow(key)), session)
    matching = [
        r for r in rows.values() if project_id is None or r.project_id == project_id
    ]
    if model:
        _fill_models([r for r in matching if r.indexed])
        matching = [r for r in matching if model in r.models]
    if sort == "cost":
        _fill_figures(matching)  # every row's cost before sorting by it
        matching.sort(key=lambda r: (r.cost_usd or 0.0, r.last_at or start))
    else:
        matching.sort(key=lambda r: (r.last_at or start, r.session_id))
    matching.reverse()
    page = matching[offset : offset + limit]
    if sort != "cost":
        _fill_figures(page)
    if not model:
        _fill_models([r for r in page if r.indexed])
    _fill_subagents(page)
    return page, len(matching)


def _relay_rows(*, start: datetime, end: datetime, tz: str) -> dict[str, SessionRow]:
    filters = schemas.ExchangeFilter.model_validate(
        {"from": start.isoformat(), "to": end.isoformat(), "tz": tz}
    )
    listed = selectors.session_list(filters=filters, limit=CANDIDATES, offset=0)
    rows = {}
    for item in listed["items"]:
        rows[item["session_id"]] = SessionRow(
            session_id=item["session_id"],
            first_at=item["first_at"],
            last_at=item["last_at"],
            turns=item["turns"],
            models=list(item["models"]),
            relayed=True,
        )
    return rows


def _merge_index(row: SessionRow, session: Session) -> None:
    """Add what the transcript knows: title, project, a wider span, its turns."""
    row.indexed, row.pk = True, session.pk
    row.title = session.title
    if session.project is not None:
        row.project_id, row.project_path = session.project_id, session.project.path
    if session.first_at and (row.first_at is None or session.first_at < row.first_at):
        row.first_at = session.first_at
    if session.last_at and (row.last_at is None or session.last_at > row.last_at):
        row.last_at = session.last_at
    row.turns = session.user_count  # TURN_START_SQL lines; the relay counts calls


def _fill_figures(rows: list[SessionRow]) -> None:
    """Give rows their session's tokens and cost as the session page counts them
    (session_figures(): the transcripts' calls, subagents' included, and the
    relayed calls they do not record); the relay's own sums are per range."""
    figures = session_figures(sessions=[(r.session_id, r.pk) for r in rows])
    for row in rows:
        row.tokens = figures[row.session_id].tokens
        row.cost_usd = figures[row.session_id].cost_usd


def _fill_models(rows: list[SessionRow]) -> None:
    models = index.session_models(session_pks=[r.pk for r in rows if r.pk])
    for row in rows:
        row.models = sorted(set(row.models) | set(models.get(row.pk, [])))


def _fill_subagents(rows: list[SessionRow]) -> None:
    counts = index.session_subagent_counts(session_pks=[r.pk for r in rows if r.pk])
    for row in rows:
        row.subagents = counts.get(row.pk, 0)
