"""The index's hand-written SQL, but for full-text search: one home for its fragments.

Every FTS5 statement stays in apps.indexing.fts, beside the escaping of user
text and the invariants of the contentless index it keeps (STYLE: the FTS table
is touched only from fts.py). Everything else the index says in SQL is here:
plain strings, no Django import. Raw SQL where the ORM's per-row cost would
outweigh the work: thousands of lines per batch, thousands of sessions per
sync, a long session's page.
"""

from __future__ import annotations

# --- turns -----------------------------------------------------------------------
# A turn starts at each prompt typed: a user line with prose that is neither
# Claude Code's scaffolding (isMeta) nor the summary it writes after compacting.
# The one definition of a turn: the sessions list counts it (Session.user_count,
# apps.indexing.services.sessions) and the session page starts its turns with it.
TURN_START_SQL = (
    "type = 'user' AND role = 'user' AND NOT is_meta AND NOT is_compact_summary"
)
TURN_PROMPT, TURN_SUMMARY = 0, 1
# '' || timestamp has no declared type, so sqlite3 hands back the stored text.
TURN_MARKS = f"""
SELECT id, CASE WHEN is_compact_summary THEN {TURN_SUMMARY} ELSE {TURN_PROMPT} END,
       uuid, '' || timestamp, block_id, slot
FROM indexing_entry
WHERE session_id = %s AND (is_compact_summary OR ({TURN_START_SQL}))
ORDER BY id
"""

# --- entries, blocks and source files (services.batches) ---------------------------
# {columns}, {marks}: the entry's columns and one %s each, the id first.
ENTRY_INSERT = "INSERT INTO indexing_entry (id, {columns}) VALUES ({marks})"
BLOCK_INSERT = "INSERT INTO indexing_block (id, source_id, data) VALUES (%s, %s, %s)"
# AUTOINCREMENT semantics: never reuse an id, even of a deleted last row.
NEXT_ID = (
    "SELECT max(coalesce(max(id), 0), coalesce((SELECT seq FROM sqlite_sequence "
    "WHERE name = '{table}'), 0)) FROM {table}"
)
# PostgreSQL: ids from the table's sequence (several writers at once).
IDS_TAKE = (
    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)"
)
# A file's offset moves only from the value its batch started from.
SOURCE_MOVE = (
    'UPDATE indexing_sourcefile SET "offset" = %s, lines = %s, size = %s, '
    "mtime_ns = %s, device = %s, inode = %s, missing = FALSE, session_id = %s, "
    "head = %s, bad_lines = bad_lines + %s, indexed_at = %s "
    'WHERE id = %s AND "offset" = %s'
)

# --- the index lock on PostgreSQL (services.sync) --------------------------------
# The backend pid holding the advisory lock of a small key (low 32 bits: objid).
LOCK_HOLDER = (
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND objid = %s AND objsubid = 1"
)

# --- sessions (services.sessions, services.batches) -------------------------------
SESSION_UPDATE = "UPDATE indexing_session SET {assignments} WHERE id = %s"
SESSION_PARENT_SET = (
    "UPDATE indexing_session SET parent_key = %s "
    "WHERE id = %s AND is_subagent AND parent_key = ''"
)
SESSION_PROJECT_SET = (
    "UPDATE indexing_session SET project_id = %s WHERE id = %s AND ("
    "project_id IS NULL OR project_id IN "
    "(SELECT id FROM indexing_project WHERE NOT path_known))"
)
# The lines a session's totals are recomputed from, in order.
SESSION_ENTRIES = f"""
SELECT session_id, id, type, ({TURN_START_SQL}) AS is_prompt, '' || timestamp, uuid,
       message_id, request_id, model, tools, input_tokens, output_tokens,
       cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, speed,
       block_id, slot
FROM indexing_entry WHERE session_id IN ({{marks}})
  AND type NOT IN ('todo', 'task', 'plan', 'history')
ORDER BY session_id, id
"""

# --- a session's calls (services.sessions) -----------------------------------------
CALL_COLUMNS = (
    "session_id, entry_id, uuid, turn, timestamp, request_id, message_id, model,"
    " speed, tools, input_tokens, output_tokens, cache_read_tokens,"
    " cache_write_5m_tokens, cache_write_1h_tokens, cost_usd"
)
CALL_INSERT = (
    f"INSERT INTO indexing_transcriptcall ({CALL_COLUMNS})"
    f" VALUES ({', '.join(['%s'] * 16)})"
)
CALLS_OF_SESSIONS = (
    "SELECT id, {columns} FROM indexing_transcriptcall WHERE session_id IN ({marks})"
)
CALL_DELETE = "DELETE FROM indexing_transcriptcall WHERE id = %s"
# The sessions' calls as the ledger takes them: a subagent's belong to its main
# session (the relay records them under that id too), in the subagent's project.
LEDGER_CALLS = """
SELECT c.request_id, c.message_id, c.uuid, '' || c.timestamp, c.model, c.speed,
       c.input_tokens, c.output_tokens, c.cache_read_tokens,
       c.cache_write_5m_tokens, c.cache_write_1h_tokens, c.cost_usd, c.tools,
       CASE WHEN s.is_subagent AND s.parent_key <> '' THEN s.parent_key
            ELSE s.session_id END,
       CASE WHEN s.is_subagent THEN s.agent_id ELSE '' END, s.project_id
FROM indexing_transcriptcall c JOIN indexing_session s ON s.id = c.session_id
WHERE c.session_id IN ({marks}) AND c.model <> ''
ORDER BY s.id, c.entry_id
"""
