"""The PostgreSQL form of the index: PostgreSQL's own full-text search.

Invariants:
- indexing_entry_tsv (migration 0012) holds one weighted tsvector per entry,
  entry_id = indexing_entry.id, under a GIN index. Like the FTS5 form it is
  written only by insert(), called by entries_insert for the same rows in the
  same transaction, and the text is not stored again (it lives compressed in
  the entry's Block): a generated column would need the text in a column.
  Triggers of 0012 delete an entry's row with the entry (any DELETE, any
  TRUNCATE, from any program) and refuse to change an entry's text or tools, so
  the index never holds a deleted entry and needs no stale queue.
- Words are what the FTS5 form's unicode61 tokenizer sees: runs of letters and
  digits. Everything else becomes a space before PostgreSQL's parser reads the
  text, which would otherwise take `/usr/bin/python`, `a.py` or `<div>` as one
  path, host or tag token that no word search finds. The configuration
  claudemon_english removes accents and stems like FTS5's remove_diacritics and
  porter and, like it, drops no stop words.
- Weights: A tool names, B prompts and titles, C replies and other lines, D tool
  output; ts_rank weighs them WEIGHTS and ranks the `window` most recent matches,
  as the FTS5 form does. Ranks are negated: lower is better on both forms.
- A plain query becomes to_tsquery text built here from words alone (quoted,
  with no quote or backslash in them): it cannot fail. A raw query goes to
  websearch_to_tsquery ("phrase", or, -word), which accepts any input; only NUL
  and the characters the index does not see are taken out first. An empty query
  (nothing but punctuation) finds nothing. Neither mode ever raises.
- Snippets are ts_headline's, for the page of hits only, over a window of each
  text; the markers are control characters the text cannot then contain, and
  the result is split into (text, is_match) parts that templates escape.
"""

from __future__ import annotations

import re

from django.db import connection

from apps.indexing.fts.shared import (
    MAX_TERM_CHARS,
    MAX_TERMS,
    FtsFilters,
    drift_check,
    filter_sql,
    no_nul,
    plain_terms,
    snippet_parts,
    snippet_pattern,
)

TABLE = "indexing_entry_tsv"
CONFIG = "claudemon_english"
SYNTAX = (
    "web search",
    "https://www.postgresql.org/docs/current/textsearch-controls.html"
    "#TEXTSEARCH-PARSING-QUERIES",
)
# ts_rank's order is {D, C, B, A}: tool output, replies, prompts, tool names.
WEIGHTS = "{0.1, 0.4, 1.0, 0.2}"
HEADLINE_CHARS = 4_000
_HEADLINE = (
    "StartSel=\x02, StopSel=\x03, MinWords=15, MaxWords=35, "
    "ShortWord=2, HighlightAll=false, MaxFragments=0"
)
_NOT_WORD = re.compile(r"[\W_]+")
_NOT_WORD_CHAR = re.compile(r"[^\w\s]|_")


def words_only(text: str) -> str:
    """Return text with every run of non-word characters (NULs too) as one space."""
    return _NOT_WORD.sub(" ", text)


def weight(kind: str, role: str) -> str:
    """Return the weight of an entry's text: B prompts and titles, D tool output."""
    if role == "user" or kind in ("summary", "custom-title", "ai-title"):
        return "B"
    return "D" if role == "tool" else "C"


_INSERT = f"""
INSERT INTO {TABLE} (entry_id, document)
SELECT id, setweight(to_tsvector('{CONFIG}', text), weight)
           || setweight(to_tsvector('{CONFIG}', tools), 'A')
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::"char"[])
     AS r(id, text, tools, weight)
"""


def insert(*, rows: list[tuple[int, str, str, str, str]]) -> None:
    """Index new entries: (entry id, text, tools, type, role), in one statement."""
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT,
            [
                [row[0] for row in rows],
                [words_only(row[1]) for row in rows],
                [words_only(row[2]) for row in rows],
                [weight(row[3], row[4]) for row in rows],
            ],
        )


