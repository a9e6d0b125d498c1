"""A session's turns as the index marks them: prompts, compactions and API calls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

from django.db import connection

from apps.indexing import sql
from apps.indexing.models import Session, TranscriptCall

# The one definition of a turn (sql.TURN_START_SQL), offered with the selectors.
TURN_START_SQL, TURN_PROMPT, TURN_SUMMARY = (
    sql.TURN_START_SQL,
    sql.TURN_PROMPT,
    sql.TURN_SUMMARY,
)


class TurnMark(NamedTuple):
    """A line that starts a turn (a prompt) or marks a compaction (its summary).

    timestamp is the stored text (naive UTC); entry_row_time() parses it, so
    that a long session pays only for the times it uses.
    """

    id: int
    kind: int  # TURN_PROMPT or TURN_SUMMARY
    uuid: str
    timestamp: str | None
    block_id: int
    slot: int


def session_turn_marks(*, session: Session) -> list[TurnMark]:
    """Return a session's prompts and compaction summaries in order, without texts.

    What each turn did is in its calls (TranscriptCall, one row per response).
    A line seen twice (the same file under two config roots) counts once, as
    the session's user_count does (apps.indexing.services.sessions).
    """
    # Raw SQL: ORM rows and datetime converters cost more than the read itself
    # ('' || timestamp has no declared type, so sqlite3 does not parse it).
    with connection.cursor() as cursor:
        cursor.execute(sql.TURN_MARKS, [session.pk])
        rows = cursor.fetchall()
    seen: set[str] = set()
    marks = []
    for row in rows:
        uuid = row[2]
        if uuid and uuid in seen:
            continue
        seen.add(uuid)
        marks.append(TurnMark._make(row))
    return marks


def session_calls(*, session: Session, turns: list[int]) -> list[TranscriptCall]:
    """Return the API calls of some of a session's turns, in order."""
    calls = TranscriptCall.objects.filter(session=session, turn__in=turns[:900])
    return list(calls.order_by("turn", "entry_id"))


def entry_row_time(row: TurnMark) -> datetime | None:
    """Return the aware UTC time of an entry row."""
    if not row.timestamp:
        return None
    moment = datetime.fromisoformat(str(row.timestamp))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
