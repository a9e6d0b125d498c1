"""Full-text search over the index: ranked hits with highlighted snippets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from apps.indexing.fts import (
    FtsFilters,
    fts_query_escape,
    fts_query_words,
    fts_search,
    fts_tool_filter,
)
from apps.indexing.models import Entry
from apps.indexing.selectors.entries import entry_records
from apps.indexing.selectors.sessions import session_visible


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
    visible: QuerySet | None,
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
    # A reader who does not see every session searches only theirs (few).
    mine = session_visible(visible=visible)
    session_pks = None if visible is None else tuple(mine.values_list("pk", flat=True))
    if session_id:
        session_pk = (
            mine.filter(session_id=session_id).values_list("pk", flat=True).first()
        )
        if session_pk is None:
            return []
    filters = FtsFilters(
        project_id=project_id,
        session_pk=session_pk,
        session_pks=session_pks,
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
    texts = entry_records(entries=list(by_id.values()))
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
    if first and start:
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
