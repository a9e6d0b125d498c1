"""A session's figures (calls, tokens, cost): sums of its calls in the ledger.

A session's calls are the ledger's calls under its session id: its main
thread's and its subagents' (the relay records both under the main session's
id, and the index gives subagent transcripts the same), each counted once
however many files record it. The sessions list, the session page's header, the
projects page and the reports all read these sums; the session page's turns
join the transcript's calls to the same ledger rows (sql.CALL_ROWS), so the
parts add up to the header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection

from apps.dashboard import sql
from apps.dashboard.selectors.ledger import ALL_TIME, moment_utc
from apps.indexing.models import Session
from apps.proxy.selectors import Viewer, viewer_sql

_CHUNK = 500


@dataclass(slots=True)
class Figures:
    """Calls, relayed calls, tokens and cost of some calls (unpriced: price
    unknown; cost_usd is None when every call is)."""

    calls: int = 0
    relayed: int = 0
    tokens: int = 0
    cost_usd: float | None = None
    unpriced: int = 0

    def add(
        self,
        calls: int,
        relayed: int,
        tokens: int | None,
        cost: float | None,
        unpriced: int = 0,
    ) -> None:
        """Count a group of calls."""
        self.calls += calls
        self.relayed += relayed
        self.tokens += tokens or 0
        self.unpriced += unpriced
        if calls > unpriced:  # some are priced: the sum is their cost
            self.cost_usd = (self.cost_usd or 0.0) + (cost or 0.0)


@dataclass(slots=True)
class SessionFigures(Figures):
    """A session's total and its parts: main thread and each subagent (by agent
    id), and how many calls no transcript records (the relay's alone)."""

    main: Figures = field(default_factory=Figures)
    subagents: dict[str, Figures] = field(default_factory=dict)
    relay_only: int = 0
    models: list[str] = field(default_factory=list)
    first_at: datetime | None = None
    last_at: datetime | None = None
    subagent_calls: int = 0
    errors: int = 0
    kinds: dict[str, int] = field(default_factory=dict)  # tokens by kind
    project_id: int | None = None


_KINDS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_tokens",
    "cache_write_5m": "cache_write_5m_tokens",
    "cache_write_1h": "cache_write_1h_tokens",
}


def session_figures(
    *, session_ids: list[str], viewer: Viewer
) -> dict[str, SessionFigures]:
    """Return {session id: its whole figures} (every call a viewer sees,
    whenever made)."""
    found = {key: SessionFigures() for key in session_ids}
    keys = sorted(k for k in found if k)
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        marks = ", ".join(["%s"] * len(chunk))
        rows = session_totals(
            viewer=viewer, where=f"session_id IN ({marks})", params=chunk,
            among=(marks, chunk),
        )  # fmt: skip
        for row in rows:
            session_figures_fill(found[row["session_id"]], row)
    return found


def session_totals(
    *,
    viewer: Viewer,
    where: str = "",
    params: list | tuple = (),
    order: str = "",
    limit: int = 0,
    offset: int = 0,
    among: tuple[str, list] | None = None,
) -> list[dict]:
    """Return sessions' whole figures (sql.SESSIONS) matching a condition on
    sql.SESSION_COLUMNS; with an order (fixed SQL) sorted, with a limit one
    page of them. For a viewer who sees some calls, `among` (SQL, params)
    names the sessions to sum: ids, or sessions_since() (all of the viewer's
    when None)."""
    forms = sql.on(connection.vendor)
    statement, params = _sessions_sql(
        viewer, forms.SESSIONS_SELECT, forms.SESSIONS_MINE_SELECT, where, params, among
    )
    if order:
        statement += f" ORDER BY {order}"
    if limit:
        statement += " LIMIT %s OFFSET %s"
        params += [limit, offset]
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def session_count(
    *,
    viewer: Viewer,
    where: str = "",
    params: list | tuple = (),
    among: tuple[str, list] | None = None,
) -> int:
    """Return how many sessions match a condition (as session_totals)."""
    forms = sql.on(connection.vendor)
    statement, values = _sessions_sql(
        viewer, forms.SESSIONS_COUNT, forms.SESSIONS_MINE_COUNT, where, params, among
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, values)
        return cursor.fetchone()[0]


