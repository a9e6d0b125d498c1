from __future__ import annotations

import pytest

from apps.indexing import fts
from apps.indexing.fts import FtsQueryError, fts_integrity_check, fts_query_escape
from apps.indexing.selectors import entry_search, snippet_parts, snippet_pattern
from apps.indexing.services import index_sync
from tests.indexing.conftest import conversation_write


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("migration rollback", '"migration" "rollback"'),
        ('"migration rollback"', '"migration rollback"'),
        ('"unbalanced phrase', '"unbalanced phrase"'),
        ("alem*", '"alem"*'),
        ('"alembic hist"*', '"alembic hist"*'),
        ("*", ""),
        ("-", ""),
        ("a - b", '"a" "b"'),
        ("NEAR(a b)", '"NEAR(a" "b)"'),
        ("foo OR bar NOT baz", '"foo" "OR" "bar" "NOT" "baz"'),
        ("text:secret", '"text:secret"'),
        ('say"hi', '"say""hi"'),
        ("🎉 🎉", ""),
        ("a\x00b", '"a" "b"'),
        ('"a\x00b"', '"a b"'),
        ("\x00", ""),
        ("   ", ""),
        ("", ""),
    ],
)
def test_it_escapes_user_queries(text: str, expected: str) -> None:
    assert fts_query_escape(text) == expected


def test_it_caps_the_number_of_terms() -> None:
    assert fts_query_escape("word " * 5000).count('"word"') == 32


HOSTILE = [
    "a\x00b",
    '"',
    '""',
    '"""',
    "'",
    "(",
    ")",
    "()",
    "[",
    "]",
    "{}",
    "NEAR(",
    "NEAR(a, b",
    "-",
    "--",
    "*",
    "**",
    "^",
    ":",
    "a:b",
    "text:",
    "AND",
    "OR",
    "NOT",
    "a AND",
    "OR b",
    "🎉",
    "migration 🎉",
    "\x00",
    "\\",
    "%",
    "_",
    "col:*",
    "-migration",
    "+rollback",
    "x" * 10_000,
    "migration " * 2_000,
    '"' * 999,
    "((((((",
    "a*b*c*",
    "(" * 5_000,
    "NOT " * 3_000,
    "{" * 999 + ":",
]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("migration rollback", [("migration", False), ("rollback", False)]),
        ("deadlock NOT pool", [("deadlock", False)]),
        ("a NOT (b OR c) d", [("a", False), ("d", False)]),
        ("NEAR(flaky fixture, 5)", [("flaky", False), ("fixture", False)]),
        ('"flaky websocket" OR fixt*',
         [("flaky", False), ("websocket", False), ("fixt", True)]),
        ('"alembic hist"*', [("alembic", False), ("hist", True)]),
        ("^start + next*", [("start", False), ("next", True)]),
        ("tools : Bash AND fixture", [("fixture", False)]),
        ("tools:Bash", []),
        ("{tools}: leak", []),
        ("{text tools}: leak", [("leak", False)]),
        ("- tools : leak", [("leak", False)]),
        ("text : (Socket OR pool)", [("socket", False), ("pool", False)]),
        ('"say ""hi"" there"', [("say", False), ("hi", False), ("there", False)]),
        ("NEAR", [("near", False)]),  # a word unless a bracket follows
        ("AND OR NOT", []),
        ("NEAR(AND OR)", []),
        (") a (", [("a", False)]),
        ("<script>alert(1)</script>",
         [("script", False), ("alert", False), ("1", False), ("script", False)]),
    ],
)  # fmt: skip
def test_it_reads_the_words_of_raw_queries_for_highlighting(query, words) -> None:
    assert fts.fts_query_words(query, raw=True) == words


@pytest.mark.parametrize("query", HOSTILE)
def test_it_reads_raw_words_of_any_input_without_failing(query: str) -> None:
    words = fts.fts_query_words(query, raw=True)
    assert len(words) <= fts.MAX_TERMS
    assert all(len(word) <= fts.MAX_TERM_CHARS for word, _ in words)
    assert snippet_pattern(words) is None or words


