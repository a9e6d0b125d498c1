"""Message assembly, usage, decoding and rate limits: tables of cases."""

from __future__ import annotations

import gzip
import json
import uuid
import zlib
from datetime import UTC, datetime

import brotli
import pytest
import zstandard

from apps.proxy.bodies import body_decode
from apps.proxy.pricing import Usage
from apps.proxy.recorder import (
    Call,
    call_finish_row,
    call_start_row,
    content_decode,
    event_payloads,
    headers_redact,
    message_from_events,
    message_from_json,
    query_redact,
    ratelimits_parse,
    request_facts,
    secret_fingerprint,
    tools_called,
    usage_from_api,
)
from apps.proxy.spill import step_line, step_read
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
        (
            b"not json",
            {
                "request_body_note": "not parsed as JSON: Expecting value: "
                "line 1 column 1 (char 0)"
            },
        ),
        (b"[]", {}),
        (b"", {}),
    ],
)
def test_it_reads_request_facts_without_failing(body, facts):
    assert request_facts(body) == facts


def test_it_decodes_events_one_by_one_when_one_is_not_json():
    events = [("a", '{"type": "ping"}'), ("b", "not json"), ("c", "1,2"), ("d", "[3]")]

    assert event_payloads(events) == [{"type": "ping"}, None, None, [3]]


@pytest.mark.parametrize(
    ("query", "stored"),
    [
        ("", ""),
        ("beta=true", "beta=true"),
        ("beta=true&key=abc", f"beta=true&key={secret_fingerprint('abc')}"),
        ("api_key=abc&x=1", f"api_key={secret_fingerprint('abc')}&x=1"),
        ("ACCESS_TOKEN=abc", f"ACCESS_TOKEN={secret_fingerprint('abc')}"),
        ("token=a%2Bb", f"token={secret_fingerprint('a+b')}"),
        ("key=", "key="),
        ("key", "key"),
        ("monkey=abc&keys=1", "monkey=abc&keys=1"),
        (f"key={secret_fingerprint('abc')}", f"key={secret_fingerprint('abc')}"),
    ],
)
def test_it_hides_secret_query_parameters(query, stored):
    assert query_redact(query) == stored


def test_it_redacts_headers_once_however_often_asked():
    headers = [(b"x-api-key", b"sk-ant-1"), (b"authorization", b"Bearer sk-ant-2")]

    once = headers_redact(headers)
    twice = headers_redact([(n.encode(), v.encode()) for n, v in once])

    assert twice == once


def test_it_notes_a_request_body_it_cannot_parse_and_keeps_going():
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000

    assert "nested too deeply" in request_facts(deep)["request_body_note"]
    assert "not parsed as JSON" in request_facts(b"not json")["request_body_note"]
    assert message_from_json(deep).message is None
    assert event_payloads([("a", "[" * 100_000)]) == [None]


def test_it_stores_a_body_over_the_cap_cut_with_its_size_and_a_note():
    call = Call(
        uid=uuid.uuid4(),
        started_at=datetime(2026, 11, 20, tzinfo=UTC),
        t0=0.0,
        method="POST",
        path="/v1/messages",
        query="",
        request_headers=[],
        request_body=b'{"model": "m", "pad": "' + b"x" * 5000 + b'"}',
        status_code=200,
        chunks=[b"y" * 3000, b"z" * 3000],
    )

    start = call_start_row(call, max_body=1024)
    finish = call_finish_row(call, max_body=1024)

    assert body_decode(start["request_body"]) == call.request_body[:1024]
    assert start["request_size"] == len(call.request_body)
    assert "model_requested" not in start  # a cut body is not guessed at
    assert "first 1,024 of 5,025 bytes" in start["request_body_note"]
    assert body_decode(finish["response_body"]) == b"y" * 1024
    assert finish["response_size"] == 6000
    assert "first 1,024 of 6,000 bytes" in finish["response_body_note"]


KEY = "sk-ant-api03-key"
SPOOF = secret_fingerprint("someone-elses-key")  # a value shaped as a fingerprint


@pytest.mark.parametrize(
    ("headers", "credential"),
    [
        ([(b"x-api-key", KEY.encode())], secret_fingerprint(KEY)),
        ([(b"authorization", f"Bearer {KEY}".encode())], secret_fingerprint(KEY)),
        ([(b"authorization", f"bearer  {KEY} ".encode())], secret_fingerprint(KEY)),
        # x-api-key first, as the upstream reads it
        ([(b"authorization", b"Bearer other"), (b"x-api-key", KEY.encode())],
         secret_fingerprint(KEY)),
        ([(b"x-api-key", SPOOF.encode())], secret_fingerprint(SPOOF)),  # hashed
        ([(b"authorization", b"Bearer " + SPOOF.encode())], secret_fingerprint(SPOOF)),
        ([(b"authorization", b"Basic dXNlcjpwdw==")],
         secret_fingerprint("Basic dXNlcjpwdw==")),
        ([(b"user-agent", b"claude-cli")], ""),
        ([(b"x-api-key", b"  ")], ""),
    ],
)  # fmt: skip
def test_it_records_the_fingerprint_of_the_credential_a_call_was_sent_with(
    headers, credential
):
    call = Call(
        uid=uuid.uuid4(), started_at=datetime(2026, 11, 20, tzinfo=UTC), t0=0.0,
        method="POST", path="/v1/messages", query="", request_headers=headers,
        request_body=b"{}",
    )  # fmt: skip
    assert call_start_row(call)["credential"] == credential
    # Read back from a spill file (headers fingerprinted on the way): the same.
    _, replayed = step_read(step_line("start", call))
    assert call_start_row(replayed)["credential"] == credential


def test_it_keeps_the_header_fingerprint_of_a_spill_line_without_a_credential():
    # Written by a relay from before lines carried the credential.
    call = Call(
        uid=uuid.uuid4(), started_at=datetime(2026, 11, 20, tzinfo=UTC), t0=0.0,
        method="POST", path="/v1/messages", query="",
        request_headers=[(b"x-api-key", KEY.encode())], request_body=b"{}",
    )  # fmt: skip
    record = json.loads(step_line("start", call))
    del record["credential"]
    _, replayed = step_read(json.dumps(record).encode())
    assert call_start_row(replayed)["credential"] == secret_fingerprint(KEY)
