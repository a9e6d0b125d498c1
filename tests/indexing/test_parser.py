from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from apps.indexing.parser import LineError, line_parse, title_clean, todos_parse


def _line(record: dict) -> bytes:
    return json.dumps(record).encode()


ASSISTANT_TOOL = {
    "type": "assistant",
    "uuid": "u2",
    "parentUuid": "u1",
    "requestId": "req_1",
    "timestamp": "2026-11-22T08:08:00.882Z",
    "sessionId": "s1",
    "cwd": "/w",
    "message": {
        "id": "msg_1",
        "role": "assistant",
        "model": "claude-opus-4-8",
        "content": [
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "Bash",
                "input": {"command": "echo hi", "description": "echo"},
            }
        ],
        "usage": {
            "input_tokens": 12,
            "output_tokens": 7,
            "cache_creation_input_tokens": 30,
            "cache_read_input_tokens": 40,
        },
    },
}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            {"type": "user", "message": {"role": "user", "content": "run echo hi"}},
            {"role": "user", "text": "run echo hi", "tools": []},
        ),
        (
            ASSISTANT_TOOL,
            {
                "role": "assistant",
                "text": "echo hi\necho",
                "tools": ["Bash"],
                "usage": (12, 7, 40, 30, 0),
                "request_id": "req_1",
                "message_id": "msg_1",
                "parent_uuid": "u1",
                "model": "claude-opus-4-8",
            },
        ),
        (
            {
                "type": "user",
                "message": {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "text", "text": "hi"}],
                        }
                    ],
                },
                "toolUseResult": {"agentId": "abc123"},
            },
            {
                "role": "tool",
                "text": "hi",
                "spawned_agent": "abc123",
                "tool_result_ids": ["toolu_1"],
            },
        ),
        (
            {
                "type": "assistant",
                "message": {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "thinking",
                            "thinking": "ponder deeply",
                            "signature": "zz",
                        }
                    ],
                },
            },
            {"text": "ponder deeply"},
        ),
        (
            {"type": "summary", "summary": "Fix the login bug", "leafUuid": "leaf"},
            {"text": "Fix the login bug", "parent_uuid": "leaf", "role": ""},
        ),
        (
            {"type": "custom-title", "customTitle": "My title"},
            {"title": "My title", "text": "My title"},
        ),
        ({"type": "ai-title", "aiTitle": "AI title"}, {"title": "AI title"}),
        (
            {"type": "queue-operation", "operation": "enqueue", "content": "x"},
            {"text": "", "type": "queue-operation"},
        ),
        (
            {"type": "cost-state", "whatever": {"nested": [1]}},
            {"type": "cost-state", "text": ""},
        ),
        (
            {
                "type": "assistant",
                "isApiErrorMessage": True,
                "message": {
                    "role": "assistant",
                    "model": "<synthetic>",
                    "content": "API Error",
                    "usage": {"input_tokens": 5, "output_tokens": 5},
                },
            },
            {"usage": (0, 0, 0, 0, 0)},
        ),
        (
            {
                "type": "assistant",
                "message": {
                    "role": "assistant",
                    "usage": {
                        "input_tokens": 1,
                        "cache_creation_input_tokens": 100,
                        "cache_creation": {
                            "ephemeral_5m_input_tokens": 60,
                            "ephemeral_1h_input_tokens": 40,
                        },
                    },
                },
            },
            {"usage": (1, 0, 0, 60, 40)},
        ),
        (
            {
                "type": "user",
                "isCompactSummary": True,
                "message": {"role": "user", "content": "This session is continued"},
            },
            {"is_compact_summary": True, "role": "user", "is_meta": False},
        ),
        (
            {"type": "user", "isCompactSummary": "yes", "message": {"role": "user"}},
            {"is_compact_summary": False},
        ),
        (
            {"type": "user", "message": "not a dict", "uuid": 12, "timestamp": "bogus"},
            {"uuid": "", "timestamp": None, "text": ""},
        ),
    ],
)
def test_it_parses_line_shapes(record: dict, expected: dict) -> None:
    parsed = line_parse(_line(record))
    for name, value in expected.items():
        assert getattr(parsed, name) == value, name


