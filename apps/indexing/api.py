"""Transcript search and browse API (ninja Router mounted under /api/)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Query, Router
from ninja.errors import HttpError

from apps.dashboard.auth import request_viewer
from apps.dashboard.schemas import answers
from apps.indexing import selectors
from apps.indexing.models import Entry, Session
from apps.indexing.schemas import (
    PlanFilter,
    PlanOut,
    SearchFilter,
    SearchOut,
    SessionFilter,
    ThreadFilter,
    TodoFilter,
    TodosOut,
    TranscriptOut,
    TranscriptSessionOut,
)
from apps.proxy.selectors import call_session_ids

router = Router(tags=["transcripts"])


@router.get("/search", response=answers(SearchOut))
def search(request: HttpRequest, filters: Query[SearchFilter]) -> dict:
    """Search entries: all words, "phrases", word* prefixes; mode=raw for the
    engine's syntax (FTS5's, or PostgreSQL's websearch_to_tsquery's)."""
    try:
        hits = selectors.entry_search(
            visible=_visible(request),
            query=filters.q,
            raw=filters.mode == "raw",
            project_id=filters.project,
            session_id=filters.session,
            role=filters.role,
            since=_utc(filters.since),
            until=_utc(filters.until),
            tool=filters.tool,
            limit=filters.limit + 1,
            offset=filters.offset,
        )
    except selectors.FtsQueryError as exc:
        raise HttpError(422, f"FTS5 query error: {exc}") from None
    results = [_hit(hit) for hit in hits[: filters.limit]]
    return {
        "query": filters.q,
        "mode": filters.mode,
        "limit": filters.limit,
        "offset": filters.offset,
        "has_more": len(hits) > filters.limit,
        "results": results,
    }


def _hit(hit: selectors.SearchHit) -> dict:
    return {
        "entry_id": hit.entry_id,
        "uuid": hit.uuid,
        "type": hit.type,
        "role": hit.role,
        "timestamp": hit.timestamp,
        "tools": hit.tools.split(),
        "rank": hit.rank,
        "snippet": hit.snippet,
        "line_no": hit.line_no,
        "snippet_parts": [{"text": t, "match": m} for t, m in hit.snippet_parts],
        "session_id": hit.session_id,
        "session_title": hit.session_title,
        "project_path": hit.project_path,
    }


@router.get("/transcripts", response=answers(list[TranscriptSessionOut]))
def transcripts(request: HttpRequest, filters: Query[SessionFilter]) -> list[dict]:
    """List sessions, most recently active first."""
    sessions = selectors.session_list(
        visible=_visible(request),
        project_id=filters.project,
        title=filters.title,
        since=_utc(filters.since),
        until=_utc(filters.until),
        subagents=filters.subagents,
        limit=filters.limit,
        offset=filters.offset,
    )
    return [_session(s) for s in sessions]


@router.get(
    "/transcripts/{session_id}", response=answers(TranscriptOut, not_found=True)
)
def transcript(
    request: HttpRequest, session_id: str, filters: Query[ThreadFilter]
) -> dict:
    """Return a session and a page of its entries, subagents attached to their turn."""
    session = selectors.session_get(session_id=session_id, visible=_visible(request))
    if session is None:
        raise HttpError(404, "No such session.")
    thread = selectors.session_thread(
        session=session, limit=filters.limit, offset=filters.offset
    )
    return {
        "session": _session(session),
        "limit": filters.limit,
        "offset": filters.offset,
        "entries": [_entry(item, filters.raw) for item in thread],
    }


@router.get("/todos", response=answers(TodosOut))
def todos(request: HttpRequest, filters: Query[TodoFilter]) -> dict:
    """List todo and task items with counts by status."""
    visible = _visible(request)
    items = selectors.todo_list(
        visible=visible,
        session_id=filters.session,
        status=filters.status,
        limit=filters.limit,
        offset=filters.offset,
    )
    return {
        "counts": selectors.todo_status_counts(
            visible=visible, session_id=filters.session
        ),
        "todos": [
            {
                "kind": t.kind,
                "session_id": t.session_key,
                "agent_id": t.agent_id,
                "position": t.position,
                "content": t.content,
                "status": t.status,
                "active_form": t.active_form,
            }
            for t in items
        ],
    }


@router.get("/plans", response=answers(list[PlanOut]))
def plans(request: HttpRequest, filters: Query[PlanFilter]) -> list:
    """List plan-mode plans, most recently modified first."""
    return selectors.plan_list(
        visible=_visible(request), limit=filters.limit, offset=filters.offset
    )


def _visible(request: HttpRequest) -> QuerySet | None:
    """Return the ledger's session ids the request's user sees (None: all)."""
    return call_session_ids(viewer=request_viewer(request))


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _session(session: Session) -> dict:
    project = session.project
    return {
        **{f: getattr(session, f) for f in _SESSION_FIELDS},
        "project_id": project.pk if project else None,
        "project_path": project.path if project else None,
        "parent_session_id": session.parent_key or None,
    }


_SESSION_FIELDS = (
    "session_id",
    "title",
    "title_source",
    "is_subagent",
    "agent_id",
    "first_at",
    "last_at",
    "cli_version",
    "git_branch",
    "entry_count",
    "user_count",
    "assistant_count",
    "tool_call_count",
)


def _entry(item: selectors.ThreadEntry, raw: bool) -> dict:
    entry: Entry = item.entry
    return {
        **{f: getattr(entry, f) for f in _ENTRY_FIELDS},
        "tools": entry.tools.split(),
        "usage": {f: getattr(entry, f) for f in _USAGE_FIELDS},
        "exchange_id": item.exchange_id,
        "text": item.text,
        "record": selectors.line_record(item.line) if raw else None,
        "subagents": [
            {
                "session_id": sub.session.session_id,
                "title": sub.session.title,
                "entries": [_entry(child, raw) for child in sub.entries],
            }
            for sub in item.subagents
        ],
    }


_ENTRY_FIELDS = (
    "id",
    "line_no",
    "uuid",
    "parent_uuid",
    "type",
    "role",
    "timestamp",
    "is_sidechain",
    "is_meta",
    "agent_id",
    "model",
    "request_id",
    "message_id",
)
_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
)
