"""Hostile and damaged sources: no line, file or link stops or misleads the indexer.

Each test writes a real ~/.claude-like tree under tmp and runs the real sync.
"""

from __future__ import annotations

import json
import tracemalloc
from io import BytesIO, StringIO

import pytest
from django.core.management import call_command

from apps.indexing.models import Entry, SourceFile, Todo
from apps.indexing.selectors import entry_search
from apps.indexing.services import index_sync
from apps.indexing.sources import lines_read, source_open
from tests.indexing.conftest import ClaudeTree, conversation_write, unreadable

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


def test_it_indexes_a_line_with_a_lone_surrogate(claude_tree):
    t = claude_tree.transcript()
    t.user("before")
    t.write(rb'{"type": "user", "uuid": "u\ud800", "message": {"role": "user",'
            rb' "content": "lone \udc00 surrogate"}}')  # fmt: skip
    t.user("after")
    report = index_sync()
    assert (report.entries_added, report.bad_lines) == (3, 0)
    [hit] = entry_search(visible=None, query="surrogate")
    assert hit.uuid == "u\ufffd"


def test_it_indexes_a_line_with_nul_characters_everywhere(claude_tree):
    # JSON may escape a NUL anywhere; PostgreSQL's text cannot hold one at all.
    t = claude_tree.transcript()
    t.write(
        b'{"type": "assistant", "uuid": "u\\u0000v", "requestId": "r\\u0000",'
        b' "message": {"role": "assistant", "model": "m\\u0000", "id": "x\\u0000",'
        b' "content": [{"type": "text", "text": "nul\\u0000byte here"},'
        b' {"type": "tool_use", "id": "t1", "name": "Ba\\u0000sh", "input": {}}]}}'
    )
    t.user("after the nul line")
    claude_tree.plan("nul-plan", "a plan\x00with a nul")
    report = index_sync()
    assert report.bad_lines == 0
    assert Entry.objects.count() == 3
    [hit] = entry_search(visible=None, query="nul byte")
    assert "byte here" in hit.snippet
    assert hit.uuid == "u\ufffdv"  # the stored line keeps the escape as written
    assert len(entry_search(visible=None, query="after")) == 1
    assert len(entry_search(visible=None, query="plan with")) == 1


def test_it_reports_the_hostile_line_from_the_command(claude_tree):
    t = claude_tree.transcript()
    t.write(DEEP)
    t.user("still indexed")
    err = StringIO()
    call_command("reindex", stdout=StringIO(), stderr=err)
    assert f"{t.path}:1: nested deeper than 200 levels" in err.getvalue()
    assert Entry.objects.get().type == "user"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\nbb\n", [(b"a", 1), (b"bb", 2)]),
        (b"abcd\n\nx", [(b"abcd", 4), (b"", 0)]),  # "x" is still being written
        (b"abcde\nab\n", [(None, 5), (b"ab", 2)]),
        (b"ab\n" + b"z" * 11 + b"\nabcd\n", [(b"ab", 2), (None, 11), (b"abcd", 4)]),
        (b"z" * 30 + b"\nok\n", [(None, 30), (b"ok", 2)]),
        (b"ok\n" + b"z" * 30, [(b"ok", 2)]),
    ],
)
def test_it_reads_lines_up_to_a_limit_in_chunks(data, expected):
    for chunk in (1, 3, 64):
        assert list(lines_read(BytesIO(data), limit=4, chunk=chunk)) == expected


def test_it_skips_a_line_over_the_limit_in_bounded_memory(claude_tree, settings):
    settings.CLAUDEMON_INDEX_MAX_LINE_MB = 1
    t = claude_tree.transcript()
    t.user("before the long line")
    big = {"type": "user", "message": {"role": "user", "content": "x" * 40_000_000}}
    line = json.dumps(big).encode()
    t.write(line)
    t.user("after the long line")

    tracemalloc.start()
    try:
        report = index_sync()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < 20_000_000  # the line is 40 MB: it streamed past, never held
    assert report.bad_lines == 1
    [problem] = report.problems
    assert (problem.path, problem.line) == (str(t.path), 2)
    assert f"line of {len(line):,} bytes is over the 1 MB limit" in problem.reason
    assert [e.line_no for e in Entry.objects.order_by("line_no")] == [1, 3]
    source = SourceFile.objects.get()
    assert (source.offset, source.bad_lines) == (t.path.stat().st_size, 1)


@pytest.mark.parametrize("full", [True, False])
def test_it_keeps_the_history_of_files_it_cannot_read(claude_tree, full):
    t = conversation_write(claude_tree)
    todo = claude_tree.todo(t.session_id, [{"content": "ship it", "status": "done"}])
    index_sync()
    # Replaced (a new inode): even an incremental pass reads it from the start.
    conversation_write(claude_tree).path.rename(t.path)
    todo.write_text('[{"content": "ship it twice", "status": "done"}]')

    with unreadable(t.path), unreadable(todo):
        report = index_sync(full=full)

    assert sorted((p.path, p.line) for p in report.problems) == [
        (str(t.path), 0),
        (str(todo), 0),
    ]
    assert Entry.objects.filter(source__path=str(t.path)).count() == 11
    assert list(Todo.objects.values_list("content", flat=True)) == ["ship it"]
    assert len(entry_search(visible=None, query="alembic downgrade")) == 1
    assert len(entry_search(visible=None, query="ship")) == 1
    assert "Permission denied" in report.problems[0].reason
    assert "its indexed history is kept" in report.problems[0].reason

    index_sync(full=full)  # readable again: read once more, nothing doubled
    assert Entry.objects.filter(source__path=str(t.path)).count() == 11
    assert list(Todo.objects.values_list("content", flat=True)) == ["ship it twice"]


def test_it_follows_no_symlink_out_of_the_claude_folder(claude_tree, tmp_path):
    outside = tmp_path / "elsewhere"
    secret = ClaudeTree(outside).transcript(cwd="/home/me/secret")
    secret.user("the hunter2 password")
    (outside / "key.json").write_text('[{"content": "hunter2 key", "status": "x"}]')
    (outside / "notes.md").write_text("hunter2 notes")
    mine = conversation_write(claude_tree)
    root = claude_tree.root
    (root / "todos").mkdir()
    links = {
        mine.path.parent / "linked.jsonl": secret.path,
        root / "projects" / "linked-folder": secret.path.parent,
        root / "todos" / "s-agent-s.json": outside / "key.json",
        root / "plans": outside,
        root / "history.jsonl": secret.path,
    }
    for link, target in links.items():
        link.symlink_to(target)

    report = index_sync()

    assert report.files_scanned == 1
    assert list(SourceFile.objects.values_list("path", flat=True)) == [str(mine.path)]
    assert entry_search(visible=None, query="hunter2") == []
    with pytest.raises(OSError):  # a link swapped in between scan and read
        source_open(str(mine.path.parent / "linked.jsonl"))
