"""One session turn by turn, each call's figures the ledger's (the relay's when
it saw the call, else the transcript's).

The turns' figures come from one statement (sql.TURN_SUMS) that sums the
index's calls joined to their ledger rows, so the session page of a long session
reads one row per turn; the calls themselves are read only for the turns shown.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import connection

from apps.dashboard import sql
from apps.dashboard.selectors.sessions.calls import (
    CallRow,
    call_list_by_session,
    calls_by_key,
)
from apps.dashboard.selectors.sessions.figures import (
    Figures,
    SessionFigures,
    billing_session_id,
)
from apps.indexing import selectors as index
from apps.indexing.models import Session, TranscriptCall
from apps.indexing.selectors import TurnMark
from apps.proxy.selectors import Viewer, call_session_ids, viewer_sql

TURNS_PER_PAGE = 50


@dataclass(slots=True)
class TurnCall:
    """One API call of a turn, with the ledger's figures (counted: the ledger
    counts it in this session, not in another whose file also records it)."""

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
    counted: bool = True

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
    # Each subagent with its own figures (parts of the session's): turns shown.
    subagent_rows: list[tuple[Session, Figures]] = field(default_factory=list)

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


def session_turns(
    *, session_id: str, viewer: Viewer
) -> tuple[Session | None, list[Turn]]:
    """Return a session (None if only relayed) and its turns in order, summed.

    From the transcript when indexed (a turn starts at each prompt, as
    index.TURN_START_SQL says), each call's figures the ledger's; else from the
    ledger's calls of the session alone. turn_details_fill() completes
    the turns a page shows.
    """
    visible = call_session_ids(viewer=viewer)
    session = index.session_get(session_id=session_id, visible=visible)
    if session is None:
        return None, _relay_turns(session_id=session_id, viewer=viewer)
    turns = _turns_build(index.session_turn_marks(session=session))
    _sums_apply(turns, _turn_sums(session, viewer))
    _subagents_attach(session, turns, index.session_subagent_list(session=session))
    return session, turns


def turn_count(turns: list[Turn]) -> int:
    """Return how many turns a session had: its prompts (turn 0 holds what came
    before the first one, it is not a turn)."""
    return sum(1 for turn in turns if turn.number)


def turn_details_fill(
    *,
    session: Session | None,
    turns: list[Turn],
    figures: SessionFigures,
    viewer: Viewer,
) -> None:
    """Read the calls, tools and prompt texts of the turns a page shows (the
    calls a viewer sees), and give their subagents their figures
    (session_page_figures()' parts)."""
    if session is not None:
        _calls_fill(session, turns, viewer)
    for turn in turns:
        turn.subagent_rows = [
            (sub, figures.subagents.get(sub.agent_id, Figures()))
            for sub in turn.subagents
        ]
    rows = [t.prompt_entry for t in turns if t.number and t.prompt_entry]
    texts = index.entry_records(entries=rows)
    for turn in turns:
        if turn.prompt_entry is not None and turn.prompt_entry.id in texts:
            turn.prompt = texts[turn.prompt_entry.id][1]


def _calls_fill(session: Session, turns: list[Turn], viewer: Viewer) -> None:
    by_number = {turn.number: turn for turn in turns}
    calls = index.session_calls(session=session, turns=list(by_number))
    ledger = calls_by_key(
        keys=[call_key(c) for c in calls], session_id=billing_session_id(session),
        viewer=viewer,
    )  # fmt: skip
    for call in calls:
        if not viewer.sees_all and call_key(call) not in ledger:
            continue  # another person's call, or unclaimed: staff's to see
        turn = by_number[call.turn]
        if not turn.calls and not turn.uuid:  # turn 0 opened by a reply
            turn.uuid, turn.entry_id, turn.at = call.uuid, call.entry_id, call.timestamp
        turn.tools.update(call.tools.split())
        turn.calls.append(_call_build(call, ledger.get(call_key(call))))


def call_key(call: TranscriptCall) -> str:
    """Return a transcript call's ledger key (apps.proxy.services.calls' rule)."""
    if call.request_id:
        return call.request_id
    return f"msg:{call.message_id}" if call.message_id else f"uuid:{call.uuid}"


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


def _turn_sums(session: Session, viewer: Viewer) -> list[tuple]:
    whose, credentials = viewer_sql(viewer=viewer, column="a.credential")
    params = [billing_session_id(session), *credentials, session.pk]
    with connection.cursor() as cursor:
        cursor.execute(sql.on(connection.vendor).TURN_SUMS.format(where=whose), params)
        return cursor.fetchall()


def _ledger_usage(row: CallRow) -> tuple[int, int, int, int]:
    cache_write = row.cache_write_5m_tokens + row.cache_write_1h_tokens
    return (row.input_tokens, row.output_tokens, row.cache_read_tokens, cache_write)


def _call_build(call: TranscriptCall, row: CallRow | None) -> TurnCall:
    """Return a shown call with the ledger's figures; a call the ledger counts
    in another session shows the transcript's, marked not counted here."""
    shown = TurnCall(
        request_id=call.request_id,
        model=call.model,
        input=call.input_tokens,
        output=call.output_tokens,
        cache_read=call.cache_read_tokens,
        cache_write=call.cache_write_5m_tokens + call.cache_write_1h_tokens,
        cost_usd=call.cost_usd,
        counted=row is not None,
    )
    if row is not None:
        _call_join(shown, row)
    return shown


def _call_join(call: TurnCall, row: CallRow) -> None:
    """Give a shown call the ledger's figures (the relay's when it saw it)."""
    call.exchange_id = row.exchange_id
    call.model = row.model or call.model
    call.ttfb_ms, call.duration_ms = row.ttfb_ms, row.duration_ms
    call.input, call.output, call.cache_read, call.cache_write = _ledger_usage(row)
    call.cost_usd = row.cost_usd


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
        turn: Turn | None
        if entry_id is not None and turns:
            turn = turns[max(0, bisect_right(starts, entry_id) - 1)]
        else:
            turn = _turn_at(turns, child.first_at)
        if turn is not None:
            turn.subagents.append(child)


def _turn_at(turns: list[Turn], moment: datetime | None) -> Turn | None:
    started = [t for t in turns if t.at and moment and t.at <= moment]
    return started[-1] if started else (turns[0] if turns else None)


def _relay_turns(*, session_id: str, viewer: Viewer) -> list[Turn]:
    """Turns of a session no transcript records: one per main-agent call.

    Subagent calls and token counts join the turn they ran in.
    """
    turns: list[Turn] = []
    for row in call_list_by_session(session_id=session_id, viewer=viewer):
        if row.kind != "messages":  # token counts are listed apart, not calls
            continue
        starts = not row.agent_id and row.kind == "messages"
        if starts or not turns:
            number = sum(1 for t in turns if t.number) + 1 if starts else 0
            turns.append(Turn(number, at=_utc_text(row.at)))
        call = TurnCall(request_id=row.key)
        _call_join(call, row)
        turns[-1].calls.append(call)
        turns[-1].add(usage=_ledger_usage(row), cost=row.cost_usd)
        turns[-1].relayed += 1 if row.exchange_id else 0
    return turns


def _utc_text(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
