"""What both forms of the index share: filters, the reading of plain queries, snippets.

Plain queries (the search box without Advanced) mean the same on every database:
all words required, a "quoted phrase" stays a phrase, `word*` is a prefix, a NUL
is a space, at most MAX_TERMS terms of MAX_TERM_CHARS characters each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.db import DatabaseError, connection

MAX_TERMS = 32
MAX_TERM_CHARS = 200
SNIPPET_BEFORE = 60
SNIPPET_CHARS = 240


class FtsQueryError(ValueError):
    """A raw query the database rejected; the message is the database's."""


@dataclass(frozen=True, slots=True)
class FtsFilters:
    project_id: int | None = None
    session_pk: int | None = None
    session_pks: tuple[int, ...] | None = None  # any of these: a reader's sessions
    role: str = ""
    since: datetime | None = None
    until: datetime | None = None


_TOKEN = re.compile(r'"([^"]*)("?)(\*?)|(\S+)')


def plain_terms(text: str) -> list[tuple[str, bool]]:
    """Return a plain query's terms: (words of a word or phrase, is prefix).

    Punctuation-only tokens are dropped; quotes are balanced by reading an
    unclosed phrase to the end.
    """
    terms: list[tuple[str, bool]] = []
    for phrase, _closing, star, word in _TOKEN.findall(no_nul(text)):
        body, prefix = (phrase, bool(star)) if not word else _split_prefix(word)
        words = [w for w in body.split() if any(c.isalnum() for c in w)]
        if not words:
            continue
        terms.append((" ".join(words)[:MAX_TERM_CHARS], prefix))
        if len(terms) == MAX_TERMS:
            break
    return terms


def _split_prefix(word: str) -> tuple[str, bool]:
    stripped = word.rstrip("*")
    return stripped, stripped != word


def no_nul(text: str | None) -> str:
    """Return text with every NUL turned into a space."""
    # FTS5 reads a query as a C string (a NUL ends it: "unterminated string");
    # PostgreSQL text cannot hold one at all.
    return (text or "").replace("\x00", " ")


_WORD = re.compile(r"\w+(\*?)")


def plain_words(text: str) -> list[tuple[str, bool]]:
    """Return the (lowercased word, is prefix) pairs of a plain query."""
    words = []
    for match in _WORD.finditer(text or ""):
        words.append((match.group(0).rstrip("*").lower(), bool(match.group(1))))
    return words[:MAX_TERMS]


def drift_check(orphans: int, missing: int) -> None:
    """Raise DatabaseError when the index and the entries disagree."""
    if orphans or missing:
        raise DatabaseError(
            f"FTS index drift: {orphans} indexed rowids without an entry, "
            f"{missing} entries not indexed"
        )


def filter_sql(filters: FtsFilters) -> tuple[str, list]:
    """Return ' AND ...' clauses on indexing_entry e, and their parameters."""
    clauses: list[str] = []
    params: list = []
    if filters.session_pk is not None:
        clauses.append("e.session_id = %s")
        params.append(filters.session_pk)
    if filters.session_pks is not None:
        marks = ", ".join(["%s"] * len(filters.session_pks)) or "NULL"
        clauses.append(f"e.session_id IN ({marks})")
        params.extend(filters.session_pks)
    if filters.project_id is not None:
        clauses.append(
            "e.session_id IN (SELECT id FROM indexing_session WHERE project_id = %s)"
        )
        params.append(filters.project_id)
    if filters.role:
        clauses.append("e.role = %s")
        params.append(filters.role)
    # Adapted as Django stores DateTimeField (on SQLite: naive UTC text).
    if filters.since is not None:
        clauses.append("e.timestamp >= %s")
        params.append(connection.ops.adapt_datetimefield_value(filters.since))
    if filters.until is not None:
        clauses.append("e.timestamp < %s")
        params.append(connection.ops.adapt_datetimefield_value(filters.until))
    return "".join(f" AND {c}" for c in clauses), params


def snippet_pattern(words: list[tuple[str, bool]]) -> re.Pattern[str] | None:
    """Return a regex finding the query's words as the index matches them.

    The index stems words, so a word also matches its longer forms:
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
