"""Hostile and damaged sources: no line, file or link stops or misleads the indexer.

Each test writes a real ~/.claude-like tree under tmp and runs the real sync.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from apps.indexing.models import Entry, SourceFile, Todo
from apps.indexing.services import index_sync

pytestmark = pytest.mark.django_db

HUGE_INT = b'{"type": "user", "n": ' + b"9" * 5000 + b"}"
DEEP = b'{"type": "user", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def test_it_skips_a_huge_integer_and_a_deep_line_and_indexes_the_rest(claude_tree):
    t = claude_tree.transcript()
    t.user("before the hostile lines")
    t.write(HUGE_INT, DEEP)
    t.user("after the hostile lines")
    claude_tree.history({"display": "x", "sessionId": t.session_id})
    with open(claude_tree.root / "history.jsonl", "ab") as handle:
        handle.write(HUGE_INT + b"\n" + DEEP + b"\n")
    todo = claude_tree.todo(t.session_id, [])
    todo.write_bytes(b"[" * 100_000 + b"]" * 100_000)

    report = index_sync()

    assert report.bad_lines == 5
    history = str(claude_tree.root / "history.jsonl")
    assert [(p.path, p.line) for p in report.problems] == [
        (str(t.path), 2),
        (str(t.path), 3),
        (history, 2),
        (history, 3),
        (str(todo), 1),
    ]
    assert "Exceeds the limit (4300 digits)" in report.problems[0].reason
    assert "nested deeper than 200 levels" in report.problems[1].reason
    assert Entry.objects.filter(source__path=str(t.path)).count() == 2
    assert SourceFile.objects.get(path=str(t.path)).bad_lines == 2
    assert not Todo.objects.exists()


def test_it_reports_the_hostile_line_from_the_command(claude_tree):
    t = claude_tree.transcript()
    t.write(DEEP)
    t.user("still indexed")
    err = StringIO()
    call_command("reindex", stdout=StringIO(), stderr=err)
    assert f"{t.path}:1: nested deeper than 200 levels" in err.getvalue()
    assert Entry.objects.get().type == "user"
