from __future__ import annotations

import os

import pytest

from apps.indexing.fts import fts_integrity_check, fts_row_count
from apps.indexing.models import Entry, Plan, Project, Session, SourceFile, Todo
from apps.indexing.selectors import entry_raw, entry_search
from apps.indexing.services import index_sync
from tests.indexing.conftest import conversation_write

pytestmark = pytest.mark.django_db


def test_it_indexes_a_session_with_exact_totals(claude_tree) -> None:
    t = conversation_write(claude_tree)
    report = index_sync()
    assert (report.files_scanned, report.files_changed, report.entries_added) == (
        1,
        1,
        11,
    )
    assert report.bad_lines == 0
    session = Session.objects.get()
    assert session.session_id == t.session_id
    assert (
        session.project.path == "/home/me/my_proj"
    )  # from cwd, not "-home-me-my-proj"
    assert session.title == "plan the migration rollback for the billing service"
    assert session.title_source == "prompt"
    assert (session.entry_count, session.user_count, session.assistant_count) == (
        11,
        1,
        2,
    )
    assert session.tool_call_count == 1
    # msg_01 counted once though written on two lines; the <synthetic> error never.
    assert (
        session.input_tokens,
        session.output_tokens,
        session.cache_read_tokens,
        session.cache_write_5m_tokens,
        session.cache_write_1h_tokens,
    ) == (1250, 320, 12000, 1500, 500)
    # Sonnet 4.5: 3 in, 15 out, 0.30 read, 3.75 5m write, 6 1h write per million.
    assert session.cost_usd == pytest.approx(0.018225 + 0.00255)
    assert (session.cli_version, session.git_branch) == ("2.1.197", "main")
    fts_integrity_check()


def test_it_keeps_each_original_line_byte_for_byte(claude_tree) -> None:
    t = conversation_write(claude_tree)
    index_sync()
    lines = t.path.read_bytes().split(b"\n")[:-1]
    stored = [entry_raw(entry=e) for e in Entry.objects.order_by("line_no")]
    assert stored == lines


@pytest.mark.parametrize(
    ("extra", "title", "source"),
    [
        (
            [
                {"type": "custom-title", "customTitle": "Billing rollback"},
                {"type": "ai-title", "aiTitle": "Ignored"},
            ],
            "Billing rollback",
            "custom",
        ),
        (
            [
                {"type": "ai-title", "aiTitle": "First"},
                {"type": "ai-title", "aiTitle": "Last"},
            ],
            "Last",
            "ai",
        ),
    ],
)
def test_it_titles_sessions_by_the_reference_rules(claude_tree, extra, title, source):
    t = conversation_write(claude_tree)
    for record in extra:
        t.other(**record)
    index_sync()
    session = Session.objects.get()
    assert (session.title, session.title_source) == (title, source)


def test_it_titles_by_the_summary_of_a_leaf_in_the_session(claude_tree) -> None:
    t = conversation_write(claude_tree)
    other = claude_tree.transcript()
    other.other(
        type="summary", summary="Billing migration rollback", leafUuid=t.last_uuid
    )
    other.other(type="summary", summary="Not ours", leafUuid="no-such-uuid")
    index_sync()
    session = Session.objects.get(session_id=t.session_id)
    assert (session.title, session.title_source) == (
        "Billing migration rollback",
        "summary",
    )


def test_it_reads_only_appended_bytes_and_waits_for_a_partial_line(claude_tree) -> None:
    t = conversation_write(claude_tree)
    index_sync()
    t.user("second prompt about kafka")
    with open(t.path, "ab") as handle:
        handle.write(b'{"type": "user", "message": {"role": "user", "content": "half')
    report = index_sync()
    assert (report.files_changed, report.entries_added, report.bad_lines) == (1, 1, 0)
    with open(t.path, "ab") as handle:
        handle.write(b' done"}, "uuid": "tail"}\n')
    report = index_sync()
    assert report.entries_added == 1
    assert Entry.objects.count() == 13
    assert Entry.objects.get(uuid="tail").line_no == 13
    assert Session.objects.get().user_count == 3
    assert index_sync().files_changed == 0


def test_it_reports_bad_lines_with_file_and_line_and_indexes_the_rest(claude_tree):
    t = claude_tree.transcript()
    t.user("first good line")
    t.write(b"{broken json", b"[1, 2, 3]")
    t.write(b'{"type": "user", "message": {"role": "user", "content": "caf\xe9"}}')
    t.user("last good line")
    report = index_sync()
    assert report.entries_added == 3
    assert report.bad_lines == 2
    assert [(p.path, p.line) for p in report.problems] == [
        (str(t.path), 2),
        (str(t.path), 3),
        (str(t.path), 4),
    ]
    assert "malformed JSON" in report.problems[0].reason
    assert "invalid UTF-8" in report.problems[2].reason
    assert SourceFile.objects.get().bad_lines == 2


