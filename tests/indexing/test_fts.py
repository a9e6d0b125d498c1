from __future__ import annotations

import pytest
from django.db import connection

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


# Queries excluding a word, and with either of two, in each engine's raw syntax.
EXCLUDING = {"sqlite": "alembic NOT downgrade", "postgresql": "alembic -downgrade"}
EITHER = {
    "sqlite": '"alembic downgrade" OR invoices',
    "postgresql": '"alembic downgrade" or invoices',
}


@pytest.mark.django_db
def test_it_runs_raw_syntax_only_when_asked(claude_tree) -> None:
    conversation_write(claude_tree)
    index_sync()
    excluding = EXCLUDING[connection.vendor]
    raw = entry_search(visible=None, query=excluding, raw=True)
    assert len(raw) == 2
    # Read as words, the operator excludes nothing: what it finds is not in raw.
    words = entry_search(visible=None, query=excluding)
    assert {h.entry_id for h in words}.isdisjoint({h.entry_id for h in raw})
    either = entry_search(visible=None, query=EITHER[connection.vendor], raw=True)
    phrase, word = (
        entry_search(visible=None, query='"alembic downgrade"'),
        entry_search(visible=None, query="invoices"),
    )
    assert {h.entry_id for h in either} == {h.entry_id for h in phrase + word}
    assert phrase and word


@pytest.mark.sqlite_only("FTS5's syntax errors; websearch_to_tsquery has none")
@pytest.mark.django_db
def test_it_reports_raw_syntax_errors(claude_tree) -> None:
    conversation_write(claude_tree)
    index_sync()
    with pytest.raises(FtsQueryError, match="syntax error"):
        entry_search(visible=None, query="NEAR(", raw=True)


@pytest.mark.django_db
@pytest.mark.parametrize("query", HOSTILE)
def test_it_never_fails_on_hostile_raw_input_but_with_a_syntax_error(
    claude_tree, query: str
) -> None:
    conversation_write(claude_tree)
    index_sync()
    try:
        results = entry_search(visible=None, query=query, raw=True, limit=5)
    except FtsQueryError:
        assert connection.vendor == "sqlite"  # only FTS5's syntax can be wrong
    else:
        assert isinstance(results, list)


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


@pytest.mark.django_db
def test_it_ranks_a_prompt_above_tool_output_with_the_word_as_often(claude_tree):
    t = claude_tree.transcript()
    t.tool_result("toolu_1", "log: the kafka consumer lagged " + "ok " * 40)
    t.user("why does the kafka consumer lag?")
    t.assistant(
        [{"type": "text", "text": "the kafka consumer lags because " + "so " * 20}],
        message_id="m1",
        request_id="r1",
    )
    index_sync()
    hits = entry_search(visible=None, query="kafka")
    assert [h.role for h in hits] == ["user", "assistant", "tool"]
    assert [h.rank for h in hits] == sorted(h.rank for h in hits)  # lower is better


@pytest.mark.django_db
def test_it_keeps_markup_paths_and_control_characters_in_snippets_as_text(
    claude_tree,
) -> None:
    t = claude_tree.transcript()
    t.user("see <b>billing</b> in /srv/billing/app.py \x02 and \x03 <script>x</script>")
    index_sync()
    (hit,) = entry_search(visible=None, query="billing")
    assert [text for text, match in hit.snippet_parts if match] == ["billing"] * 2
    assert hit.snippet == (
        "see <b>billing</b> in /srv/billing/app.py \x02 and \x03 <script>x</script>"
    )
    assert (
        len(entry_search(visible=None, query="app py")) == 1
    )  # words of a path are words


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["the", "not", "if not", '"is not"'])
def test_it_finds_words_other_engines_drop_as_stop_words(claude_tree, query) -> None:
    t = claude_tree.transcript()
    t.user("this is not the answer")
    t.user("zebra")
    index_sync()
    assert len(entry_search(visible=None, query=query)) == (
        0 if query == "if not" else 1
    )


@pytest.mark.django_db
def test_it_searches_the_same_after_optimizing(claude_tree) -> None:
    conversation_write(claude_tree)
    index_sync()
    before = [(h.entry_id, h.rank) for h in entry_search(visible=None, query="alembic")]
    fts.fts_optimize()
    assert [
        (h.entry_id, h.rank) for h in entry_search(visible=None, query="alembic")
    ] == before
    fts_integrity_check()


# Each engine's raw syntax for a word without another.
WITHOUT = {"sqlite": "cafe NOT zebra", "postgresql": "cafe -zebra"}


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["cafe muller", "Café MÜLLER", "raw"])
def test_it_finds_words_with_or_without_their_accents(claude_tree, query):
    t = claude_tree.transcript()
    t.user("the café at Müllerstraße, run by Herr Müller")
    index_sync()
    raw = query == "raw"
    (hit,) = entry_search(
        visible=None, query=WITHOUT[connection.vendor] if raw else query, raw=raw
    )
    if query == "Café MÜLLER":  # highlighted as written (on SQLite, in Python)
        assert {"café", "Müller"} <= {
            text for text, match in hit.snippet_parts if match
        }


@pytest.mark.django_db
def test_it_reads_a_dotted_or_hyphenated_raw_word_as_a_phrase(claude_tree) -> None:
    t = claude_tree.transcript()
    t.user("edit app.py, then python")
    index_sync()
    raw = connection.vendor != "sqlite"  # FTS5's raw syntax has no dotted word
    assert len(entry_search(visible=None, query="app.py", raw=raw)) == 1
    assert entry_search(visible=None, query="py.app", raw=raw) == []