def _tsquery(query: str, *, raw: bool) -> tuple[str, list]:
    """Return the SQL of a query's tsquery and its parameters ('' for none)."""
    if raw:
        text = _websearch_clean(query)
        return (f"websearch_to_tsquery('{CONFIG}', %s)", [text]) if text else ("", [])
    terms = []
    for body, prefix in plain_terms(query):
        words = [f"'{w}'" for w in words_only(body).split()]
        if words:
            terms.append(" <-> ".join(words) + (":*" if prefix else ""))
    if not terms:
        return "", []
    return f"to_tsquery('{CONFIG}', %s)", [" & ".join(terms)]


_WEB_TOKEN = re.compile(r'(-?)"([^"]*)"?|(-?)(\S+)')


def _websearch_clean(query: str) -> str:
    """Return a websearch query with only words, quotes, `or` and leading `-` left."""
    tokens = []
    for negated, phrase, dash, word in _WEB_TOKEN.findall(no_nul(query)):
        if word:
            words = [w[:MAX_TERM_CHARS] for w in words_only(word).split()]
            if len(words) > 1:  # app.py, foo-bar: a phrase, as the text has it
                tokens.append(f'{dash}"{" ".join(words)}"')
            elif words:
                tokens.append(dash + words[0])
        else:
            tokens.append(f'{negated}"{words_only(phrase)[:MAX_TERM_CHARS]}"')
        if len(tokens) == MAX_TERMS:
            break
    return " ".join(tokens)


def raw_words(text: str) -> list[tuple[str, bool]]:
    """Return the words a websearch query looks for (not `or`, not -excluded)."""
    words: list[tuple[str, bool]] = []
    for negated, phrase, dash, word in _WEB_TOKEN.findall(no_nul(text)):
        if negated or dash or word.lower() == "or":
            continue
        words.extend(
            (w[:MAX_TERM_CHARS].lower(), False)
            for w in re.findall(r"\w+", phrase or word)
        )
    return words[:MAX_TERMS]


def _tool_tsquery(tool: str) -> str:
    """Return to_tsquery text finding the tool's words as a phrase of tool names."""
    return " <-> ".join(f"'{w[:MAX_TERM_CHARS]}':A" for w in words_only(tool).split())


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
    """Return (entry id, negated ts_rank) for one page of hits, best (lowest) first."""
    tsquery, params = _tsquery(query, raw=raw)
    tool_query = _tool_tsquery(tool) if tool else ""
    if tool and not tool_query:
        return []
    if tool_query:
        tool_sql = f"to_tsquery('{CONFIG}', %s)"
        tsquery = f"{tsquery} && {tool_sql}" if tsquery else tool_sql
        params = [*params, tool_query]
    if not tsquery:
        return []
    where, filter_params = filter_sql(filters)
    join = "JOIN indexing_entry e ON e.id = s.entry_id" if where else ""
    # The most recent `window` matches are ranked (as on FTS5): ts_rank reads
    # each match's whole tsvector, a cost to bound for a word found everywhere.
    # The tsquery is written out twice, not shared through a CTE: as a constant
    # (Django binds on the client) the planner can read its selectivity and walk
    # the primary key backwards for a common word (3.6 ms instead of 49 ms for
    # "the" in 43,000 of 60,000 entries) or take the GIN index for a rare one.
    sql = f"""
    SELECT m.entry_id, -ts_rank('{WEIGHTS}', m.document, {tsquery}) AS rank
    FROM (
        SELECT s.entry_id, s.document FROM {TABLE} s {join}
        WHERE s.document @@ ({tsquery}) {where}
        ORDER BY s.entry_id DESC LIMIT %s
    ) m
    ORDER BY rank, m.entry_id DESC LIMIT %s OFFSET %s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *params, *filter_params, window, limit, offset])
        return [(row[0], row[1]) for row in cursor.fetchall()]


def snippets(
    *, texts: list[str], words: list[tuple[str, bool]], query: str, raw: bool
) -> list[list[tuple[str, bool]]]:
    """Return each text's snippet parts, highlighted by ts_headline."""
    tsquery, params = _tsquery(query, raw=raw)
    pattern = snippet_pattern(words)
    if not tsquery or not texts:
        return [snippet_parts(text, pattern) for text in texts]
    windows = [_headline_window(text, pattern) for text in texts]
    # Every character the index does not read as a word becomes \x04 (a blank to
    # the parser, one for one): no tag, path or marker survives into ts_headline,
    # and the original characters are put back from the same positions.
    masked = [_NOT_WORD_CHAR.sub("\x04", text[start:end]) for text, (start, end) in
              zip(texts, windows, strict=True)]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT ts_headline('{CONFIG}', t, (SELECT {tsquery}), %s) "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n",
            [*params, _HEADLINE, masked],
        )
        headlines = [row[0] for row in cursor.fetchall()]
    return [
        _headline_parts(text, start, end, mask, headline)
        for text, (start, end), mask, headline in zip(
            texts, windows, masked, headlines, strict=True
        )
    ]


