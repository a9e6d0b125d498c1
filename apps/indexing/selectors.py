"""Reads of the transcript index: search, browse, and links to relayed exchanges."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from django.db import connection
from django.db.models import Count, Max, Q, Sum

from apps.indexing.fts import (
    FtsFilters,
    FtsQueryError,
    fts_query_escape,
    fts_query_words,
    fts_search,
    fts_tool_filter,
)
from apps.indexing.models import Block, Call, Entry, Plan, Project, Session, Todo
from apps.indexing.rawlines import block_record
from apps.proxy.selectors import exchange_ids_by_request_id

__all__ = ["FtsQueryError"]  # re-exported for the API's 422


@dataclass(frozen=True, slots=True)
class SearchHit:
    entry_id: int
    uuid: str
    type: str
    role: str
    timestamp: datetime | None
    tools: str
    rank: float
    snippet: str
    snippet_parts: list[tuple[str, bool]]
    session_id: str | None
    session_title: str
    project_path: str | None
    line_no: int


def entry_search(
    *,
    query: str,
    raw: bool = False,
    project_id: int | None = None,
    session_id: str | None = None,
    role: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    tool: str = "",
    limit: int = 20,
    offset: int = 0,
) -> list[SearchHit]:
    """Return one page of entries matching the query, best bm25 rank first."""
    match = query.strip() if raw else fts_query_escape(query)
    tool_clause = fts_tool_filter(tool) if tool else ""
    if tool and not tool_clause:
        return []
    if match and tool_clause:
        match = f"({match}) AND {tool_clause}"
    match = match or tool_clause
    if not match:
        return []
    session_pk = None
    if session_id:
        session_pk = (
            Session.objects.filter(session_id=session_id)
            .values_list("pk", flat=True)
            .first()
        )
        if session_pk is None:
            return []
    filters = FtsFilters(
        project_id=project_id,
        session_pk=session_pk,
        role=role,
        since=since,
        until=until,
    )
    ranked = fts_search(
        match=match, filters=filters, limit=limit, offset=offset, raw=raw
    )
    return _hits_build(ranked, fts_query_words(query, raw=raw))


def _hits_build(
    ranked: list[tuple[int, float]], words: list[tuple[str, bool]]
) -> list[SearchHit]:
    entries = (
        Entry.objects.filter(id__in=[r[0] for r in ranked])
        .select_related("session__project")
        .only(
            "id",
            "uuid",
            "type",
            "role",
            "timestamp",
            "tools",
            "line_no",
            "block_id",
            "slot",
            "session__session_id",
            "session__title",
            "session__project__path",
        )
    )
    by_id = {entry.id: entry for entry in entries}
    texts = _entries_unpack(list(by_id.values()))
    pattern = snippet_pattern(words)
    hits = []
    for entry_id, rank in ranked:
        entry = by_id.get(entry_id)
        if entry is None:  # deleted between the two statements
            continue
        session = entry.session
        parts = snippet_parts(texts.get(entry_id, (b"", ""))[1], pattern)
        hits.append(
            SearchHit(
                entry_id=entry.id,
                uuid=entry.uuid,
                type=entry.type,
                role=entry.role,
                timestamp=entry.timestamp,
                tools=entry.tools,
                rank=rank,
                snippet="".join(text for text, _ in parts),
                snippet_parts=parts,
                line_no=entry.line_no,
                session_id=session.session_id if session else None,
                session_title=session.title if session else "",
                project_path=session.project.path
                if session and session.project
                else None,
            )
        )
    return hits


SNIPPET_BEFORE = 60
SNIPPET_CHARS = 240


def snippet_pattern(words: list[tuple[str, bool]]) -> re.Pattern[str] | None:
    """Return a regex finding the query's words as the index matches them.

    The index stems words (porter), so a word also matches its longer forms:
    "inspecting" highlights "inspect" and "inspected" by a shared beginning.
    """
    alternatives = []
    for word, _prefix in words:
        stem = word if len(word) <= 4 else word[: max(4, len(word) - 3)]
        alternatives.append(re.escape(stem) + r"\w*")
    if not alternatives:
        return None
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")", re.IGNORECASE)


def snippet_parts(text: str, pattern: re.Pattern[str] | None) -> list[tuple[str, bool]]:
    """Return a window of text around the first match as (text, is_match) parts."""
    first = pattern.search(text) if pattern else None
    start = max(0, first.start() - SNIPPET_BEFORE) if first else 0
    if start:
        space = text.find(" ", start, first.start())
        start = space + 1 if space >= 0 else start
    window = " ".join(text[start : start + SNIPPET_CHARS].split())
    parts: list[tuple[str, bool]] = [("…", False)] if start else []
    position = 0
    for match in pattern.finditer(window) if pattern else ():
        if match.start() > position:
            parts.append((window[position : match.start()], False))
        parts.append((match.group(0), True))
        position = match.end()
    if position < len(window):
        parts.append((window[position:], False))
    if start + SNIPPET_CHARS < len(text):
        parts.append(("…", False))
    return parts


def project_list() -> list[Project]:
    """Return projects with session count, last activity and cost, most recent first."""
    return list(
        Project.objects.annotate(
            session_count=Count("sessions", filter=Q(sessions__is_subagent=False)),
            last_at=Max("sessions__last_at"),
            cost_usd=Sum("sessions__cost_usd"),
        ).order_by("-last_at", "path")
    )


def session_list(
    *,
    project_id: int | None = None,
    title: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    subagents: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> list[Session]:
    """Return sessions, most recently active first, with their project."""
    sessions = Session.objects.select_related("project").order_by("-last_at", "-id")
    if not subagents:
        sessions = sessions.filter(is_subagent=False)
    if project_id is not None:
        sessions = sessions.filter(project_id=project_id)
    if title:
        sessions = sessions.filter(title__icontains=title)
    if since is not None:
        sessions = sessions.filter(last_at__gte=since)
    if until is not None:
        sessions = sessions.filter(first_at__lt=until)
    return list(sessions[offset : offset + limit])


def session_get(*, session_id: str) -> Session | None:
    """Return one session with its project and parent, or None."""
    return (
        Session.objects.select_related("project", "parent")
        .filter(session_id=session_id)
        .first()
    )


# Entries that carry a session for search filters but are not lines of it.
NOT_TRANSCRIPT = ("todo", "task", "plan", "history")


@dataclass(slots=True)
class ThreadEntry:
    entry: Entry
    exchange_id: int | None = None
    subagents: list[SubagentThread] = field(default_factory=list)
    text: str = ""
    line: bytes = b""


@dataclass(slots=True)
class SubagentThread:
    session: Session
    entries: list[ThreadEntry]


def session_thread(
    *, session: Session, limit: int = 200, offset: int = 0
) -> list[ThreadEntry]:
    """Return a page of a session's entries in file order, subagents attached.

    A subagent's entries follow the parent entry that reported or started it;
    each entry carries the id of the relayed exchange with its requestId.
    Five queries whatever the page holds.
    """
    page = list(
        Entry.objects.filter(session=session)
        .exclude(type__in=NOT_TRANSCRIPT)
        .order_by("id")[offset : offset + limit]
    )
    uuids = {e.uuid for e in page if e.uuid}
    children = [
        s
        for s in Session.objects.filter(parent=session, spawn_uuid__in=uuids).order_by(
            "first_at", "id"
        )
    ]
    child_entries: dict[int, list[Entry]] = {s.pk: [] for s in children}
    for entry in Entry.objects.filter(session__in=children).order_by("id"):
        child_entries[entry.session_id].append(entry)
    exchanges = exchange_ids_by_request_id(
        request_ids=[e.request_id for e in page]
        + [e.request_id for rows in child_entries.values() for e in rows]
    )
    children_rows = [e for rows in child_entries.values() for e in rows]
    unpacked = _entries_unpack(page + children_rows)

    def item(entry: Entry, subagents: list[SubagentThread]) -> ThreadEntry:
        line, text = unpacked.get(entry.id, (b"", ""))
        exchange = exchanges.get(entry.request_id)
        return ThreadEntry(entry, exchange, subagents, text, line)

    spawned: dict[str, list[SubagentThread]] = {}
    for child in children:
        rows = [item(e, []) for e in child_entries[child.pk]]
        spawned.setdefault(child.spawn_uuid, []).append(SubagentThread(child, rows))
    return [item(e, spawned.get(e.uuid, []) if e.uuid else []) for e in page]


def _entries_unpack(entries: list[Entry]) -> dict[int, tuple[bytes, str]]:
    """Return {entry id: (original line, searchable text)}, one query for all."""
    wanted = {e.block_id for e in entries}
    blocks = dict(Block.objects.filter(id__in=wanted).values_list("id", "data"))
    unpacked = {}
    for entry in entries:
        if entry.block_id in blocks:
            data = blocks[entry.block_id]
            line, text = block_record(entry.block_id, data, entry.slot)
            unpacked[entry.id] = (line, text.decode("utf-8", errors="replace"))
    return unpacked


def session_exchange_links(*, session_id: str) -> list[tuple[int, str, str, int]]:
    """Return (entry id, uuid, requestId, exchange id) of a session's relayed turns."""
    rows = list(
        Entry.objects.filter(session__session_id=session_id)
        .exclude(request_id="")
        .order_by("id")
        .values_list("id", "uuid", "request_id")
    )
    exchanges = exchange_ids_by_request_id(request_ids=[r[2] for r in rows])
    return [
        (pk, uuid, req, exchanges[req]) for pk, uuid, req in rows if req in exchanges
    ]


