"""Reads joining the relay's exchanges with the transcript index, for session pages.

A Claude Code session is known from two sides: the relay saw its calls (the
session id header, each call's request-id) and the index read its transcript
(sessionId, each response's requestId). Either side may be missing: a session
run without the relay, or relayed calls whose transcript was never indexed.
Index reads go through apps.indexing.selectors; exchanges are read here, and
so is the one statement that sums a session's turns from the index's calls
joined to their exchanges (_TURN_SUMS_SQL): the session page of a long session
then reads one row per turn.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.db import connection

from apps.dashboard import schemas, selectors
from apps.dashboard.selectors.base import MESSAGES_PATH
from apps.indexing import selectors as index
from apps.indexing.models import Call, Session
from apps.indexing.selectors import TurnMark

CANDIDATES = 2000  # sessions read per side before merging (newest first)
TURNS_PER_PAGE = 50
_CHUNK = 900


class ExchangeRow(NamedTuple):
    """The figures of a relayed call a session page shows (no bodies, no model)."""

    id: int
    request_id: str
    agent_id: str
    started_at: str  # stored text, naive UTC
    ttfb_ms: float | None
    duration_ms: float | None
    model: str
    model_requested: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cost_usd: float | None
    path: str


# --- the merged session list -------------------------------------------------


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
        matching.sort(key=lambda r: (r.cost_usd or 0.0, r.last_at or start))
    else:
        matching.sort(key=lambda r: (r.last_at or start, r.session_id))
    matching.reverse()
    page = matching[offset : offset + limit]
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


def _fill_models(rows: list[SessionRow]) -> None:
    models = index.session_models(session_pks=[r.pk for r in rows if r.pk])
    for row in rows:
        row.models = sorted(set(row.models) | set(models.get(row.pk, [])))


def _fill_subagents(rows: list[SessionRow]) -> None:
    counts = index.session_subagent_counts(session_pks=[r.pk for r in rows if r.pk])
    for row in rows:
        row.subagents = counts.get(row.pk, 0)


# --- one session, turn by turn -------------------------------------------------


@dataclass(slots=True)
class TurnCall:
    """One API call of a turn: the relayed exchange, or the transcript's usage."""

    request_id: str
    exchange_id: int | None = None
    model: str = ""
    ttfb_ms: float | None = None
    duration_ms: float | None = None
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cost_usd: float | None = None

    @property
    def prompt_tokens(self) -> int:
        """Return the context sent: input plus cache reads and writes."""
        return self.input + self.cache_read + self.cache_write


@dataclass(slots=True)
class Turn:
    """A prompt and what followed, with its calls' figures summed as they are read.

    Every turn of a session is summed (for the totals and charts); the calls
    themselves (links, timings) are built only for the turns a page shows.
    """

    number: int
    uuid: str = ""
    entry_id: int | None = None
    at: datetime | None = None
    prompt_entry: TurnMark | None = None
    prompt: str = ""
    tools: Counter = field(default_factory=Counter)
    subagents: list[Session] = field(default_factory=list)
    compactions: int = 0
    call_count: int = 0
    relayed: int = 0
    tokens: int = 0
    cost_usd: float | None = None
    context_tokens: int = 0  # the prompt tokens of the last call: what it sent
    sent: int = 0
    cache_read: int = 0
    calls: list[TurnCall] = field(default_factory=list)  # only for turns shown

    @property
    def ttfb_ms(self) -> float | None:
        """Return the time to first byte of the turn's first relayed call."""
        return next((c.ttfb_ms for c in self.calls if c.ttfb_ms is not None), None)

    @property
    def duration_ms(self) -> float | None:
        """Return the summed duration of the turn's relayed calls."""
        known = [c.duration_ms for c in self.calls if c.duration_ms is not None]
        return sum(known) if known else None

    @property
    def cache_hit(self) -> float | None:
        """Return cache reads over all prompt tokens of the turn."""
        return self.cache_read / self.sent if self.sent else None

    @property
    def tool_summary(self) -> list[tuple[str, int]]:
        return sorted(self.tools.items(), key=lambda kv: (-kv[1], kv[0]))

    @property
    def exchange_id(self) -> int | None:
        return next((c.exchange_id for c in self.calls if c.exchange_id), None)

    def add(self, *, usage: tuple[int, int, int, int], cost: float | None) -> None:
        """Count one call: (input, output, cache read, cache write) and its cost."""
        input_tokens, output, cache_read, cache_write = usage
        sent = input_tokens + cache_read + cache_write
        self.call_count += 1
        self.tokens += sent + output
        self.sent += sent
        self.cache_read += cache_read
        self.context_tokens = sent
        if cost is not None:
            self.cost_usd = (self.cost_usd or 0.0) + cost


