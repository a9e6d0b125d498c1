"""Reads of the transcript index: search, browse, and links to relayed exchanges.

A package: full-text search (search), projects and sessions (sessions), a
session's turns (turns), its thread and single entries (entries), and todos
and plans (todos).
"""

from apps.indexing.fts import (
    SNIPPET_BEFORE,
    SNIPPET_CHARS,
    FtsQueryError,
    fts_query_words,
    fts_syntax,
    snippet_parts,
    snippet_pattern,
)
from apps.indexing.selectors.entries import (
    NOT_TRANSCRIPT,
    SubagentThread,
    ThreadEntry,
    entry_by_request_id,
    entry_id_by_uuid,
    entry_ids_by_uuid,
    entry_raw,
    entry_records,
    entry_text,
    line_record,
    session_exchange_links,
    session_thread,
    thread_count,
    thread_position,
)
from apps.indexing.selectors.search import SearchHit, entry_search, highlight_parts
from apps.indexing.selectors.sessions import (
    project_list,
    session_get,
    session_keys_by_project,
    session_list,
    session_models,
    session_subagent_counts,
    session_subagent_list,
    sessions_by_id,
)
from apps.indexing.selectors.todos import (
    plan_by_slug,
    plan_list,
    todo_list,
    todo_sessions,
    todo_status_counts,
)
from apps.indexing.selectors.turns import (
    TURN_PROMPT,
    TURN_START_SQL,
    TURN_SUMMARY,
    TurnMark,
    entry_row_time,
    session_calls,
    session_turn_marks,
)

# FtsQueryError for the API's 422; fts_query_words and the snippet functions for
# the thread's highlights; fts_syntax for the search page's help.
__all__ = [
    "NOT_TRANSCRIPT", "SNIPPET_BEFORE", "SNIPPET_CHARS", "TURN_PROMPT",
    "TURN_START_SQL", "TURN_SUMMARY", "FtsQueryError", "SearchHit", "SubagentThread",
    "ThreadEntry", "TurnMark", "entry_by_request_id", "entry_id_by_uuid",
    "entry_ids_by_uuid", "entry_raw", "entry_records", "entry_row_time",
    "entry_search", "entry_text", "fts_query_words", "fts_syntax",
    "highlight_parts",
    "line_record", "plan_by_slug", "plan_list", "project_list",
    "session_calls", "session_exchange_links", "session_get",
    "session_keys_by_project", "session_list",
    "session_models", "session_subagent_counts", "session_subagent_list",
    "session_thread", "session_turn_marks", "sessions_by_id", "snippet_parts",
    "snippet_pattern", "thread_count", "thread_position", "todo_list",
    "todo_sessions", "todo_status_counts",
]  # fmt: skip