def _headline_window(text: str, pattern: re.Pattern[str] | None) -> tuple[int, int]:
    """Return the span of a long text ts_headline reads: around the first match."""
    if len(text) <= HEADLINE_CHARS:
        return 0, len(text)
    first = pattern.search(text) if pattern else None
    start = max(0, first.start() - HEADLINE_CHARS // 4) if first else 0
    return start, min(len(text), start + HEADLINE_CHARS)


def _headline_parts(
    text: str, start: int, end: int, masked: str, headline: str
) -> list[tuple[str, bool]]:
    """Return a headline as (text, is_match) parts of the original text."""
    plain = headline.replace("\x02", "").replace("\x03", "")
    at = masked.find(plain)
    if at < 0 or not plain:
        return snippet_parts(text[start:end], None)
    original = text[start + at : start + at + len(plain)]
    parts: list[tuple[str, bool]] = [("…", False)] if start + at else []
    position, matching = 0, False
    for piece in re.split("([\x02\x03])", headline):
        if piece in ("\x02", "\x03"):
            matching = piece == "\x02"
            continue
        chunk = original[position : position + len(piece)]
        position += len(piece)
        if chunk:
            shown = chunk if matching else re.sub(r"\s+", " ", chunk)
            parts.append(
                (shown.lstrip() if position == len(chunk) else shown, matching)
            )
    if parts and not parts[-1][1]:
        parts[-1] = (parts[-1][0].rstrip(), False)
    if start + at + len(plain) < len(text):
        parts.append(("…", False))
    return [part for part in parts if part[0]]


def stale_count() -> int:
    """Return 0: triggers take a deleted entry out of the index with it."""
    return 0


def stale_apply(*, limit: int = 5000) -> int:
    """Return 0: nothing waits to leave the index (see stale_count)."""
    return 0


def optimize() -> None:
    """Move the GIN index's pending list into the index after a bulk load, and
    give the planner the new words' frequencies at once rather than at
    autovacuum's next pass: without them a search just after a full reindex of
    300,000 entries took p95 321 ms instead of 56 ms."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [f"{TABLE}_gin"])
        cursor.execute(f"ANALYZE {TABLE}, indexing_entry")


def integrity_check() -> None:
    """Raise DatabaseError when an entry is missing from the index (or the
    reverse, which the triggers make impossible short of disabling them)."""
    with connection.cursor() as cursor:
        cursor.execute(_DRIFT_SQL)
        drift_check(*cursor.fetchone())


_DRIFT_SQL = f"""
SELECT
  (SELECT count(*) FROM {TABLE} s
   WHERE NOT EXISTS (SELECT 1 FROM indexing_entry e WHERE e.id = s.entry_id)),
  (SELECT count(*) FROM indexing_entry e
   WHERE NOT EXISTS (SELECT 1 FROM {TABLE} s WHERE s.entry_id = e.id))
"""


def match_count(*, query: str) -> int:
    """Return how many entries a plain query finds (for checks, tests)."""
    tsquery, params = _tsquery(query, raw=False)
    if not tsquery:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {TABLE} WHERE document @@ {tsquery}", params
        )
        return cursor.fetchone()[0]


def row_count() -> int:
    """Return the number of entries the index holds."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE}")
        return cursor.fetchone()[0]