def session_turns(*, session_id: str) -> tuple[Session | None, list[Turn]]:
    """Return a session (None if only relayed) and its turns in order, summed.

    From the transcript when indexed (a turn starts at each prompt, as
    index.TURN_START_SQL says), each call's figures the relayed exchange's when
    there is one; else from the exchanges alone. turn_details_fill() completes
    the turns a page shows.
    """
    session = index.session_get(session_id=session_id)
    if session is None:
        return None, _relay_turns(session_id=session_id)
    turns = _turns_build(index.session_turn_marks(session=session))
    _sums_apply(turns, _turn_sums(session))
    _subagents_attach(session, turns, index.session_subagent_list(session=session))
    return session, turns


def turn_count(turns: list[Turn]) -> int:
    """Return how many turns a session had: its prompts (turn 0 holds what came
    before the first one, it is not a turn)."""
    return sum(1 for turn in turns if turn.number)


def turn_details_fill(*, session: Session | None, turns: list[Turn]) -> None:
    """Read the calls, tools and prompt texts of the turns a page shows."""
    if session is not None:
        _calls_fill(session, turns)
    rows = [t.prompt_entry for t in turns if t.number and t.prompt_entry]
    texts = index.entry_records(entries=rows)
    for turn in turns:
        if turn.prompt_entry is not None and turn.prompt_entry.id in texts:
            turn.prompt = texts[turn.prompt_entry.id][1]


def _calls_fill(session: Session, turns: list[Turn]) -> None:
    by_number = {turn.number: turn for turn in turns}
    calls = index.session_calls(session=session, turns=list(by_number))
    exchanges = exchanges_by_request_id(request_ids=[c.request_id for c in calls])
    for call in calls:
        turn = by_number[call.turn]
        if not turn.calls and not turn.uuid:  # turn 0 opened by a reply
            turn.uuid, turn.entry_id, turn.at = call.uuid, call.entry_id, call.timestamp
        turn.tools.update(call.tools.split())
        turn.calls.append(_call_build(call, exchanges.get(call.request_id)))


def _turns_build(marks: list[TurnMark]) -> list[Turn]:
    """Start a turn at each prompt; count compactions in the turn they happen."""
    turns: list[Turn] = [Turn(0)]  # what precedes the first prompt, if anything
    for mark in marks:
        at = index.entry_row_time(mark)
        if mark.kind == index.TURN_PROMPT:
            turns.append(Turn(len(turns), mark.uuid, mark.id, at, mark))
            continue
        if len(turns) == 1 and not turns[0].compactions:
            turns[0].uuid, turns[0].entry_id, turns[0].at = mark.uuid, mark.id, at
        turns[-1].compactions += 1
    return turns


def _sums_apply(turns: list[Turn], sums: list[tuple]) -> None:
    """Give each turn its summed calls; drop turn 0 if nothing came before turn 1."""
    for number, calls, relayed, tokens, sent, cache_read, cost, last in sums:
        turn = turns[min(number, len(turns) - 1)]  # a call past the last prompt
        turn.call_count += calls
        turn.relayed += relayed
        turn.tokens += tokens
        turn.sent += sent
        turn.cache_read += cache_read
        turn.context_tokens = last or 0
        if cost is not None:
            turn.cost_usd = (turn.cost_usd or 0.0) + cost
    if not (turns[0].call_count or turns[0].compactions):
        del turns[0]


# Per turn: calls, relayed calls, tokens, prompt tokens, cache reads, cost, and
# the prompt tokens of its last call; each call's figures are its exchange's
# (the latest with its request-id) when the relay saw it, else the transcript's.
_SENT = (
    "{0}.input_tokens + {0}.cache_read_tokens + {0}.cache_write_5m_tokens"
    " + {0}.cache_write_1h_tokens"
)
_TURN_SUMS_SQL = f"""
SELECT turn, COUNT(*), COUNT(xid), SUM(sent + output), SUM(sent), SUM(cache_read),
       SUM(cost), MAX(CASE WHEN later = 0 THEN sent END)
FROM (
    SELECT c.turn, x.id AS xid,
           CASE WHEN x.id IS NULL THEN {_SENT.format("c")}
                ELSE {_SENT.format("x")} END AS sent,
           CASE WHEN x.id IS NULL THEN c.output_tokens
                ELSE x.output_tokens END AS output,
           CASE WHEN x.id IS NULL THEN c.cache_read_tokens
                ELSE x.cache_read_tokens END AS cache_read,
           CASE WHEN x.id IS NULL THEN c.cost_usd ELSE x.cost_usd END AS cost,
           ROW_NUMBER() OVER (PARTITION BY c.turn ORDER BY c.entry_id DESC) - 1
               AS later
    FROM indexing_call c
    LEFT JOIN proxy_exchange x ON c.request_id <> '' AND x.id = (
        SELECT e.id FROM proxy_exchange e WHERE e.request_id = c.request_id
        ORDER BY e.started_at DESC, e.id DESC LIMIT 1)
    WHERE c.session_id = %s
)
GROUP BY turn ORDER BY turn
"""


