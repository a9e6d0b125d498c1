"""The inspector: its pure body -> view-model transforms (tables of cases), and
its page reading bodies stored as a session's shared blocks."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from apps.dashboard import inspector
from apps.proxy.bodies import body_block_ids
from tests.factories import T0, exchange_create_shared


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", [("text", "hello")]),
        ("", []),
        (
            "see\n```python\nprint(1)\n```\nafter",
            [("text", "see\n"), ("code", "print(1)\n"), ("text", "\nafter")],
        ),
        (
            "<system-reminder>\nbe brief\n</system-reminder>\nHi",
            [("reminder", "be brief"), ("text", "\nHi")],
        ),
        ("```\nunclosed", [("code", "unclosed")]),
        ("a <system-reminder>open", [("text", "a "), ("reminder", "open")]),
    ],
)
def test_it_splits_text_into_code_and_reminders(text, expected):
    segments = inspector.text_segments(text)
    assert [(s["kind"], s["text"]) for s in segments] == expected


def test_it_keeps_the_code_block_language():
    [segment] = inspector.text_segments("```python\nx = 1\n```")
    assert segment["lang"] == "python"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("a\nb\n", "a\nc\n", [("@", None), (" ", "a"), ("-", "b"), ("+", "c")]),
        ("", "x", [("@", None), ("+", "x")]),
        ("x", "", [("@", None), ("-", "x")]),
        ("same", "same", []),
    ],
)
def test_it_diffs_edits_line_by_line(old, new, expected):
    lines = inspector.diff_lines(old, new)
    assert [(ln["op"], None if ln["op"] == "@" else ln["text"]) for ln in lines] == (
        expected
    )


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        (
            "Bash",
            {"command": "ls -la", "description": "List files", "timeout": 5000},
            {
                "view": "bash",
                "command": "ls -la",
                "description": "List files",
                "flags": [("timeout", "5000")],
            },
        ),
        (
            "Read",
            {"file_path": "/a.py", "offset": 10},
            {"view": "path", "path": "/a.py", "flags": [("offset", "10")]},
        ),
        (
            "Glob",
            {"pattern": "**/*.py"},
            {"view": "search", "pattern": "**/*.py", "path": "", "flags": []},
        ),
        (
            "Grep",
            {"pattern": "def x", "path": "src", "-i": True},
            {
                "view": "search",
                "pattern": "def x",
                "path": "src",
                "flags": [("-i", "true")],
            },
        ),
        (
            "Task",
            {"subagent_type": "reviewer", "description": "d", "prompt": "Check it"},
            {
                "view": "task",
                "agent": "reviewer",
                "description": "d",
                "prompt": "Check it",
            },
        ),
        (
            "Agent",
            {"prompt": "p"},
            {"view": "task", "agent": "", "description": "", "prompt": "p"},
        ),
        (
            "WebFetch",
            {"url": "https://x.test", "prompt": "sum"},
            {"view": "web", "target": "https://x.test", "prompt": "sum"},
        ),
        (
            "WebSearch",
            {"query": "django csp"},
            {"view": "web", "target": "django csp", "prompt": "", "flags": []},
        ),
        (
            "mcp__thing",
            {"a": 1, "b": "two"},
            {"view": "generic", "fields": [("a", "1"), ("b", "two")]},
        ),
        (
            "Bash",
            "not a dict",
            {"view": "bash", "command": "", "description": "", "flags": []},
        ),
    ],
)
def test_it_builds_purpose_made_tool_views(name, args, expected):
    view = inspector.tool_call_view({"type": "tool_use", "name": name, "input": args})
    assert {key: view[key] for key in expected} == expected
    assert view["name"] == name


def test_it_diffs_every_edit_of_a_multi_edit():
    view = inspector.tool_call_view(
        {
            "name": "MultiEdit",
            "input": {
                "file_path": "/f",
                "edits": [
                    {"old_string": "a", "new_string": "b"},
                    {"old_string": "c", "new_string": "d", "replace_all": True},
                ],
            },
        }
    )
    assert view["view"] == "edit"
    assert [
        [(ln["op"], ln["text"]) for ln in e["lines"][1:]] for e in view["edits"]
    ] == [
        [("-", "a"), ("+", "b")],
        [("-", "c"), ("+", "d")],
    ]
    assert [e["replace_all"] for e in view["edits"]] == [False, True]


def test_it_turns_todos_into_a_checklist_with_counts():
    view = inspector.tool_call_view(
        {
            "name": "TodoWrite",
            "input": {
                "todos": [
                    {"content": "one", "status": "completed", "activeForm": "x"},
                    {"content": "two", "status": "in_progress"},
                    {"content": "three", "status": "pending"},
                    {"content": "four", "status": "pending"},
                ]
            },
        }
    )
    assert [t["status"] for t in view["todos"]] == [
        "completed",
        "in_progress",
        "pending",
        "pending",
    ]
    assert view["counts"] == {"completed": 1, "in_progress": 1, "pending": 2}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
            {"src": "data:image/png;base64,iVBORw0KGgo=", "media_type": "image/png"},
        ),
        (
            {"type": "base64", "media_type": "text/html", "data": "PGI+"},
            {"problem": "image of type 'text/html' not shown"},
        ),
        (
            {"type": "base64", "media_type": "image/png", "data": '"><script>'},
            {"problem": "image data is not base64"},
        ),
        (
            {"type": "url", "url": "https://x.test/a.png"},
            {"url": "https://x.test/a.png"},
        ),
        (None, {"problem": "image without a source"}),
    ],
)
def test_it_shows_only_base64_images_as_data_uris(source, expected):
    shown = inspector.image_source(source)
    assert set(shown) == {"src", "url", "problem", "media_type"}
    assert {key: value for key, value in shown.items() if value} == expected


@pytest.mark.parametrize(
    ("content", "is_error", "long", "text"),
    [
        ("ok", False, False, "ok"),
        (
            [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            False,
            False,
            "a\nb",
        ),
        ("boom", True, False, "boom"),
        ("\n".join(str(i) for i in range(100)), False, True, None),
        ("x" * 5000, False, True, None),
        (None, False, False, ""),
    ],
)
def test_it_marks_errors_and_folds_long_tool_results(content, is_error, long, text):
    block = {
        "type": "tool_result",
        "tool_use_id": "t1",
        "content": content,
        "is_error": is_error,
    }
    view = inspector.tool_result_view(block, names={"t1": "Bash"})
    assert (view["tool"], view["is_error"], view["long"]) == ("Bash", is_error, long)
    if text is not None:
        assert view["text"] == text
    if long:
        assert view["preview"] and len(view["preview"]) <= 800


def _msg(role, *blocks):
    return {"role": role, "content": list(blocks)}


_T = {"type": "text", "text": "hi"}
_CACHED = {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}


@pytest.mark.parametrize(
    ("current", "previous", "start"),
    [
        ([_msg("user", _T)], None, 0),
        (
            [_msg("user", _T), _msg("assistant", _T), _msg("user", _T)],
            [_msg("user", _T)],
            1,
        ),
        # cache_control moved between turns: still the same message
        ([_msg("user", _T), _msg("assistant", _T)], [_msg("user", _CACHED)], 1),
        # history rewritten (compaction): everything is new
        ([_msg("user", {"type": "text", "text": "summary"})], [_msg("user", _T)], 0),
        ([_msg("user", _T)], [_msg("user", _T)], 1),
    ],
)
def test_it_finds_where_the_new_messages_start(current, previous, start):
    assert inspector.new_messages_start(current, previous) == start


def test_it_parses_the_raw_sse_events_of_a_stream():
    body = (
        b'event: message_start\ndata: {"type":"message_start"}\n\n'
        b"event: ping\ndata: {}\n\n"
        b'event: content_block_delta\r\ndata: {"delta":{"text":"Hi"}}\r\n\r\n'
        b"data: not json\n\n"
    )
    events = inspector.stream_events(body)
    assert [e["event"] for e in events] == [
        "message_start",
        "ping",
        "content_block_delta",
        "message",
    ]
    assert json.loads(events[2]["data"]) == {"delta": {"text": "Hi"}}
    assert events[3]["data"] == "not json"


def test_it_reads_a_request_body_whole():
    body = {
        "model": "claude-sonnet-4-5",
        "system": [
            {
                "type": "text",
                "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            }
        ],
        "tools": [
            {"name": "Bash", "description": "Run", "input_schema": {"type": "object"}}
        ],
        "messages": [
            _msg(
                "assistant",
                {
                    "type": "tool_use",
                    "id": "t9",
                    "name": "Bash",
                    "input": {"command": "ls"},
                },
            ),
            _msg(
                "user", {"type": "tool_result", "tool_use_id": "t9", "content": "a.py"}
            ),
            {"role": "user", "content": "plain string"},
        ],
    }
    view = inspector.request_view(body)
    assert view["system"][0]["cache"] == "ephemeral 1h"
    assert [t["name"] for t in view["tools"]] == ["Bash"]
    assert [m["role"] for m in view["messages"]] == ["assistant", "user", "user"]
    assert view["messages"][1]["blocks"][0]["tool"] == "Bash"
    assert view["messages"][2]["blocks"][0]["segments"][0]["text"] == "plain string"
    assert ("model", "claude-sonnet-4-5") in view["params"]


@pytest.mark.parametrize(
    "body", [None, [], "text", {"messages": "nope"}, {"system": 5}]
)
def test_it_never_fails_on_odd_bodies(body):
    view = inspector.request_view(body)
    assert view["messages"] == [] and view["tools"] == []


def test_it_accepts_a_plain_string_system_prompt():
    [block] = inspector.system_blocks("Be terse.")
    assert block["segments"][0]["text"] == "Be terse." and block["cache"] == ""


@pytest.mark.parametrize(
    ("data", "text", "truncated"),
    [
        (b'{"a":1}', '{\n  "a": 1\n}', False),
        (b"not json", "not json", False),
        (None, "", False),
    ],
)
def test_it_pretty_prints_raw_json_bodies(data, text, truncated):
    raw = inspector.raw_text(data)
    assert (raw["text"], raw["truncated"]) == (text, truncated)


def test_it_opens_on_what_is_new_when_bodies_are_session_blocks(user_client):
    session = "5e551011-0000-4000-8000-0000000000d1"
    first = [_msg("user", {"type": "text", "text": "Fix the flaky test " * 30})]
    second = [*first, _msg("assistant", {"type": "text", "text": "Done, all green."})]
    made = []
    for minute, messages in enumerate([first, second]):
        body = json.dumps({"model": "claude-sonnet-4-5", "messages": messages})
        made.append(
            exchange_create_shared(
                body=body.encode(),
                session_id=session,
                started_at=T0.replace(minute=minute),
            )
        )
    assert all(body_block_ids(exchange.request_body) for exchange in made)
    url = reverse("dashboard:exchange-detail", args=[made[1].pk])

    html = user_client.get(url).content.decode()
    raw = user_client.get(url, {"tab": "raw"}).content.decode()

    assert 'id="m0"' not in html and 'id="m1"' in html  # m0 was sent before
    assert "Done, all green." in html
    assert "Fix the flaky test" in raw
