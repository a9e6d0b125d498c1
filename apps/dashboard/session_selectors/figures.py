"""A session's figures (calls, tokens, cost): the one definition every page uses.

A session's calls are every API call its transcripts record, the main thread's
and its subagents', plus the calls the relay recorded under its session id that
no transcript records (Claude Code's side calls, or a transcript not indexed).
Each call counts once: with the figures of the exchange the relay recorded for
it (same session id and request-id, the latest), else the transcript's. The
sessions list, the session page's header and the projects page all take
session_figures(); the session page's turns sum CALL_ROWS_SQL, the same rule
call by call, and show each subagent's own figures (parts of the total).

session_figures() starts from the totals the index keeps per session (the sums
of its calls) and corrects them with the relay's exchanges of the session, so
that its work grows with the exchanges relayed, not with the calls indexed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection

from apps.indexing import selectors as index
from apps.indexing.models import Session

_CHUNK = 400  # sessions per statement: each is named twice (main, subagents)


@dataclass(slots=True)
class Figures:
    """Calls, relayed calls, tokens and cost of some calls (cost None: unpriced)."""

    calls: int = 0
    relayed: int = 0
    tokens: int = 0
    cost_usd: float | None = None

    def add(
        self, calls: int, relayed: int, tokens: int | None, cost: float | None
    ) -> None:
        """Count a group of calls."""
        self.calls += calls
        self.relayed += relayed
        self.tokens += tokens or 0
        if cost is not None:
            self.cost_usd = (self.cost_usd or 0.0) + cost


@dataclass(slots=True)
class SessionFigures(Figures):
    """A session's total and its parts: main thread, each subagent, relay-only."""

    main: Figures = field(default_factory=Figures)
    subagents: dict[int, Figures] = field(default_factory=dict)  # by session pk
    relay_only: Figures = field(default_factory=Figures)  # in no transcript


# Each transcript call of one session with the figures it counts for: those of
# the exchange recorded for it (the latest with its request-id under the
# session id, the first parameter), else its own. Turn sums read these. The
# unary + keeps SQLite on the request-id index: the (session id, start) one
# would read every exchange of the session for each call (and, below, the
# session index every call of the session for each exchange).
_SENT = (
    "{0}.input_tokens + {0}.cache_read_tokens + {0}.cache_write_5m_tokens"
    " + {0}.cache_write_1h_tokens"
)
CALL_ROWS_SQL = f"""
SELECT c.turn, c.entry_id, x.id AS xid,
       CASE WHEN x.id IS NULL THEN {_SENT.format("c")}
            ELSE {_SENT.format("x")} END AS sent,
       CASE WHEN x.id IS NULL THEN c.output_tokens ELSE x.output_tokens END AS output,
       CASE WHEN x.id IS NULL THEN c.cache_read_tokens
            ELSE x.cache_read_tokens END AS cache_read,
       CASE WHEN x.id IS NULL THEN c.cost_usd ELSE x.cost_usd END AS cost
FROM indexing_call c
LEFT JOIN proxy_exchange x ON c.request_id <> '' AND x.id = (
    SELECT e.id FROM proxy_exchange e
    WHERE e.request_id = c.request_id AND +e.session_id = %s
    ORDER BY e.started_at DESC, e.id DESC LIMIT 1)
WHERE c.session_id = %s
"""

