"""Message assembly, usage, decoding and rate limits: tables of cases."""

from __future__ import annotations

import gzip
import json
import zlib

import brotli
import pytest
import zstandard

from apps.proxy.pricing import Usage
from apps.proxy.recorder import (
    content_decode,
    message_from_events,
    message_from_json,
    ratelimits_parse,
    request_facts,
    tools_called,
    usage_from_api,
)
from apps.proxy.sse import sse_events
from tests.fake_upstream import message_events


def test_it_takes_stream_usage_from_start_then_cumulative_deltas():
    stream = b"".join(message_events(text="hi", output_tokens=40))

    assembled = message_from_events(sse_events(stream.decode()))

    assert assembled.usage == Usage(
        input=25, output=40, cache_read=2000, cache_write_5m=60, cache_write_1h=40
    )
    assert assembled.message["stop_reason"] == "end_turn"
    assert assembled.message["content"] == [{"type": "text", "text": "hi"}]


def test_it_overwrites_usage_with_the_last_message_delta_only():
    events = [
        (
            "message_start",
            json.dumps(
                {
                    "type": "message_start",
                    "message": {
                        "id": "m",
                        "model": "x",
                        "usage": {"input_tokens": 10, "output_tokens": 1},
                    },
                }
            ),
        ),
        (
            "message_delta",
            json.dumps(
                {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 5}}
            ),
        ),
        (
            "message_delta",
            json.dumps(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "max_tokens"},
                    "usage": {"output_tokens": 9, "input_tokens": None},
                }
            ),
        ),
    ]

    assembled = message_from_events(events)

    assert (assembled.usage.input, assembled.usage.output) == (10, 9)
    assert assembled.message["stop_reason"] == "max_tokens"


def test_it_rebuilds_thinking_text_and_tool_use_blocks():
    stream = b"".join(
        message_events(
            text="ok",
            thinking="let me think",
            tool_use={
                "name": "Edit",
                "input": {"file_path": "/a.py", "old_string": "x", "new_string": "y"},
            },
        )
    )

    message = message_from_events(sse_events(stream.decode())).message

    thinking, text, tool = message["content"]
    assert thinking == {
        "type": "thinking",
        "thinking": "let me think",
        "signature": "sig==",
    }
    assert text["text"] == "ok"
    assert tool["input"] == {"file_path": "/a.py", "old_string": "x", "new_string": "y"}
    assert tools_called(message) == {"Edit": 1}


def test_it_keeps_unparseable_tool_input_and_tolerates_junk_events():
    events = [
        (
            "message_start",
            '{"type": "message_start", "message": {"id": "m", "usage": {}}}',
        ),
        (
            "content_block_start",
            '{"type": "content_block_start", "index": 0, '
            '"content_block": {"type": "tool_use", "name": "Bash", "input": {}}}',
        ),
        (
            "content_block_delta",
            '{"type": "content_block_delta", "index": 0, '
            '"delta": {"type": "input_json_delta", "partial_json": "{\\"a\\": "}}',
        ),
        ("content_block_stop", '{"type": "content_block_stop", "index": 0}'),
        ("mystery", "not json"),
        (
            "error",
            '{"type": "error", '
            '"error": {"type": "overloaded_error", "message": "busy"}}',
        ),
    ]

    assembled = message_from_events(events)

    assert assembled.message["content"][0]["input_unparsed"] == '{"a": '
    assert (assembled.error_type, assembled.error_message) == (
        "overloaded_error",
        "busy",
    )