def test_it_rereads_a_truncated_file_from_the_start(claude_tree) -> None:
    t = conversation_write(claude_tree)
    index_sync()
    t.path.write_text("")
    t.user("rewritten kafka prompt")
    report = index_sync()
    assert report.entries_added == 1
    assert Entry.objects.count() == 1
    assert entry_search(visible=None, query="alembic") == []
    assert len(entry_search(visible=None, query="kafka")) == 1


def test_it_rereads_a_replaced_file_of_the_same_size(claude_tree) -> None:
    t = conversation_write(claude_tree)
    index_sync()
    data = t.path.read_bytes()
    replacement = t.path.with_suffix(".tmp")
    replacement.write_bytes(data.replace(b"billing", b"payroll"))
    os.replace(replacement, t.path)
    index_sync()
    assert Entry.objects.count() == 11
    assert entry_search(visible=None, query="billing") == []
    assert len(entry_search(visible=None, query="payroll")) == 1


def test_it_rereads_a_file_rewritten_in_place(claude_tree) -> None:
    t = conversation_write(claude_tree)
    index_sync()
    data = t.path.read_bytes()
    with open(t.path, "r+b") as handle:  # same inode, new head, longer
        handle.write(data.replace(b"billing", b"payroll") + data[:0])
        handle.write(
            b'{"type": "user", "message": {"role": "user", "content": "more"}}\n'
        )
    index_sync()
    assert Entry.objects.count() == 12
    assert entry_search(visible=None, query="billing") == []


def test_it_keeps_history_of_deleted_files_unless_pruned(claude_tree) -> None:
    t = conversation_write(claude_tree)
    index_sync()
    t.path.unlink()
    report = index_sync()
    assert report.files_missing == 1
    assert SourceFile.objects.get().missing is True
    assert Entry.objects.count() == 11
    assert len(entry_search(visible=None, query="billing")) == 1
    report = index_sync(prune=True)
    assert report.files_pruned == 1
    assert (
        Entry.objects.count(),
        Session.objects.count(),
        Project.objects.count(),
    ) == (0, 0, 0)
    assert fts_row_count() == 0
    fts_integrity_check()


def test_it_rebuilds_with_full_without_duplicates(claude_tree) -> None:
    conversation_write(claude_tree)
    index_sync()
    report = index_sync(full=True)
    assert report.entries_added == 11
    assert Entry.objects.count() == 11
    assert len(entry_search(visible=None, query="billing")) == 1
    fts_integrity_check()


@pytest.mark.parametrize("layout", ["old", "new"])
def test_it_attaches_subagents_in_both_layouts(claude_tree, layout: str) -> None:
    parent = claude_tree.transcript()
    parent.user("review the code")
    parent.assistant(
        [
            {
                "type": "tool_use",
                "id": "toolu_t",
                "name": "Task",
                "input": {"prompt": "review auth.py", "description": "review"},
            }
        ],
        message_id="msg_p",
        request_id="req_p",
    )
    sub = claude_tree.subagent(parent, agent_id="a1b2c3", layout=layout)
    sub.user("review auth.py")
    sub.assistant(
        [{"type": "text", "text": "auth.py looks fine"}],
        message_id="msg_s",
        request_id="req_s",
        usage={"input_tokens": 7, "output_tokens": 3},
    )
    spawn = parent.user(
        [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_t",
                "content": "auth.py looks fine",
            }
        ],
        toolUseResult={"status": "completed", "agentId": "a1b2c3"},
    )
    index_sync()
    child = Session.objects.get(session_id="agent-a1b2c3")
    assert child.is_subagent and child.parent.session_id == parent.session_id
    assert child.spawn_uuid == spawn["uuid"]
    assert (child.entry_count, child.input_tokens, child.output_tokens) == (2, 7, 3)
    assert child.title == "review auth.py"
    assert Session.objects.get(session_id=parent.session_id).entry_count == 3


def test_it_indexes_todos_plans_and_history(claude_tree) -> None:
    t = conversation_write(claude_tree)
    claude_tree.todo(
        t.session_id,
        [
            {
                "content": "write the rollback script",
                "status": "in_progress",
                "activeForm": "Writing",
            },
            {"content": "run staging", "status": "pending", "activeForm": "Running"},
        ],
    )
    claude_tree.todo("other", [])
    claude_tree.plan("brave-otter", "# Plan\nMove invoices to the zanzibar queue.")
    claude_tree.history(
        {
            "display": "plan the migration",
            "timestamp": 1763600000000,
            "project": "/home/me/my_proj",
            "sessionId": t.session_id,
        }
    )
    report = index_sync()
    assert report.files_scanned == 5
    assert list(Todo.objects.values_list("content", "status")) == [
        ("write the rollback script", "in_progress"),
        ("run staging", "pending"),
    ]
    assert Plan.objects.get().slug == "brave-otter"
    (plan_hit,) = entry_search(visible=None, query="zanzibar")
    assert plan_hit.type == "plan"
    (todo_hit,) = entry_search(visible=None, query="staging")
    assert (todo_hit.type, todo_hit.session_id) == ("todo", t.session_id)
    assert Entry.objects.filter(type="history").count() == 1
    assert Session.objects.get().entry_count == 11  # todo/history are not its lines
    claude_tree.todo(t.session_id, [{"content": "done", "status": "completed"}])
    index_sync()
    assert list(Todo.objects.values_list("content", flat=True)) == ["done"]
    assert entry_search(visible=None, query="staging") == []


