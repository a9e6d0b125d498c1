"""The SQLite form of the index: every FTS5 statement, and the one way user text
reaches MATCH.

Invariants:
- indexing_entry_fts is a contentless FTS5 table (content=''): each entry's text
  lives once, compressed in its Block, and the index holds only postings, rowid =
  indexing_entry.id. Entries are created only by apps.indexing.services.batches.
  entries_insert, which calls fts_insert() for the same rows in the same
  transaction. Their text and tools are never updated (a trigger refuses it).
- No trigger or view needs a function of ours (migration 0010): a backup script,
  the sqlite3 shell or datasette can read, delete and VACUUM the file. Removing a
  row from a contentless index needs its exact text, which SQL alone cannot
  unpack, so a delete, whoever makes it, queues a tombstone in
  indexing_fts_stale (the entry's block is copied to indexing_fts_stale_block
  if the block goes first); stale_apply() removes them from the index, at
  the start of every index_sync and right after the indexer's own deletes.
  Queued rows are already invisible: searches and counts exclude them.
  Nothing outside this module and the migrations names these tables.
- User text reaches MATCH only through fts_query_escape(): every token is quoted
  (so AND/OR/NOT/NEAR, column names, brackets, `-`, `^` and `:` are literal words),
  quotes are balanced, a quoted phrase stays a phrase, `word*` stays a prefix, a
  NUL is a space, and input with no searchable token yields '' (no results).
  https://www.sqlite.org/fts5.html#full_text_query_syntax
- Raw FTS5 syntax runs only when a caller passes raw=True; its syntax errors raise
  FtsQueryError with SQLite's message. Escaped queries never raise.
- Ranking is bm25 (FTS5 `rank`) over the `window` most recent matching entries:
  exact for any query matching fewer, and bounded in cost for a word found in
  70,000 entries. Metadata filters join indexing_entry (and indexing_session) on
  rowid; every query has a LIMIT; snippets are computed only for the page of
  hits, in Python from the entries' texts: FTS5's snippet() would evaluate the
  whole query again for each hit.
"""

from __future__ import annotations

import re
import sqlite3

from django.db import DatabaseError, connection

from apps.indexing.fts.shared import (
    MAX_TERM_CHARS,
    MAX_TERMS,
    FtsFilters,
    FtsQueryError,
    drift_check,
    filter_sql,
    no_nul,
    plain_terms,
    snippet_parts,
    snippet_pattern,
)
from apps.indexing.rawlines import block_text

TABLE = "indexing_entry_fts"
SYNTAX = ("FTS5", "https://www.sqlite.org/fts5.html#full_text_query_syntax")


def fts_query_escape(text: str) -> str:
    """Return a safe MATCH expression: all words required, phrases, `word*` prefixes."""
    return " ".join(
        '"' + body.replace('"', '""') + '"' + ("*" if prefix else "")
        for body, prefix in plain_terms(text)
    )


def raw_words(text: str) -> list[tuple[str, bool]]:
    """Return the words a raw FTS5 query looks for in the text (for highlighting).

    Operators, column names and NEAR distances are not words, and neither are
    the words a query excludes (after NOT) or looks for only in the tools column.
    """
    return _RawTerms(text).words()[:MAX_TERMS]


# FTS5 query tokens: strings ("" escapes a quote), barewords (letters, digits,
# _ and any non-ASCII character), and the one-character operators.
# https://www.sqlite.org/fts5.html#full_text_query_syntax
_RAW_TOKEN = re.compile(r'"((?:[^"]|"")*)"?|([\w\x1a\x80-\U0010ffff]+)|(\S)')
_TEXT_COLUMNS = {"text"}
_KEYWORDS = {"AND", "OR", "NOT"}
_MAX_DEPTH = 40