@pytest.mark.django_db
@pytest.mark.parametrize("query", HOSTILE)
def test_it_never_fails_on_hostile_input(claude_tree, query: str) -> None:
    conversation_write(claude_tree)
    index_sync()
    results = entry_search(visible=None, query=query, limit=5)
    assert isinstance(results, list)


@pytest.mark.django_db
def test_it_finds_words_phrases_and_prefixes(claude_tree) -> None:
    conversation_write(claude_tree)
    index_sync()
    assert [h.type for h in entry_search(visible=None, query="migration rollback")] == [
        "user"
    ]
    assert len(entry_search(visible=None, query='"alembic downgrade"')) == 1
    assert len(entry_search(visible=None, query='"downgrade alembic"')) == 0
    # Porter stemming: "rolled" and "rollback" do not share a stem, "inspecting" does.
    assert len(entry_search(visible=None, query="inspecting")) == 1
    assert (
        len(entry_search(visible=None, query="alemb*")) == 3
    )  # text, tool input, downgrade reply
    assert len(entry_search(visible=None, query="alembic", tool="Bash")) == 1
    assert entry_search(visible=None, query="alembic", role="tool") == []
    assert len(entry_search(visible=None, query="invoices", role="tool")) == 1


@pytest.mark.django_db
def test_it_highlights_the_match_in_the_snippet(claude_tree) -> None:
    conversation_write(claude_tree)
    index_sync()
    (hit,) = entry_search(visible=None, query="billing")
    assert ("billing", True) in hit.snippet_parts
    assert "billing service" in hit.snippet


@pytest.mark.django_db
def test_it_runs_raw_syntax_only_when_asked(claude_tree) -> None:
    conversation_write(claude_tree)
    index_sync()
    assert len(entry_search(visible=None, query="alembic NOT downgrade", raw=True)) == 2
    assert len(entry_search(visible=None, query="alembic NOT downgrade")) == 0
    with pytest.raises(FtsQueryError, match="syntax error"):
        entry_search(visible=None, query="NEAR(", raw=True)


@pytest.mark.django_db
def test_it_keeps_the_index_in_step_with_entries(claude_tree) -> None:
    t = conversation_write(claude_tree)
    index_sync()
    t.path.write_text("")  # truncated: its entries are dropped and re-read (none)
    index_sync()
    fts_integrity_check()
    assert entry_search(visible=None, query="alembic") == []


@pytest.mark.django_db
def test_it_ranks_among_the_most_recent_matches_of_a_common_word(
    claude_tree, monkeypatch
) -> None:
    monkeypatch.setattr(fts, "RANK_WINDOW", 3)
    t = claude_tree.transcript()
    for number in range(6):
        t.user(f"needle number {number}")
    index_sync()
    assert {h.line_no for h in entry_search(visible=None, query="needle", limit=2)} <= {
        4,
        5,
        6,
    }
    assert len(entry_search(visible=None, query="needle", limit=6)) == 6


@pytest.mark.parametrize(
    ("text", "query", "parts"),
    [
        (
            "the quick brown fox",
            "brown",
            [("the quick ", False), ("brown", True), (" fox", False)],
        ),
        (
            "we were inspecting it",
            "inspected",
            [("we were ", False), ("inspecting", True), (" it", False)],
        ),
        ("no hit here", "zebra", [("no hit here", False)]),
        (
            "x " * 100 + "needle end",
            "needle*",
            [("…", False), ("x " * 29, False), ("needle", True), (" end", False)],
        ),
    ],
)
def test_it_builds_snippets_around_the_first_match(text, query, parts) -> None:
    pattern = snippet_pattern(fts.fts_query_words(query))
    assert snippet_parts(text, pattern) == parts


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["SourceFile", "Session"])
def test_it_follows_orm_deletes_of_sources_and_sessions(claude_tree, model) -> None:
    from apps.indexing import models

    conversation_write(claude_tree)
    index_sync()
    getattr(models, model).objects.all().delete()
    assert models.Entry.objects.count() == 0
    assert fts.fts_row_count() == 0
    fts_integrity_check()