def _turn_sums(session: Session) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(_TURN_SUMS_SQL, [session.pk])
        return cursor.fetchall()


def _exchange_usage(exchange: ExchangeRow) -> tuple[int, int, int, int]:
    cache_write = exchange.cache_write_5m_tokens + exchange.cache_write_1h_tokens
    return (
        exchange.input_tokens, exchange.output_tokens, exchange.cache_read_tokens,
        cache_write,
    )  # fmt: skip


def _call_build(call: Call, exchange: ExchangeRow | None) -> TurnCall:
    """Return a shown call: the relayed exchange's figures, else the transcript's."""
    shown = TurnCall(
        request_id=call.request_id,
        model=call.model,
        input=call.input_tokens,
        output=call.output_tokens,
        cache_read=call.cache_read_tokens,
        cache_write=call.cache_write_5m_tokens + call.cache_write_1h_tokens,
        cost_usd=call.cost_usd,
    )
    _call_join(shown, exchange)
    return shown


def _call_join(call: TurnCall, exchange: ExchangeRow | None) -> None:
    """Replace the transcript's figures by the relayed exchange's, when relayed."""
    if exchange is None:
        return
    call.exchange_id = exchange.id
    call.model = exchange.model or exchange.model_requested or call.model
    call.ttfb_ms, call.duration_ms = exchange.ttfb_ms, exchange.duration_ms
    call.input, call.output = exchange.input_tokens, exchange.output_tokens
    call.cache_read = exchange.cache_read_tokens
    call.cache_write = exchange.cache_write_5m_tokens + exchange.cache_write_1h_tokens
    call.cost_usd = exchange.cost_usd


def _subagents_attach(
    session: Session, turns: list[Turn], children: list[Session]
) -> None:
    """Nest each subagent under the turn holding its spawning entry (else by time)."""
    spawned = index.entry_ids_by_uuid(
        session=session, uuids=[child.spawn_uuid for child in children]
    )
    starts = [t.entry_id or 0 for t in turns]
    for child in children:
        entry_id = spawned.get(child.spawn_uuid)
        if entry_id is not None and turns:
            turn = turns[max(0, bisect_right(starts, entry_id) - 1)]
        else:
            turn = _turn_at(turns, child.first_at)
        if turn is not None:
            turn.subagents.append(child)


def _turn_at(turns: list[Turn], moment: datetime | None) -> Turn | None:
    started = [t for t in turns if t.at and moment and t.at <= moment]
    return started[-1] if started else (turns[0] if turns else None)


def _relay_turns(*, session_id: str) -> list[Turn]:
    """Turns of a session only the relay saw: one per main-agent Messages call.

    The sessions list counts the same (selectors.usage, its turns column);
    subagent calls and others (token counting) join the turn they ran in.
    """
    turns: list[Turn] = []
    for exchange in exchange_list_by_session(session_id=session_id):
        starts = not exchange.agent_id and exchange.path.endswith(MESSAGES_PATH)
        if starts or not turns:
            number = sum(1 for t in turns if t.number) + 1 if starts else 0
            turns.append(Turn(number, at=_utc_text(exchange.started_at)))
        call = TurnCall(request_id=exchange.request_id)
        _call_join(call, exchange)
        turns[-1].calls.append(call)
        turns[-1].add(usage=_exchange_usage(exchange), cost=exchange.cost_usd)
        turns[-1].relayed += 1
    return turns


def exchanges_by_request_id(*, request_ids: list[str]) -> dict[str, ExchangeRow]:
    """Return {request-id: exchange figures} for the ids the relay recorded."""
    wanted = sorted({r for r in request_ids if r})
    found: dict[str, ExchangeRow] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        marks = ", ".join(["%s"] * len(chunk))
        found.update(
            (row.request_id, row)
            for row in _exchange_rows(f"request_id IN ({marks})", chunk)
        )  # ordered by start: the latest exchange wins if an id repeats
    return found


def exchange_list_by_session(
    *, session_id: str, limit: int = 5000
) -> list[ExchangeRow]:
    """Return a session's relayed calls (figures only) in time order."""
    if not session_id:
        return []
    return _exchange_rows("session_id = %s", [session_id], limit=limit)


def _exchange_rows(
    where: str, params: list, *, limit: int = 50_000
) -> list[ExchangeRow]:
    # Raw SQL for the same reason as index.session_turn_lines: thousands of rows.
    columns = ", ".join(
        "'' || started_at" if name == "started_at" else name
        for name in ExchangeRow._fields
    )
    sql = (
        f"SELECT {columns} FROM proxy_exchange WHERE {where}"
        " ORDER BY started_at, id LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        return [ExchangeRow._make(row) for row in cursor.fetchall()]


def _utc_text(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