def test_it_parses_timestamps_to_utc() -> None:
    parsed = line_parse(
        _line({"type": "user", "timestamp": "2026-11-22T08:08:00.882Z"})
    )
    assert parsed.timestamp == datetime(2026, 11, 22, 8, 8, 0, 882000, tzinfo=UTC)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b"", b'{"a": '])
def test_it_rejects_lines_that_are_not_objects(raw: bytes) -> None:
    with pytest.raises(LineError):
        line_parse(raw)


DEEP = 100_000


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"n": ' + b"7" * 4301 + b"}", "malformed JSON (Exceeds the limit"),
        (b'{"a": ' + b"[" * DEEP + b"]" * DEEP + b"}", "nested deeper than 200"),
        (b'{"a": ' + b"[" * 300 + b"]" * 300 + b"}", "nested deeper than 200"),
        (b'{"a": ' + b'{"b": ' * 250 + b"1" + b"}" * 251, "nested deeper than 200"),
    ],
)
def test_it_turns_hostile_json_into_a_line_error(raw: bytes, reason: str) -> None:
    with pytest.raises(LineError, match=re.escape(reason)):
        line_parse(raw)


def test_it_keeps_brackets_inside_strings_and_ordinary_nesting() -> None:
    text = "def f(x): return [x[0]] + {1: [2]}[1] " * 100
    record = {"type": "user", "message": {"role": "user", "content": text}}
    record["deep"] = json.loads("[" * 150 + "]" * 150)
    assert line_parse(_line(record)).text == text


def test_it_replaces_lone_surrogates_and_keeps_escaped_pairs() -> None:
    raw = (
        b'{"type": "user", "uuid": "u\\ud800", "message": {"role": "user",'
        b' "content": "lone \\udc00 \\ud83d\\ude00"}}'
    )
    parsed = line_parse(raw)
    assert (parsed.uuid, parsed.text) == ("u\ufffd", "lone \ufffd \U0001f600")
    parsed.text.encode("utf-8")  # SQLite and every page can take it


def test_it_keeps_lines_with_invalid_utf8() -> None:
    raw = b'{"type": "user", "message": {"role": "user", "content": "caf\xe9 ok"}}'
    parsed = line_parse(raw)
    assert parsed.invalid_utf8 is True
    assert parsed.text == "caf\ufffd ok"


def test_it_trims_long_tool_output_for_the_index_only() -> None:
    output = "start " + "x" * 5_000_000 + " finish"
    record = {
        "type": "user",
        "message": {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t", "content": output}],
        },
    }
    parsed = line_parse(_line(record))
    assert parsed.text.startswith("start ")
    assert parsed.text.endswith(" finish")
    assert len(parsed.text) < 3000


def test_it_parses_a_20_mb_line() -> None:
    image = {"type": "image", "source": {"type": "base64", "data": "A" * 20_000_000}}
    record = {
        "type": "user",
        "message": {
            "role": "user",
            "content": [image, {"type": "text", "text": "what is in this picture"}],
        },
    }
    parsed = line_parse(_line(record))
    assert parsed.text == "what is in this picture"


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("  fix   the\nbug ", "fix the bug"),
        ("<command-name>/clear</command-name>", ""),
        ("Caveat: The messages below were generated", ""),
        ("x" * 300, "x" * 199 + "…"),
    ],
)
def test_it_cleans_titles(text: str, title: str) -> None:
    assert title_clean(text) == title


def test_it_parses_todo_documents() -> None:
    items = todos_parse(
        [
            {"content": "write tests", "status": "completed", "activeForm": "Writing"},
            {"subject": "newer task shape", "status": "pending"},
            "junk",
            {"status": "pending"},
        ]
    )
    assert items == [
        {"content": "write tests", "status": "completed", "active_form": "Writing"},
        {"content": "newer task shape", "status": "pending", "active_form": ""},
    ]