_TOKENS = (
    "{0}.input_tokens + {0}.output_tokens + {0}.cache_read_tokens"
    " + {0}.cache_write_5m_tokens + {0}.cache_write_1h_tokens"
)
# Per chunk of sessions, rows of (session id, member pk, calls, relayed calls,
# tokens, cost, tokens and cost of the calls replaced): first the totals the
# index keeps for each family member (main session and subagents), then the
# session ids' exchanges grouped by the member whose call each stands for, an
# older exchange of a request-id standing for nothing (member NULL: relay-only).
_FIGURES_SQL = f"""
WITH family(pk, root) AS (
    SELECT id, id FROM indexing_session WHERE id IN ({{marks}})
    UNION ALL
    SELECT id, parent_id FROM indexing_session WHERE parent_id IN ({{marks}})
)
SELECT r.session_id, s.id, s.assistant_count, 0, {_TOKENS.format("s")},
       s.cost_usd, 0, NULL
FROM family f JOIN indexing_session s ON s.id = f.pk
JOIN indexing_session r ON r.id = f.root
UNION ALL
SELECT e.session_id, c.session_id, COUNT(*), COUNT(*), SUM({_TOKENS.format("e")}),
       SUM(e.cost_usd), SUM({_TOKENS.format("c")}), SUM(c.cost_usd)
FROM proxy_exchange e
LEFT JOIN indexing_call c ON c.request_id = e.request_id AND c.request_id <> ''
    AND +c.session_id IN (SELECT pk FROM family) AND NOT EXISTS (
        SELECT 1 FROM proxy_exchange l
        WHERE l.request_id = e.request_id AND +l.session_id = e.session_id
          AND (l.started_at > e.started_at
               OR (l.started_at = e.started_at AND l.id > e.id)))
WHERE e.session_id IN ({{keys}})
GROUP BY e.session_id, c.session_id
"""


def session_figures(
    *, sessions: list[tuple[str, int | None]]
) -> dict[str, SessionFigures]:
    """Return {session id: its figures} for (session id, indexed pk or None) pairs."""
    found: dict[str, SessionFigures] = {key: SessionFigures() for key, _ in sessions}
    pairs = list(dict(sessions).items())
    for start in range(0, len(pairs), _CHUNK):
        _chunk_sum(pairs[start : start + _CHUNK], found)
    for figures in found.values():
        for part in (figures.main, *figures.subagents.values(), figures.relay_only):
            figures.add(part.calls, part.relayed, part.tokens, part.cost_usd)
    return found


def _chunk_sum(chunk: list[tuple[str, int | None]], found: dict) -> None:
    """Add a chunk's figures: the index's totals, corrected by the relay's calls."""
    roots = {key: pk for key, pk in chunk if pk is not None}
    pks = list(roots.values()) or [0]  # no session has pk 0: an empty family
    sql = _FIGURES_SQL.format(
        marks=", ".join(["%s"] * len(pks)), keys=", ".join(["%s"] * len(chunk))
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*pks, *pks, *(key for key, _ in chunk)])
        rows = cursor.fetchall()
    for key, pk, calls, relayed, tokens, cost, out_tokens, out_cost in rows:
        figures = found[key]
        if pk is None:
            figures.relay_only.add(calls, relayed, tokens, cost)
            continue
        part = figures.main if pk == roots.get(key) else figures.subagents.get(pk)
        if part is None:
            part = figures.subagents[pk] = Figures()
        # A relayed call replaces the transcript's count of it: the index's
        # total already holds that call, so only its figures change.
        part.add(0, relayed, tokens - (out_tokens or 0), cost)
        part.calls += calls - relayed
        if out_cost is not None:
            part.cost_usd = (part.cost_usd or 0.0) - out_cost


def session_page_figures(*, session_id: str, session: Session | None) -> SessionFigures:
    """Return the figures a session page heads with: a subagent's own are its
    part of its main session's (the relay records its calls under that id)."""
    parent = session.parent if session is not None and session.is_subagent else None
    if parent is None:
        key, pk = session_id, session.pk if session is not None else None
        return session_figures(sessions=[(key, pk)])[key]
    whole = session_figures(sessions=[(parent.session_id, parent.pk)])
    own = whole[parent.session_id].subagents.get(session.pk, Figures())
    return SessionFigures(own.calls, own.relayed, own.tokens, own.cost_usd, main=own)


def billing_session_id(session: Session) -> str:
    """Return the session id the relay records a session's calls under: a
    subagent's are its main session's (the transcripts' sessionId)."""
    if session.is_subagent and session.parent_key:
        return session.parent_key
    return session.session_id


def project_figures() -> dict[int, Figures]:
    """Return {project pk: the summed figures of its sessions}."""
    keys = index.session_keys_by_project()
    figures = session_figures(sessions=[(key, pk) for key, pk, _ in keys])
    projects: dict[int, Figures] = {}
    for key, _, project_pk in keys:
        one = figures[key]
        projects.setdefault(project_pk, Figures()).add(
            one.calls, one.relayed, one.tokens, one.cost_usd
        )
    return projects
