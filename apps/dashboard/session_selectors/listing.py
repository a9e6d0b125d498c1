"""The merged session list: sessions the relay saw and sessions the index read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection

from apps.dashboard import schemas, selectors
from apps.indexing import selectors as index
from apps.indexing.models import Session

CANDIDATES = 2000  # sessions read per side before merging (newest first)
_CHUNK = 900


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
        _fill_unrelayed(matching)  # every row's cost before sorting by it
        matching.sort(key=lambda r: (r.cost_usd or 0.0, r.last_at or start))
    else:
        matching.sort(key=lambda r: (r.last_at or start, r.session_id))
    matching.reverse()
    page = matching[offset : offset + limit]
    if sort != "cost":
        _fill_unrelayed(page)
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
            tokens=sum(item["tokens"].values()),
            cost_usd=item["cost_usd"],
            models=list(item["models"]),
            relayed=True,
        )
    return rows


def _merge_index(row: SessionRow, session: Session) -> None:
    """Add what the transcript knows; the relay's figures win (they are the wire's)."""
    row.indexed, row.pk = True, session.pk
    row.title = session.title
    if session.project is not None:
        row.project_id, row.project_path = session.project_id, session.project.path
    if session.first_at and (row.first_at is None or session.first_at < row.first_at):
        row.first_at = session.first_at
    if session.last_at and (row.last_at is None or session.last_at > row.last_at):
        row.last_at = session.last_at
    row.turns = session.user_count  # TURN_START_SQL lines; the relay counts calls
    if not row.relayed:
        row.tokens = _session_tokens(session)
        row.cost_usd = session.cost_usd


def _session_tokens(session: Session) -> int:
    return (
        session.input_tokens + session.output_tokens + session.cache_read_tokens
        + session.cache_write_5m_tokens + session.cache_write_1h_tokens
    )  # fmt: skip


def _fill_unrelayed(rows: list[SessionRow]) -> None:
    """Add the transcript's calls the relay never recorded to a relayed session.

    A session resumed, or started before the relay was in the path, is relayed
    only in part; the session page counts those calls from the transcript, and
    so does the list (the relay's figures stay for the calls it saw).
    """
    both = {r.pk: r for r in rows if r.relayed and r.pk}
    pks = list(both)
    for start in range(0, len(pks), _CHUNK):
        chunk = pks[start : start + _CHUNK]
        marks = ", ".join(["%s"] * len(chunk))
        with connection.cursor() as cursor:
            cursor.execute(_UNRELAYED_SQL.format(marks=marks), chunk)
            for pk, tokens, cost in cursor.fetchall():
                row = both[pk]
                row.tokens += tokens or 0
                if cost is not None:
                    row.cost_usd = (row.cost_usd or 0.0) + cost


# The figures of a session's calls whose request-id no exchange carries, as the
# session page sums them (apps.dashboard.session_selectors.turns._TURN_SUMS_SQL).
_UNRELAYED_SQL = """
SELECT c.session_id,
       SUM(c.input_tokens + c.output_tokens + c.cache_read_tokens
           + c.cache_write_5m_tokens + c.cache_write_1h_tokens),
       SUM(c.cost_usd)
FROM indexing_call c
WHERE c.session_id IN ({marks}) AND (c.request_id = '' OR NOT EXISTS (
    SELECT 1 FROM proxy_exchange e WHERE e.request_id = c.request_id))
GROUP BY c.session_id
"""


def _fill_models(rows: list[SessionRow]) -> None:
    models = index.session_models(session_pks=[r.pk for r in rows if r.pk])
    for row in rows:
        row.models = sorted(set(row.models) | set(models.get(row.pk, [])))


def _fill_subagents(rows: list[SessionRow]) -> None:
    counts = index.session_subagent_counts(session_pks=[r.pk for r in rows if r.pk])
    for row in rows:
        row.subagents = counts.get(row.pk, 0)