@pytest.mark.parametrize(
    ("body", "error_type", "has_message"),
    [
        (
            b'{"type": "message", "id": "m", "content": [], '
            b'"usage": {"input_tokens": 3}}',
            "",
            True,
        ),
        (
            b'{"type": "error", "error": {"type": "not_found_error", "message": "no"}}',
            "not_found_error",
            False,
        ),
        (b"<html>bad gateway</html>", "", False),
        (b"[1, 2]", "", False),
        (b"", "", False),
    ],
)
def test_it_reads_non_streaming_bodies(body, error_type, has_message):
    assembled = message_from_json(body)

    assert assembled.error_type == error_type
    assert (assembled.message is not None) == has_message


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (
            {
                "input_tokens": 1,
                "output_tokens": 2,
                "cache_read_input_tokens": 3,
                "cache_creation_input_tokens": 10,
            },
            Usage(1, 2, 3, 10, 0),
        ),
        (
            {
                "cache_creation_input_tokens": 10,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 4,
                    "ephemeral_1h_input_tokens": 6,
                },
            },
            Usage(0, 0, 0, 4, 6),
        ),
        ({"input_tokens": None, "output_tokens": 5}, Usage(0, 5, 0, 0, 0)),
        (None, Usage()),
    ],
)
def test_it_maps_api_usage_and_splits_cache_writes(usage, expected):
    assert usage_from_api(usage) == expected


PLAIN = b"event: ping\ndata: {}\n\n" * 100


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [
        (gzip.compress(PLAIN), "gzip"),
        (zlib.compress(PLAIN), "deflate"),
        (brotli.compress(PLAIN), "br"),
        (zstandard.ZstdCompressor().compress(PLAIN), "zstd"),
        (PLAIN, "identity"),
        (PLAIN, ""),
        (gzip.compress(brotli.compress(PLAIN)), "br, gzip"),
    ],
)
def test_it_decodes_content_encodings(encoded, encoding):
    assert content_decode(encoded, encoding) == PLAIN


def test_it_decodes_what_it_can_of_a_truncated_body():
    encoded = gzip.compress(PLAIN)

    assert PLAIN.startswith(content_decode(encoded[: len(encoded) // 2], "gzip"))


def test_it_rejects_unknown_encodings():
    with pytest.raises(ValueError, match="compress"):
        content_decode(b"x", "compress")


def test_it_parses_rate_limit_headers():
    limits = ratelimits_parse(
        [
            (b"anthropic-ratelimit-unified-5h-utilization", b"0.42"),
            (b"anthropic-ratelimit-unified-5h-reset", b"1795000000"),
            (b"anthropic-ratelimit-unified-status", b"allowed_warning"),
            (b"anthropic-ratelimit-tokens-remaining", b"9000"),
            (b"anthropic-ratelimit-tokens-reset", b"2026-11-23T10:00:00Z"),
            (b"retry-after", b"30"),
            (b"x-other", b"1"),
        ]
    )

    assert limits == {
        "unified-5h-utilization": 0.42,
        "unified-5h-reset": "2026-11-18T11:06:40+00:00",
        "unified-status": "allowed_warning",
        "tokens-remaining": 9000,
        "tokens-reset": "2026-11-23T10:00:00+00:00",
        "retry-after": 30,
    }


@pytest.mark.parametrize(
    ("body", "facts"),
    [
        (
            b'{"model": "claude-opus-4-8", "stream": true, '
            b'"tools": [{"name": "Bash"}]}',
            {
                "model_requested": "claude-opus-4-8",
                "is_streaming": True,
                "tools_offered": ["Bash"],
            },
        ),
        (
            b'{"model": "m", "system": "plain string system", "messages": []}',
            {"model_requested": "m", "is_streaming": False, "tools_offered": []},
        ),
        (
            b'{"model": "m", "metadata": {"user_id": "{\\"session_id\\": \\"abc\\"}"}}',
            {
                "model_requested": "m",
                "is_streaming": False,
                "tools_offered": [],
                "session_id": "abc",
            },
        ),
        (
            b'{"metadata": {"user_id": '
            b'"user_x_account_y_session_12345678-1234-1234-1234-123456789012"}}',
            {
                "model_requested": "",
                "is_streaming": False,
                "tools_offered": [],
                "session_id": "12345678-1234-1234-1234-123456789012",
            },
        ),
        (b"not json", {}),
        (b"[]", {}),
        (b"", {}),
    ],
)
def test_it_reads_request_facts_without_failing(body, facts):
    assert request_facts(body) == facts


def test_it_decodes_events_one_by_one_when_one_is_not_json():
    events = [("a", '{"type": "ping"}'), ("b", "not json"), ("c", "1,2"), ("d", "[3]")]

    from apps.proxy.recorder import _payloads

    assert _payloads(events) == [{"type": "ping"}, None, None, [3]]