def sessions_since(*, viewer: Viewer, moment: datetime) -> tuple[str, list]:
    """Return session_totals' `among` for the sessions holding a call of the
    viewer's at or after a moment (those whose last_at can be in a range
    starting then)."""
    whose, credentials = viewer_sql(viewer=viewer)
    adapt = connection.ops.adapt_datetimefield_value
    return sql.SESSIONS_MINE_SINCE.format(mine=whose), [adapt(moment), *credentials]


def _sessions_sql(
    viewer: Viewer,
    everyone: str,
    mine: str,
    where: str,
    params: list | tuple,
    among: tuple[str, list] | None,
) -> tuple[str, list]:
    """Return the sessions statement for a viewer (kept totals serve everyone's)."""
    condition = f" AND {where}" if where else ""
    if viewer.sees_all:
        return everyone.format(where=condition), list(params)
    whose, credentials = viewer_sql(viewer=viewer)
    among = among or sessions_since(viewer=viewer, moment=ALL_TIME[0])
    statement = mine.format(mine=whose, among=among[0], where=condition)
    return statement, [*credentials, *among[1], *params]


def session_figures_fill(figures: SessionFigures, row: dict) -> None:
    """Give a SessionFigures a session's whole figures (a session_totals row)."""
    for kind, column in _KINDS.items():
        figures.kinds[kind] = int(row[column] or 0)
    tokens = sum(figures.kinds.values())
    figures.add(
        row["calls"], row["relayed_calls"], tokens, row["cost_usd"],
        row["unpriced_calls"],
    )  # fmt: skip
    figures.subagent_calls += row["subagent_calls"]
    figures.errors += row["errors"]
    figures.models = sorted(
        {*figures.models, *(row["model_list"] or "").split(",")} - {""}
    )
    figures.first_at = moment_utc(row["first_at"])
    figures.last_at = moment_utc(row["last_at"])
    figures.project_id = row["project_id"]


def session_page_figures(*, session_id: str, viewer: Viewer) -> SessionFigures:
    """Return a session's whole figures, split into its main thread and each
    subagent, for its page (the same sums as session_figures())."""
    figures = session_figures(session_ids=[session_id], viewer=viewer)[session_id]
    whose, credentials = viewer_sql(viewer=viewer, column="a.credential")
    with connection.cursor() as cursor:
        cursor.execute(
            sql.on(connection.vendor).SESSION_FIGURES.format(where=whose),
            [session_id, *credentials],
        )
        rows = cursor.fetchall()
    for agent_id, calls, relayed, tokens, cost, unpriced, relay_only in rows:
        part = figures.main if not agent_id else Figures()
        part.add(calls, relayed, tokens, cost, unpriced)
        if agent_id:
            figures.subagents[agent_id] = part
        figures.relay_only += relay_only
    return figures


def billing_session_id(session: Session) -> str:
    """Return the session id the ledger counts a session's calls under: a
    subagent's are its main session's (the transcripts' sessionId)."""
    if session.is_subagent and session.parent_key:
        return session.parent_key
    return session.session_id


def session_page_figures_of(
    *, session_id: str, session: Session | None, viewer: Viewer
) -> SessionFigures:
    """Return the figures a session page heads with: a subagent's own are its
    part of its main session's (the ledger counts its calls under that id)."""
    if session is None or not session.is_subagent or not session.parent_key:
        return session_page_figures(session_id=session_id, viewer=viewer)
    whole = session_page_figures(session_id=session.parent_key, viewer=viewer)
    own = whole.subagents.get(session.agent_id, Figures())
    return SessionFigures(
        own.calls, own.relayed, own.tokens, own.cost_usd, own.unpriced, main=own
    )
