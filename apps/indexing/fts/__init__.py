"""Full-text search over the entries: one interface, one form per database engine.

The form is picked here, and only here, from connection.vendor: fts5 (SQLite's
FTS5, contentless, tombstones for deletes) or tsearch (PostgreSQL's weighted
tsvector under a GIN index, triggers for deletes). Each states its invariants in
its own docstring; both keep these:
- Entries are indexed by apps.indexing.services.batches.entries_insert, which
  calls fts_insert() for the same rows in the same transaction; an entry's text
  and tools never change (a trigger refuses it). A deleted entry is never a hit.
- A plain query means the same on both (apps.indexing.fts.shared) and never
  raises, whatever the input. A raw query is the engine's own syntax: FTS5's may
  raise FtsQueryError (the API's 422); PostgreSQL's websearch syntax cannot fail.
- Ranking is over the RANK_WINDOW most recent matches; every query has a LIMIT;
  snippets are made for the page of hits only, as (text, is_match) parts that
  templates escape.
Nothing outside this package and the migrations names the index's tables.
"""

from __future__ import annotations

from types import ModuleType

from django.db import connection

from apps.indexing.fts import fts5, tsearch
from apps.indexing.fts.fts5 import fts_query_escape
from apps.indexing.fts.shared import (
    MAX_TERM_CHARS,
    MAX_TERMS,
    SNIPPET_BEFORE,
    SNIPPET_CHARS,
    FtsFilters,
    FtsQueryError,
    plain_words,
    snippet_parts,
    snippet_pattern,
)

RANK_WINDOW = 1000

__all__ = [
    "MAX_TERMS", "MAX_TERM_CHARS", "RANK_WINDOW", "SNIPPET_BEFORE", "SNIPPET_CHARS",
    "FtsFilters", "FtsQueryError", "fts_insert", "fts_integrity_check",
    "fts_match_count", "fts_optimize", "fts_query_escape", "fts_query_words",
    "fts_row_count", "fts_search", "fts_snippets", "fts_stale_apply",
    "fts_stale_count", "fts_syntax", "snippet_parts", "snippet_pattern",
]  # fmt: skip


def _form() -> ModuleType:
    """Return the module of the index's form on this database."""
    return fts5 if connection.vendor == "sqlite" else tsearch


def fts_search(
    *,
    query: str,
    raw: bool = False,
    tool: str = "",
    filters: FtsFilters,
    limit: int,
    offset: int,
) -> list[tuple[int, float]]:
    """Return (entry id, rank) for one page of hits, best (lowest rank) first."""
    window = max(RANK_WINDOW, offset + limit)
    return _form().search(
        query=query,
        raw=raw,
        tool=tool,
        filters=filters,
        window=window,
        limit=limit,
        offset=offset,
    )


def fts_snippets(
    *, texts: list[str], query: str, raw: bool = False
) -> list[list[tuple[str, bool]]]:
    """Return the snippet of each hit's text as (text, is_match) parts."""
    words = fts_query_words(query, raw=raw)
    return _form().snippets(texts=texts, words=words, query=query, raw=raw)


def fts_query_words(text: str, *, raw: bool = False) -> list[tuple[str, bool]]:
    """Return the (lowercased word, is prefix) pairs a query searches for.

    For highlighting. A raw query is read in the engine's syntax: operators and
    excluded words are not words.
    """
    return _form().raw_words(text or "") if raw else plain_words(text)


def fts_syntax() -> tuple[str, str]:
    """Return the name of the raw query syntax and the address of its manual."""
    return _form().SYNTAX


def fts_insert(*, rows: list[tuple[int, str, str, str, str]]) -> None:
    """Index new entries (id, text, tools, type, role) inside their transaction."""
    _form().insert(rows=rows)


def fts_stale_count() -> int:
    """Return how many deleted entries still wait to leave the index."""
    return _form().stale_count()


def fts_stale_apply(*, limit: int = 5000) -> int:
    """Remove up to limit deleted entries from the index; return how many."""
    return _form().stale_apply(limit=limit)


def fts_optimize() -> None:
    """Compact the index after a bulk load."""
    _form().optimize()


def fts_integrity_check() -> None:
    """Raise DatabaseError when the index is damaged or disagrees with the entries."""
    _form().integrity_check()


def fts_match_count(*, query: str) -> int:
    """Return how many live entries a plain query finds (for checks, tests)."""
    return _form().match_count(query=query)


def fts_row_count() -> int:
    """Return the number of live entries the index holds."""
    return _form().row_count()
