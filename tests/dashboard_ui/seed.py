"""The seeded world of the dashboard tests: a small session with every kind of block."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from apps.proxy.bodies import body_encode
from apps.proxy.models import Exchange
from tests.factories import exchange_create

SESSION = "5e551011-aaaa-bbbb-cccc-000000000001"
OTHER_SESSION = "0dd5e551-aaaa-bbbb-cccc-000000000002"
HOSTILE = "<script>document.title='pwned';window.__pwned=1</script>"
EDIT_OLD = "def greet():\n    return 'hi'\n"
EDIT_NEW = "def greet(name):\n    return f'hi {name}'\n"
BASH_COMMAND = "pytest -q tests/test_greet.py"
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
    "RU5ErkJggg=="
)


def _first_turn() -> list[dict]:
    return [
        {"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>\nYou are in /repo.\n"
             "</system-reminder>"},
            {"type": "text", "text": "Make greet take a name, then run the tests."},
        ]},
    ]  # fmt: skip


def _second_turn() -> list[dict]:
    return [
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "The user wants a name parameter.",
             "signature": "sig"},
            {"type": "text", "text": "I'll edit greet.py:\n```python\ngreet('x')\n```"},
            {"type": "tool_use", "id": "toolu_edit", "name": "Edit", "input": {
                "file_path": "/repo/greet.py", "old_string": EDIT_OLD,
                "new_string": EDIT_NEW}},
            {"type": "tool_use", "id": "toolu_bash", "name": "Bash", "input": {
                "command": BASH_COMMAND, "description": "Run the greet tests"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_edit",
             "content": "The file /repo/greet.py has been updated."},
            {"type": "tool_result", "tool_use_id": "toolu_bash", "is_error": True,
             "content": f"1 failed: {HOSTILE}"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}},
        ]},
    ]  # fmt: skip


def _body(messages: list[dict]) -> bytes:
    return json.dumps({
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Project instructions...",
             "cache_control": {"type": "ephemeral"}},
        ],
        "tools": [
            {"name": "Bash", "description": "Run a shell command",
             "input_schema": {"type": "object", "properties": {
                 "command": {"type": "string"}}}},
            {"name": "Edit", "description": "Edit a file",
             "input_schema": {"type": "object"}},
        ],
        "messages": messages,
    }).encode()  # fmt: skip


SSE = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1"}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"All green."}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def world_seed(*, now: datetime) -> dict[str, Exchange]:
    """Create four finished exchanges in the last hour (two in one session)."""
    first = exchange_create(
        started_at=now - timedelta(minutes=50),
        session_id=SESSION,
        input_tokens=900, output_tokens=120, cache_write_5m_tokens=4000,
        request_body=body_encode(_body(_first_turn())),
        tools_called={"Edit": 1, "Bash": 1},
        ttfb_ms=300.0, duration_ms=1500.0,
    )  # fmt: skip
    second = exchange_create(
        started_at=now - timedelta(minutes=40),
        session_id=SESSION,
        input_tokens=1200, output_tokens=340, cache_read_tokens=5000,
        cache_write_5m_tokens=800,
        request_body=body_encode(_body(_first_turn() + _second_turn())),
        response_body=body_encode(SSE),
        response_message={"role": "assistant", "content": [
            {"type": "text", "text": "All green."}]},
        tools_called={"Bash": 1},
        request_headers=[["x-api-key", "sha256:ab12cd34"], ["anthropic-version",
                                                           "2023-06-01"]],
        response_headers=[["request-id", "req_seeded"]],
        request_id="req_seeded",
        ratelimits={"unified-status": "allowed", "unified-5h-utilization": 0.42},
        unified_status="allowed", unified_5h_utilization=0.42,
        unified_5h_reset=now + timedelta(hours=2),
        unified_7d_utilization=0.13, unified_7d_reset=now + timedelta(days=3),
        ttfb_ms=450.0, duration_ms=6000.0,
    )  # fmt: skip
    failed = exchange_create(
        started_at=now - timedelta(minutes=30),
        session_id=OTHER_SESSION,
        model="claude-opus-4-1-20250805", model_requested="claude-opus-4-1",
        state=Exchange.State.UPSTREAM_ERROR, status_code=529,
        error_type="overloaded_error", input_tokens=0, output_tokens=0,
        is_streaming=False, stop_reason="", ttfb_ms=900.0, duration_ms=950.0,
    )  # fmt: skip
    haiku = exchange_create(
        started_at=now - timedelta(minutes=20),
        session_id=OTHER_SESSION,
        model="claude-haiku-4-5-20251001", model_requested="claude-haiku-4-5",
        input_tokens=300, output_tokens=40, is_streaming=False,
        tools_called={"Read": 2},
        ttfb_ms=200.0, duration_ms=700.0,
    )  # fmt: skip
    return {"first": first, "second": second, "failed": failed, "haiku": haiku}