class _RawTerms:
    """The words of a raw FTS5 query that a matching entry's text may contain.

    A forgiving recursive descent over FTS5's grammar: it never raises, whatever
    the input (a query SQLite rejects finds nothing to highlight anyway), and an
    unexpected token is skipped.
    """

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        for match in _RAW_TOKEN.finditer(text[: MAX_TERM_CHARS * MAX_TERMS]):
            string, word, other = match.groups()
            if string is not None:
                self.tokens.append(("string", string.replace('""', '"')))
            elif word is not None:
                self.tokens.append(("word", word))
            else:
                self.tokens.append((other, other))
        self.at = 0
        self.depth = 0
        self.found: list[tuple[str, bool]] = []

    def words(self) -> list[tuple[str, bool]]:
        while self.at < len(self.tokens):
            self._or(shown=True)
            self.at += 1  # a stray ")" or operator: skip it and read on
        return self.found

    def _peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else ("", "")

    def _keyword(self, name: str) -> bool:
        return self._peek() == ("word", name)

    def _or(self, *, shown: bool) -> None:
        self._and(shown=shown)
        while self._keyword("OR"):
            self.at += 1
            self._and(shown=shown)

    def _and(self, *, shown: bool) -> None:
        self._not(shown=shown)
        while self._peek()[0] and self._peek()[0] not in (")", ","):
            if self._keyword("OR"):
                return
            if self._keyword("AND"):
                self.at += 1
            before = self.at
            self._not(shown=shown)
            if self.at == before:  # nothing could be read here: skip a token
                self.at += 1

    def _not(self, *, shown: bool) -> None:
        self._primary(shown=shown)
        while self._keyword("NOT"):
            self.at += 1
            self._primary(shown=False)  # the excluded side is never in the text

    def _primary(self, *, shown: bool) -> None:
        shown = shown and self._columns()
        kind, value = self._peek()
        if kind == "(" and self.depth < _MAX_DEPTH:
            self.at += 1
            self.depth += 1
            self._or(shown=shown)
            self.depth -= 1
            if self._peek()[0] == ")":
                self.at += 1
        elif kind == "word" and value == "NEAR" and self._peek(1)[0] == "(":
            self.at += 2
            before = -1
            while before != self.at:
                before = self.at
                self._phrase(shown=shown)
            if self._peek()[0] == ",":
                self.at += 2  # the distance
            if self._peek()[0] == ")":
                self.at += 1
        else:
            if kind == "^":
                self.at += 1
            self._phrase(shown=shown)

    def _columns(self) -> bool:
        """Read a column filter if one starts here; say if it keeps the text column."""
        start = self.at
        negated = self._peek()[0] == "-"
        self.at += negated
        names = []
        if self._peek()[0] == "{":
            self.at += 1
            while self._peek()[0] == "word":
                names.append(self._peek()[1].lower())
                self.at += 1
            self.at += self._peek()[0] == "}"
        elif self._peek()[0] == "word" and self._peek(1)[0] == ":":
            names.append(self._peek()[1].lower())
            self.at += 1
        if not names or self._peek()[0] != ":":
            self.at = start
            return True
        self.at += 1
        named_text = bool(_TEXT_COLUMNS & set(names))
        return not named_text if negated else named_text

    def _phrase(self, *, shown: bool) -> None:
        while self._peek()[0] == "string" or (
            self._peek()[0] == "word" and self._peek()[1] not in _KEYWORDS
        ):
            words = re.findall(r"\w+", self._peek()[1])
            self.at += 1
            prefix = self._peek()[0] == "*"
            self.at += prefix
            if shown:
                for n, word in enumerate(words, start=1):
                    last = n == len(words)
                    self.found.append((word[:MAX_TERM_CHARS].lower(), prefix and last))
            if self._peek()[0] != "+":
                return
            self.at += 1


def _tool_filter(tool: str) -> str:
    """Return a MATCH clause restricting hits to entries that used the named tool."""
    words = [w for w in no_nul(tool).split() if any(c.isalnum() for c in w)]
    if not words:
        return ""
    quoted = " ".join(words)[:MAX_TERM_CHARS].replace('"', '""')
    return f'tools : "{quoted}"'


def search(
    *,
    query: str,
    raw: bool,
    tool: str,
    filters: FtsFilters,
    window: int,
    limit: int,
    offset: int,
) -> list[tuple[int, float]]:
    """Return (entry id, bm25 rank) for one page of hits, best (lowest) first."""
    match = query.strip() if raw else fts_query_escape(query)
    tool_clause = _tool_filter(tool) if tool else ""
    if tool and not tool_clause:
        return []
    if match and tool_clause:
        match = f"({match}) AND {tool_clause}"
    match = match or tool_clause
    if not match:
        return []
    where, params = filter_sql(filters)
    join = "JOIN indexing_entry e ON e.id = f.rowid" if where else ""
    where += _LIVE
    # bm25 costs a few microseconds per matching row: rank only the most recent
    # `window` matches (all of them for any but very common words). FTS5 walks
    # matches in rowid order cheaply, and a rowid bound is pushed into the index.
    cut_sql = (
        f"SELECT f.rowid FROM {TABLE} f {join} WHERE {TABLE} MATCH %s {where} "
        f"ORDER BY f.rowid DESC LIMIT 1 OFFSET %s"
    )
    cut = _run(cut_sql, [match, *params, window - 1], raw=raw)
    if cut:
        where, params = f"{where} AND f.rowid >= %s", [*params, cut[0][0]]
    ranked_sql = (
        f"SELECT f.rowid, f.rank FROM {TABLE} f {join} "
        f"WHERE {TABLE} MATCH %s {where} ORDER BY f.rank LIMIT %s OFFSET %s"
    )
    return [
        (row[0], row[1])
        for row in _run(ranked_sql, [match, *params, limit, offset], raw=raw)
    ]