def entry_by_request_id(*, request_id: str) -> Entry | None:
    """Return the first transcript entry written for a relayed request-id, or None."""
    if not request_id:
        return None
    return (
        Entry.objects.select_related("session__project")
        .filter(request_id=request_id)
        .exclude(request_id="")
        .order_by("id")
        .first()
    )


def entry_raw(*, entry: Entry) -> bytes:
    """Return the original line of an entry, byte for byte."""
    return _entries_unpack([entry]).get(entry.id, (b"", ""))[0]


def entry_text(*, entry: Entry) -> str:
    """Return the searchable text of an entry."""
    return _entries_unpack([entry]).get(entry.id, (b"", ""))[1]


def line_record(line: bytes) -> dict | list | str:
    """Return an original line decoded as JSON (or as text if it is not JSON)."""
    text = line.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def todo_list(
    *, session_id: str = "", status: str = "", limit: int = 200, offset: int = 0
) -> list[Todo]:
    """Return todo and task items, grouped by file, in list order."""
    todos = Todo.objects.order_by("source_id", "position")
    if session_id:
        todos = todos.filter(session_key=session_id)
    if status:
        todos = todos.filter(status=status)
    return list(todos[offset : offset + limit])


def todo_status_counts(*, session_id: str = "") -> dict[str, int]:
    """Return {status: count} over todo items."""
    todos = Todo.objects.all()
    if session_id:
        todos = todos.filter(session_key=session_id)
    return dict(todos.values_list("status").annotate(n=Count("id")).order_by())


