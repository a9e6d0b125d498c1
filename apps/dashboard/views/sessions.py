"""Pages over Claude Code sessions: sessions, one session, its thread, projects,
search, and todos and plans. One small view per page; all state in GET params.

Transcript lines hold API-shaped messages, so the thread renders them with the
request inspector's transforms (apps.dashboard.inspector) and partials.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db import DatabaseError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict

from apps.dashboard import inspector, page_state, selectors
from apps.dashboard.auth import request_viewer
from apps.dashboard.markdown import markdown_html
from apps.dashboard.page_state import render_page
from apps.dashboard.selectors import sessions as session_selectors
from apps.dashboard.selectors.ledger import ALL_TIME, Scope
from apps.indexing import selectors as index
from apps.proxy.bodies import json_pretty
from apps.proxy.selectors import call_session_ids

SESSIONS_PER_PAGE = 50
THREAD_PER_PAGE = 150
HITS_PER_PAGE = 20
QUERY_MAX = 2000
MAX_PAGE = 500  # 10,000 hits deep; further pages would only cost time
ROLES = (("user", "User"), ("assistant", "Assistant"), ("tool", "Tool result"))
OTHER_JSON_MAX = 4000

log = logging.getLogger("apps.dashboard")


@login_required
def sessions(request: HttpRequest) -> HttpResponse:
    """List sessions seen by the relay or in transcripts, filtered and sorted."""
    zone = page_state.zone_from_request(request)
    span = page_state.range_from_query(
        _default_range(request.GET), zone=zone, now=page_state.now_utc()
    )
    page = page_state.int_param(request.GET, "page", low=1) or 1
    project = page_state.int_param(request.GET, "project", low=1)
    model = request.GET.get("model", "")[:200]
    sort = "cost" if request.GET.get("sort") == "cost" else "last"
    viewer = request_viewer(request)
    visible = call_session_ids(viewer=viewer)
    rows, total = session_selectors.session_rows(
        viewer=viewer, start=span.start, end=span.end, project_id=project,
        model=model, sort=sort, limit=SESSIONS_PER_PAGE,
        offset=(page - 1) * SESSIONS_PER_PAGE,
    )  # fmt: skip
    context = {
        "span": span, "rows": rows, "total": total, "page": page,
        "has_next": page * SESSIONS_PER_PAGE < total, "project": project,
        "model": model, "sort": sort,
        "projects": index.project_list(visible=visible),
        "problems": span.problems,
    }  # fmt: skip
    return render_page(
        request, "dashboard/transcripts/sessions.html", context, zone=zone
    )


def _default_range(query: QueryDict) -> QueryDict:
    """Sessions and search default to 30 days: transcripts outlive a day."""
    if "range" in query:
        return query
    widened = query.copy()
    widened["range"] = "30d"
    return widened


@login_required
def session(request: HttpRequest, session_id: str) -> HttpResponse:
    """Show a session turn by turn with the wire's figures beside each turn."""
    viewer = request_viewer(request)
    found, turns = session_selectors.session_turns(session_id=session_id, viewer=viewer)
    if found is None and not turns:
        raise Http404("No such session.")
    per = session_selectors.TURNS_PER_PAGE
    pages = max(1, -(-len(turns) // per))
    page = min(page_state.int_param(request.GET, "page", low=1) or 1, pages)
    shown = turns[(page - 1) * per : page * per]
    figures = session_selectors.session_page_figures_of(
        session_id=session_id, session=found, viewer=viewer
    )
    session_selectors.turn_details_fill(
        session=found, turns=shown, figures=figures, viewer=viewer
    )
    context = {
        "session_id": session_id, "session": found, "turns": shown,
        "turn_count": session_selectors.turn_count(turns), "page": page, "pages": pages,
        "figures": figures, "charts": _turn_charts(turns),
        "parent": found.parent if found is not None else None,
    }  # fmt: skip
    zone = page_state.zone_from_request(request)
    context["requests_query"] = _requests_query(session_id, found, turns, zone=zone)
    return render_page(
        request, "dashboard/transcripts/session.html", context, zone=zone
    )


def _requests_query(
    session_id: str, found: Any, turns: list, *, zone: tzinfo
) -> QueryDict:
    """Return the requests list's query for a session, over the days it ran."""
    moments = [t.at for t in turns if t.at]
    if found is not None:
        moments += [m for m in (found.first_at, found.last_at) if m]
    query = QueryDict(mutable=True)
    query.update({"range": "30d", "session": session_id})
    if moments:  # the list's own ranges end now: an old session falls outside
        query["range"] = "custom"
        query["from"] = min(moments).astimezone(zone).date().isoformat()
        query["to"] = max(moments).astimezone(zone).date().isoformat()
    return query


def _turn_charts(turns: list[session_selectors.Turn]) -> dict:
    """Chart context size and cache hit rate per turn (line_chart's shape)."""
    labels = [str(t.number) for t in turns]
    hits = [None if t.cache_hit is None else t.cache_hit * 100 for t in turns]
    return {
        "context": {
            "labels": labels,
            "series": [{"name": "context tokens", "values":
                        [t.context_tokens or None for t in turns]}],
        },
        "cache": {
            "labels": labels,
            "series": [{"name": "cache hit %", "values": hits, "color": 2}],
        },
    }  # fmt: skip


@login_required
def thread(request: HttpRequest, session_id: str) -> HttpResponse:
    """Render a session's transcript, a page of entries at a time."""
    visible = call_session_ids(viewer=request_viewer(request))
    found = index.session_get(session_id=session_id, visible=visible)
    if found is None:
        raise Http404("No transcript for this session.")
    total = index.thread_count(session=found)
    pages = max(1, -(-total // THREAD_PER_PAGE))
    target = request.GET.get("entry", "")[:64]
    page = page_state.int_param(request.GET, "page", low=1)
    if page is None and target:
        page = _page_of(found, target)
    page = min(page or 1, pages)
    items = index.session_thread(
        session=found, limit=THREAD_PER_PAGE, offset=(page - 1) * THREAD_PER_PAGE
    )
    # hl is the search that led here; advanced=1 when it was in the raw syntax
    # of the database's engine (FTS5's or PostgreSQL's websearch).
    highlight = request.GET.get("hl", "")[:QUERY_MAX]
    raw = page_state.flag_param(request.GET, "advanced")
    context = {
        "session": found, "entries": _thread_views(items, target, highlight, raw),
        "page": page, "pages": pages, "total": total, "target": target,
        "hl": highlight, "parent": found.parent,
    }  # fmt: skip
    zone = page_state.zone_from_request(request)
    return render_page(request, "dashboard/transcripts/thread.html", context, zone=zone)


def _page_of(found: Any, target: str) -> int | None:
    """Return the thread page holding an entry named by uuid or e<id>."""
    entry_id: int | None
    if target.startswith("e") and target[1:].isdigit():
        entry_id = int(target[1:])
    else:
        entry_id = index.entry_id_by_uuid(session=found, uuid=target)
    if entry_id is None:
        return None
    position = index.thread_position(session=found, entry_id=entry_id)
    return None if position is None else position // THREAD_PER_PAGE + 1


def _thread_views(items: list, target: str, highlight: str, raw: bool) -> list[dict]:
    records = {id(i): index.line_record(i.line) for i in _walk(items)}
    messages = [r.get("message") for r in records.values() if isinstance(r, dict)]
    names = inspector.tool_names_by_id([m for m in messages if isinstance(m, dict)])
    _result_names_fill(_walk(items), records, names)

    def view(item: Any) -> dict:
        key = item.entry.uuid or f"e{item.entry.id}"
        hit = highlight if key == target else ""
        shaped = _entry_view(
            item, records[id(item)], names=names, highlight=hit, raw=raw
        )
        shaped["subagents"] = [
            {"session": s.session, "entries": [view(e) for e in s.entries]}
            for s in item.subagents
        ]
        return shaped

    return [view(item) for item in items]


def _walk(items: list) -> list:
    return [x for i in items for x in [i, *[e for s in i.subagents for e in s.entries]]]


def _result_names_fill(items: list, records: dict, names: dict[str, str]) -> None:
    """Name results whose call is on an earlier page, as the index named them."""
    for item in items:
        tools, record = item.entry.tools.split(), records[id(item)]
        message = record.get("message") if isinstance(record, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if len(tools) != 1 or not isinstance(content, list):
            continue  # the index names a line's tools, not which block used which
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                names.setdefault(str(block.get("tool_use_id", "")), tools[0])


def _entry_view(
    item: Any, record: Any, *, names: dict, highlight: str, raw: bool
) -> dict:
    """Shape one transcript line: a message, a compaction mark, a summary, or other."""
    entry = item.entry
    record = record if isinstance(record, dict) else {}
    base = {
        "key": entry.uuid or f"e{entry.id}", "entry": entry,
        "exchange_id": item.exchange_id, "kind": "other", "hit": bool(highlight),
        "hit_parts": _hit_window(item.text, highlight, raw) if highlight else [],
    }  # fmt: skip
    message = record.get("message")
    if entry.type in ("user", "assistant") and isinstance(message, dict):
        shaped = inspector.message_view(message, index=entry.line_no, names=names)
        if highlight:
            _blocks_highlight(shaped["blocks"], message, highlight, raw)
        compact = record.get("isCompactSummary") is True
        return {**base, "kind": "message", "message": shaped, "compact": compact}
    if entry.type == "system" and record.get("subtype") == "compact_boundary":
        meta = record.get("compactMetadata")
        return {**base, "kind": "boundary", "meta": meta if isinstance(meta, dict)
                else {}}  # fmt: skip
    if entry.type == "summary":
        return {**base, "kind": "summary", "text": str(record.get("summary", ""))}
    shown = json_pretty(record)
    return {**base, "subtype": str(record.get("subtype", "")),
            "json": shown[:OTHER_JSON_MAX],
            "cut": len(shown) > OTHER_JSON_MAX}  # fmt: skip


def _hit_window(text: str, query: str, raw: bool) -> list[tuple[str, bool]]:
    pattern = index.snippet_pattern(index.fts_query_words(query, raw=raw))
    return index.snippet_parts(text, pattern)


def _blocks_highlight(blocks: list[dict], message: dict, query: str, raw: bool) -> None:
    """Give the text blocks of the hit entry highlighted parts (escaped in template)."""
    content = message.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    content = (
        [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    )
    for shaped, block in zip(blocks, content, strict=False):
        if shaped["kind"] == "text":
            text = str(block.get("text", ""))
            shaped["hl"] = index.highlight_parts(text=text, query=query, raw=raw)


@login_required
def projects(request: HttpRequest) -> HttpResponse:
    """List projects with session counts, last activity, tokens and cost."""
    viewer = request_viewer(request)
    figures = selectors.usage_by_project(scope=Scope(*ALL_TIME, viewer=viewer))
    rows = [
        {"project": project, "figures": figures.get(project.pk)}
        for project in index.project_list(visible=call_session_ids(viewer=viewer))
    ]
    context = {"rows": rows, "unplaced": figures.get(None)}
    zone = page_state.zone_from_request(request)
    return render_page(
        request, "dashboard/transcripts/projects.html", context, zone=zone
    )


@login_required
def search(request: HttpRequest) -> HttpResponse:
    """Search transcripts: one box, filters, ranked hits linking into threads."""
    zone = page_state.zone_from_request(request)
    form, problems = _search_form(request.GET, zone=zone)
    visible = call_session_ids(viewer=request_viewer(request))
    hits: list[index.SearchHit] = []
    error = ""
    if form["q"] or form["tool"]:
        hits, error = _search_run(form, visible=visible)
    context = {
        "form": form, "hits": [_hit_row(h) for h in hits[:HITS_PER_PAGE]],
        "first_rank": (form["page"] - 1) * HITS_PER_PAGE + 1, "error": error,
        "has_next": len(hits) > HITS_PER_PAGE, "roles": ROLES,
        "projects": index.project_list(visible=visible), "problems": problems,
        "syntax": index.fts_syntax(), "searched": bool(form["q"] or form["tool"]),
    }  # fmt: skip
    return render_page(request, "dashboard/transcripts/search.html", context, zone=zone)


def _hit_row(hit: index.SearchHit) -> dict:
    """Say where a hit links: its thread entry, the todos page, or nowhere."""
    in_thread = bool(hit.session_id) and hit.type not in index.NOT_TRANSCRIPT
    todo = hit.type in ("todo", "task", "plan")
    return {"hit": hit, "key": hit.uuid or f"e{hit.entry_id}",
            "in_thread": in_thread, "todo": todo}  # fmt: skip


def _search_form(query: QueryDict, *, zone: tzinfo) -> tuple[dict, list[str]]:
    """Read the search box and filters; bad values are dropped and reported."""
    problems = []
    text = query.get("q", "").strip()  # spaces alone are an empty box
    if len(text) > QUERY_MAX:
        problems.append(f"The query was cut to its first {QUERY_MAX:,} characters.")
    since, until = _day(query.get("from", "")), _day(query.get("to", ""))
    for name in ("from", "to"):
        if query.get(name) and _day(query.get(name, "")) is None:
            problems.append(
                f"'{name}' must be a date like 2026-11-20, from 1970 to 2998."
            )
    role = query.get("role", "")
    if role and role not in dict(ROLES):
        problems.append(f"Unknown role {role[:40]!r}: any role is searched.")
    return {
        "q": text[:QUERY_MAX], "raw": page_state.flag_param(query, "advanced"),
        "project": page_state.int_param(query, "project", low=1),
        "session": query.get("session", "")[:200].strip(),
        "role": role if role in dict(ROLES) else "",
        "tool": query.get("tool", "")[:200].strip(),
        "from": query.get("from", "") if since else "",
        "to": query.get("to", "") if until else "",
        "since": _at(since, zone), "until": _at(until + timedelta(days=1), zone)
        if until else None,
        "page": min(page_state.int_param(query, "page", low=1) or 1, MAX_PAGE),
    }, problems  # fmt: skip


def _search_run(form: dict, *, visible: QuerySet | None) -> tuple[list, str]:
    try:
        hits = index.entry_search(
            visible=visible, query=form["q"], raw=form["raw"],
            project_id=form["project"],
            session_id=form["session"] or None, role=form["role"],
            since=form["since"], until=form["until"], tool=form["tool"],
            limit=HITS_PER_PAGE + 1, offset=(form["page"] - 1) * HITS_PER_PAGE,
        )  # fmt: skip
    except index.FtsQueryError as exc:
        return [], f"This is not valid FTS5 query syntax ({exc})."
    except DatabaseError as exc:  # never a 500 for a query, whatever SQLite thinks
        log.warning("search failed for %r: %s", form["q"][:200], exc)
        return [], f"The search could not run this query ({exc})."
    return hits, ""


def _day(text: str) -> date | None:
    """Return the date in text, or None when absent, malformed or out of range."""
    try:
        day = date.fromisoformat(text) if text else None
    except ValueError:
        return None
    # The range keeps 'to' + 1 day, and any zone's midnight in UTC, from overflowing.
    return day if day and 1970 <= day.year <= 2998 else None


def _at(day: date | None, zone: tzinfo) -> datetime | None:
    return datetime.combine(day, time(), tzinfo=zone) if day else None


@login_required
def todos(request: HttpRequest) -> HttpResponse:
    """Show todo lists with status counts and plans, per session or overall."""
    session_id = request.GET.get("session", "")[:200].strip()
    visible = call_session_ids(viewer=request_viewer(request))
    found = (
        index.session_get(session_id=session_id, visible=visible)
        if session_id
        else None
    )
    items = index.todo_list(visible=visible, session_id=session_id, limit=500)
    lists: dict[tuple[str, str], list] = {}
    for item in items:
        lists.setdefault((item.session_key, item.agent_id), []).append(item)
    if found is not None:
        plan = index.plan_by_slug(slug=found.slug, visible=visible)
        plans = [plan] if plan else []
    else:
        plans = [] if session_id else index.plan_list(visible=visible, limit=20)
    context = {
        "session_id": session_id, "session": found,
        "counts": index.todo_status_counts(visible=visible, session_id=session_id),
        "lists": [{"session": k[0], "agent": k[1], "items": v}
                  for k, v in lists.items()],
        "plans": [{"plan": p, "html": markdown_html(p.content[:200_000])}
                  for p in plans],
        "sessions": [] if session_id
        else index.todo_sessions(visible=visible, limit=50),
    }  # fmt: skip
    zone = page_state.zone_from_request(request)
    return render_page(request, "dashboard/transcripts/todos.html", context, zone=zone)