def snippets(
    *, texts: list[str], words: list[tuple[str, bool]], query: str, raw: bool
) -> list[list[tuple[str, bool]]]:
    """Return each text's snippet parts, found in Python (see the module docstring)."""
    pattern = snippet_pattern(words)
    return [snippet_parts(text, pattern) for text in texts]


STALE = "indexing_fts_stale"
# Tombstones: deleted entries whose postings stale_apply has not removed yet.
_LIVE = f" AND f.rowid NOT IN (SELECT entry_id FROM {STALE})"


def _run(sql: str, params: list, *, raw: bool) -> list[tuple]:
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    except (DatabaseError, sqlite3.OperationalError) as exc:
        if raw:
            raise FtsQueryError(str(exc)) from None
        raise


def insert(*, rows: list[tuple[int, str, str, str, str]]) -> None:
    """Index new entries: (entry id, text, tools, type, role); all columns weigh
    the same here (bm25's default), so type and role are not used."""
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {TABLE}(rowid, text, tools) VALUES (%s, %s, %s)",
            [row[:3] for row in rows],
        )


def stale_count() -> int:
    """Return how many deleted entries still wait to leave the index."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {STALE}")
        return cursor.fetchone()[0]


def stale_apply(*, limit: int = 5000) -> int:
    """Remove up to limit deleted entries from the index; return how many.

    Call inside a write transaction. A tombstone whose text is lost (its block
    and the block's copy both gone) stays: the index keeps excluding it.
    """
    with connection.cursor() as cursor:
        cursor.execute(_STALE_SQL, [limit])
        rows = cursor.fetchall()
        cursor.executemany(
            f"INSERT INTO {TABLE}({TABLE}, rowid, text, tools) "
            "VALUES ('delete', %s, %s, %s)",
            [(i, block_text(b, data, slot), tools) for i, b, slot, tools, data in rows],
        )
        cursor.executemany(
            f"DELETE FROM {STALE} WHERE entry_id = %s", [(row[0],) for row in rows]
        )
        cursor.execute(_STALE_BLOCKS_FORGET)
    return len(rows)


_STALE_SQL = f"""
SELECT s.entry_id, s.block_id, s.slot, s.tools, coalesce(b.data, k.data)
FROM {STALE} s
LEFT JOIN indexing_block b ON b.id = s.block_id
LEFT JOIN {STALE}_block k ON k.id = s.block_id
WHERE b.id IS NOT NULL OR k.id IS NOT NULL
ORDER BY s.block_id LIMIT %s
"""
# A copied block is kept while a tombstone or a (not yet deleted) entry needs it.
_STALE_BLOCKS_FORGET = f"""
DELETE FROM {STALE}_block
WHERE NOT EXISTS (SELECT 1 FROM {STALE} s WHERE s.block_id = {STALE}_block.id)
  AND NOT EXISTS (
      SELECT 1 FROM indexing_entry e WHERE e.block_id = {STALE}_block.id)
"""


def optimize() -> None:
    """Merge the index into one b-tree: smaller and faster to query after bulk loads."""
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE}({TABLE}) VALUES ('optimize')")


def integrity_check() -> None:
    """Raise DatabaseError when the index is damaged or disagrees with the entries."""
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE}({TABLE}) VALUES ('integrity-check')")
        # A contentless index cannot compare itself with its content: list the
        # rowids its postings name instead (fts5vocab, one row per occurrence).
        cursor.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{TABLE}_terms "
            f"USING fts5vocab(main, {TABLE}, instance)"
        )
        cursor.execute(_DRIFT_SQL)
        drift_check(*cursor.fetchone())


_DRIFT_SQL = f"""
SELECT
  (SELECT count(*) FROM (
       SELECT doc AS id FROM temp.{TABLE}_terms UNION SELECT id FROM {TABLE}_docsize
   ) AS x
   WHERE x.id NOT IN (SELECT id FROM indexing_entry)
     AND x.id NOT IN (SELECT entry_id FROM {STALE})),
  (SELECT count(*) FROM indexing_entry
   WHERE id NOT IN (SELECT id FROM {TABLE}_docsize))
"""


def match_count(*, query: str) -> int:
    """Return how many live entries a plain query finds (for checks, tests)."""
    match = fts_query_escape(query)
    if not match:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {TABLE} f WHERE {TABLE} MATCH %s {_LIVE}", [match]
        )
        return cursor.fetchone()[0]


def row_count() -> int:
    """Return the number of live entries the FTS index holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {TABLE}_docsize "
            f"WHERE id NOT IN (SELECT entry_id FROM {STALE})"
        )
        return cursor.fetchone()[0]