def plan_list(*, limit: int = 50, offset: int = 0) -> list[Plan]:
    """Return plans, most recently modified first."""
    return list(Plan.objects.order_by("-modified_at", "slug")[offset : offset + limit])


# --- reads for the dashboard's session, thread, search and todo pages ----------


# A turn starts at each prompt typed: a user line with prose that is neither
# Claude Code's scaffolding (isMeta) nor the summary it writes after compacting.
# The one definition of a turn: the sessions list counts it (Session.user_count,
# apps.indexing.sessions) and the session page starts its turns with it.
TURN_START_SQL = (
    "type = 'user' AND role = 'user' AND NOT is_meta AND NOT is_compact_summary"
)
TURN_PROMPT, TURN_SUMMARY = 0, 1


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


_TURN_MARKS_SQL = f"""
SELECT id, CASE WHEN is_compact_summary THEN {TURN_SUMMARY} ELSE {TURN_PROMPT} END,
       uuid, '' || timestamp, block_id, slot
FROM indexing_entry
WHERE session_id = %s AND (is_compact_summary OR ({TURN_START_SQL}))
ORDER BY id
"""


def session_turn_marks(*, session: Session) -> list[TurnMark]:
    """Return a session's prompts and compaction summaries in order, without texts.

    What each turn did is in its calls (models.Call, one row per API response).
    """
    # Raw SQL: ORM rows and datetime converters cost more than the read itself
    # ('' || timestamp has no declared type, so sqlite3 does not parse it).
    with connection.cursor() as cursor:
        cursor.execute(_TURN_MARKS_SQL, [session.pk])
        return [TurnMark._make(row) for row in cursor.fetchall()]


def session_calls(*, session: Session, turns: list[int]) -> list[Call]:
    """Return the API calls of some of a session's turns, in order."""
    calls = Call.objects.filter(session=session, turn__in=turns[:900])
    return list(calls.order_by("turn", "entry_id"))