def test_it_reports_a_uuid_seen_in_another_file_and_keeps_both(claude_tree) -> None:
    t = conversation_write(claude_tree)
    copy = claude_tree.transcript()
    copy.write(t.path.read_bytes().split(b"\n")[1])
    report = index_sync()
    assert report.entries_added == 12
    assert report.bad_lines == 0
    assert any("duplicate uuid" in p.reason for p in report.problems)


def test_it_discovers_config_roots(tmp_path, settings, monkeypatch) -> None:
    from apps.indexing.sources import config_roots

    a, b, home = tmp_path / "a", tmp_path / "b", tmp_path / "home"
    for folder in (a, b, home / ".claude", home / ".config" / "claude"):
        folder.mkdir(parents=True)
    settings.CLAUDEMON_CLAUDE_DIRS = []
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", f"{a}, {tmp_path / 'missing'},{b}")
    assert config_roots() == [a, b, home / ".claude", home / ".config" / "claude"]
    settings.CLAUDEMON_CLAUDE_DIRS = [str(b)]
    assert config_roots() == [b]


def test_it_indexes_a_20_mb_line_whole(claude_tree) -> None:
    t = claude_tree.transcript()
    t.user("before the picture")
    image = {"type": "image", "source": {"type": "base64", "data": "QUJD" * 5_000_000}}
    big = t.user([image, {"type": "text", "text": "describe this zanzibar picture"}])
    t.user("after the picture")
    report = index_sync()
    assert (report.entries_added, report.bad_lines) == (3, 0)
    entry = Entry.objects.get(uuid=big["uuid"])
    assert len(entry_raw(entry=entry)) > 20_000_000
    assert entry_raw(entry=entry) == t.path.read_bytes().split(b"\n")[1]
    assert [h.uuid for h in entry_search(visible=None, query="zanzibar")] == [
        big["uuid"]
    ]


RELEASE_EXTRAS = {
    # Older releases: sidechain lines and a summary of the previous session on top.
    "2.1.112": [
        {"type": "summary", "summary": "Earlier work", "leafUuid": "elsewhere"},
        {
            "type": "user",
            "isSidechain": True,
            "uuid": "side-1",
            "message": {"role": "user", "content": "sidechain prompt"},
        },
    ],
    "2.1.197": [
        {"type": "file-history-snapshot", "messageId": "m", "snapshot": {}},
        {"type": "permission-mode", "permissionMode": "default"},
        {
            "type": "system",
            "subtype": "compact_boundary",
            "content": "compacted",
            "compactMetadata": {
                "trigger": "auto",
                "preTokens": 150000,
                "postTokens": 9000,
            },
        },
    ],
    # 2.1.33x writes request shapes, blobs and cost state beside the conversation.
    "2.1.330": [
        {"type": "api-request-shape", "shape": {"tools": 20, "system": 3}},
        {"type": "api-request-blob", "blob": "eyJhIjoxfQ==" * 100},
        {"type": "api-request", "requestId": "req_shape", "bytes": 120000},
        {"type": "tools-used", "tools": ["Bash", "Read"]},
        {"type": "cost-state", "totalCostUsd": 1.25},
        {"type": "progress", "data": {"type": "agent_progress", "agentId": "x"}},
    ],
}


@pytest.mark.parametrize("version", sorted(RELEASE_EXTRAS))
def test_it_indexes_the_line_shapes_of_each_release(claude_tree, version) -> None:
    t = conversation_write(claude_tree, version=version)
    for record in RELEASE_EXTRAS[version]:
        t.other(**record)
    report = index_sync()
    extras = len(RELEASE_EXTRAS[version])
    assert (report.entries_added, report.bad_lines) == (11 + extras, 0)
    session = Session.objects.get()
    assert (session.entry_count, session.cli_version) == (11 + extras, version)
    assert (session.input_tokens, session.output_tokens) == (1250, 320)
    assert session.title == "plan the migration rollback for the billing service"
    kinds = set(Entry.objects.values_list("type", flat=True))
    assert {r["type"] for r in RELEASE_EXTRAS[version]} <= kinds
    # Unknown shapes are kept whole but add nothing to search.
    assert entry_search(visible=None, query="eyJhIjoxfQ") == []
    fts_integrity_check()
