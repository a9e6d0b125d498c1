"""Full-text search over the index: ranked hits with highlighted snippets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from apps.indexing.fts import (
    FtsFilters,
    fts_query_words,
    fts_search,
    fts_snippets,
    snippet_pattern,
)
from apps.indexing.models import Entry
from apps.indexing.selectors.entries import entry_records
from apps.indexing.selectors.sessions import findable, session_visible


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
    """Return one page of entries matching the query, best rank first."""
    session_pk = None
    if session_id and not findable(session_id):
        return []
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
        query=query, raw=raw, tool=tool, filters=filters, limit=limit, offset=offset
    )
    return _hits_build(ranked, query, raw)


def _hits_build(
    ranked: list[tuple[int, float]], query: str, raw: bool
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
    # Deleted between the two statements: not a hit.
    found = [(entry_id, rank) for entry_id, rank in ranked if entry_id in by_id]
    snippets = fts_snippets(
        texts=[texts.get(entry_id, (b"", ""))[1] for entry_id, _ in found],
        query=query,
        raw=raw,
    )
    hits = []
    for (entry_id, rank), parts in zip(found, snippets, strict=True):
        entry = by_id[entry_id]
        session = entry.session
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