def entry_ids_by_uuid(*, session: Session, uuids: list[str]) -> dict[str, int]:
    """Return {uuid: entry id} for a session's entries with these uuids."""
    wanted = [u for u in uuids if u]
    if not wanted:
        return {}
    rows = Entry.objects.filter(session=session, uuid__in=wanted[:900])
    return dict(rows.values_list("uuid", "id"))


def entry_row_time(row: TurnMark) -> datetime | None:
    """Return the aware UTC time of an entry row."""
    if not row.timestamp:
        return None
    moment = datetime.fromisoformat(str(row.timestamp))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def entry_records(
    *, entries: list[Entry] | list[TurnMark]
) -> dict[int, tuple[bytes, str]]:
    """Return {entry id: (original line, searchable text)}, one query for all."""
    return _entries_unpack(entries)


def session_subagent_list(*, session: Session) -> list[Session]:
    """Return the subagent sessions a session spawned, in start order."""
    return list(Session.objects.filter(parent=session).order_by("first_at", "id"))


def sessions_by_id(*, session_ids: list[str]) -> dict[str, Session]:
    """Return {session id: Session with project} for the ids that are indexed."""
    wanted = [s for s in dict.fromkeys(session_ids) if s]
    found: dict[str, Session] = {}
    for start in range(0, len(wanted), 900):
        rows = Session.objects.select_related("project").filter(
            session_id__in=wanted[start : start + 900]
        )
        found.update({s.session_id: s for s in rows})
    return found


def session_subagent_counts(*, session_pks: list[int]) -> dict[int, int]:
    """Return {session pk: number of subagent sessions it spawned}."""
    rows = (
        Session.objects.filter(parent_id__in=session_pks)
        .values_list("parent_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return dict(rows)


def session_models(*, session_pks: list[int]) -> dict[int, list[str]]:
    """Return {session pk: sorted models its assistant entries name}."""
    rows = (
        Entry.objects.filter(session_id__in=session_pks, type="assistant")
        .exclude(model="")
        .exclude(model="<synthetic>")
        .values_list("session_id", "model")
        .distinct()
        .order_by()
    )
    models: dict[int, list[str]] = {}
    for pk, model in rows:
        models.setdefault(pk, []).append(model)
    return {pk: sorted(names) for pk, names in models.items()}


def thread_count(*, session: Session) -> int:
    """Return how many entries a session's thread holds (for paging)."""
    return (
        Entry.objects.filter(session=session).exclude(type__in=NOT_TRANSCRIPT).count()
    )


def thread_position(*, session: Session, entry_id: int) -> int | None:
    """Return the 0-based position of an entry in its session's thread, or None."""
    thread = Entry.objects.filter(session=session).exclude(type__in=NOT_TRANSCRIPT)
    if not thread.filter(id=entry_id).exists():
        return None
    return thread.filter(id__lt=entry_id).count()


def entry_id_by_uuid(*, session: Session, uuid: str) -> int | None:
    """Return the id of a session's entry with this uuid, or None."""
    if not uuid:
        return None
    return (
        Entry.objects.filter(session=session, uuid=uuid)
        .values_list("id", flat=True)
        .first()
    )


def project_stats() -> list[Project]:
    """Return projects with session count, last activity, tokens and cost."""
    tokens = (
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
    )
    main = Q(sessions__is_subagent=False)
    sums = {f"{name}_sum": Sum(f"sessions__{name}") for name in tokens}
    return list(
        Project.objects.annotate(
            session_count=Count("sessions", filter=main),
            last_at=Max("sessions__last_at"),
            cost_usd=Sum("sessions__cost_usd"),
            **sums,
        ).order_by("-last_at", "path")
    )


def plan_by_slug(*, slug: str) -> Plan | None:
    """Return the plan file written under a session's slug, or None."""
    if not slug:
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


def highlight_parts(
    *, text: str, query: str, raw: bool = False
) -> list[tuple[str, bool]]:
    """Split text into (text, is_match) parts for the query's words (no window)."""
    pattern = snippet_pattern(fts_query_words(query, raw=raw)) if query else None
    if pattern is None:
        return [(text, False)] if text else []
    parts: list[tuple[str, bool]] = []
    position = 0
    for match in pattern.finditer(text):
        if match.start() > position:
            parts.append((text[position : match.start()], False))
        parts.append((match.group(0), True))
        position = match.end()
    if position < len(text):
        parts.append((text[position:], False))
    return parts
