"""Anthropic <-> OpenAI conversion, checked on real Claude Code request shapes."""

from __future__ import annotations

import json

import pytest

from apps.proxy.recorder import message_from_events
from apps.proxy.routing.convert import (
    request_to_openai,
    response_from_openai,
    schema_clean,
    tokens_estimate,
)
from apps.proxy.routing.providers import error_from_provider
from apps.proxy.routing.stream import StreamConverter, events_from_message
from apps.proxy.sse import sse_events
from tests.fake_openai import Turn, check_request, chunks, completion
from tests.fake_upstream import Received
from tests.proxy.routing.conftest import request_shape

SHAPES = [
    "cli_first_turn",
    "cli_tool_result",
    "cli_subagent",
    "derived_images_parallel_tools",
]


def convert(body: dict, **options) -> dict:
    settings = {
        "model": "gpt-test",
        "max_tokens_field": "max_tokens",
        "reasoning": False,
    }
    return request_to_openai(body, **(settings | options))


def strict_check(request: dict) -> str:
    """What the strict fake says of a request ('' when it would accept it)."""
    received = Received(
        "POST", "/v1/chat/completions", [], json.dumps(request).encode()
    )
    return check_request(received)[0]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reasoning", [False, True])
def test_it_converts_real_shapes_into_requests_a_strict_server_accepts(
    shape, reasoning
):
    converted = convert(request_shape(shape), reasoning=reasoning)

    assert strict_check(converted) == ""
    text = json.dumps(converted)
    assert "$schema" not in text and "cache_control" not in text
    for dropped in ("metadata", "context_management", "output_config", "thinking"):
        assert dropped not in converted
    assert "x-anthropic-billing-header" not in text


@pytest.mark.parametrize(
    ("request_body", "problem"),
    [
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "top_k": 4},
            "unrecognized field 'top_k'",
        ),
        (
            {"model": "m", "messages": [{"role": "human", "content": "x"}]},
            "messages[0]",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x", "cache": 1}]},
            "messages[0]",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {}}]}
                ],
            },
            "messages[0]",
        ),
        ({"messages": []}, "missing required field 'model'"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}]}
            | {"max_tokens": "9"},
            "max_tokens",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "a",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                            }
                        ],
                    },
                    {"role": "user", "content": "x"},
                ],
            },
            "were not answered",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "tool", "tool_call_id": "z", "content": "x"}],
            },
            "does not answer",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "content": None}]},
            "needs content",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}]}
            | {"tool_choice": "auto"},
            "tool_choice",
        ),
        ({"model": "m", "messages": []}, "must not be empty"),
    ],
)
def test_the_fake_server_rejects_what_the_real_api_rejects(request_body, problem):
    assert problem in strict_check(request_body)


def test_it_converts_a_cli_tool_result_turn_field_by_field():
    # Field by field on purpose: every converted field is asserted whole.
    body = request_shape("cli_tool_result")

    converted = convert(body)

    assert set(converted) == {
        "model", "messages", "max_tokens", "stream", "stream_options", "tools",
    }  # fmt: skip
    assert converted["model"] == "gpt-test"
    assert converted["max_tokens"] == 64000
    assert converted["stream"] is True
    assert converted["stream_options"] == {"include_usage": True}
    system, user, mid_system, assistant, tool = converted["messages"]
    assert system["role"] == "system"
    assert system["content"] == "\n\n".join(b["text"] for b in body["system"][1:])
    assert user == {
        "role": "user",
        "content": "\n\n".join(b["text"] for b in body["messages"][0]["content"]),
    }
    assert mid_system == {"role": "system", "content": body["messages"][1]["content"]}
    assert assistant == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "toolu_fake1",
                "type": "function",
                "function": {
                    "name": "Bash",
                    "arguments": json.dumps(
                        {
                            "command": "echo hi",
                            "description": "Run the requested command",
                        }
                    ),
                },
            }
        ],
    }
    assert tool == {"role": "tool", "tool_call_id": "toolu_fake1", "content": "hi"}
    assert [t["function"]["name"] for t in converted["tools"]] == [
        t["name"] for t in body["tools"]
    ]
    agent = converted["tools"][0]["function"]
    assert agent["description"] == body["tools"][0]["description"]
    expected = dict(body["tools"][0]["input_schema"])
    del expected["$schema"]
    assert agent["parameters"] == expected  # its "model" property is kept
    assert "model" in agent["parameters"]["properties"]


def test_it_converts_images_thinking_parallel_calls_and_errors_field_by_field():
    # Field by field on purpose: every converted message is asserted whole.
    body = request_shape("derived_images_parallel_tools")

    converted = convert(body)

    messages = converted["messages"]
    assert [m["role"] for m in messages] == [
        "system", "user", "assistant", "tool", "tool", "user", "system", "user",
    ]  # fmt: skip
    png = body["messages"][0]["content"][1]["source"]["data"]
    assert messages[1]["content"] == [
        {"type": "text", "text": body["messages"][0]["content"][0]["text"]},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/diagram.png"}},
        {"type": "text", "text": body["messages"][0]["content"][3]["text"]},
    ]
    assistant = messages[2]
    assert assistant["content"] == (
        "A one-pixel image and a diagram. Listing and reading now."
    )  # thinking and redacted_thinking dropped
    assert [c["id"] for c in assistant["tool_calls"]] == ["toolu_01Ls", "toolu_01Rd"]
    assert json.loads(assistant["tool_calls"][1]["function"]["arguments"]) == {
        "file_path": "/tmp/README.md"
    }
    assert messages[3] == {
        "role": "tool",
        "tool_call_id": "toolu_01Ls",
        "content": "README.md\nshot.png",
    }
    assert messages[4] == {
        "role": "tool",
        "tool_call_id": "toolu_01Rd",
        "content": "[tool error] File does not exist.",
    }
    assert messages[5]["content"] == [
        {"type": "text", "text": "Images returned by toolu_01Rd:"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
    ]
    assert messages[6] == {
        "role": "system",
        "content": "The user switched to plan mode.",
    }
    assert messages[7] == {"role": "user", "content": "Try again with cat."}
    assert converted["tool_choice"] == "required"
    assert "parallel_tool_calls" not in converted
    assert converted["stop"] == ["\n\nHuman:", "END", "STOP", "HALT"]  # four at most
    assert (converted["temperature"], converted["top_p"]) == (0.3, 0.9)
    assert "top_k" not in converted and "reasoning_effort" not in converted


@pytest.mark.parametrize(
    ("thinking", "output_config", "effort"),
    [
        ({"type": "adaptive"}, {"effort": "high"}, "high"),
        ({"type": "adaptive"}, {"effort": "max"}, "high"),
        ({"type": "adaptive"}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 2000}, None, "low"),
        ({"type": "enabled", "budget_tokens": 8000}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 32000}, {"effort": "low"}, "low"),
        ({"type": "disabled"}, {"effort": "high"}, None),
        (None, None, None),
    ],
)
def test_it_maps_thinking_to_reasoning_effort_only_when_the_provider_reasons(
    thinking, output_config, effort
):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    if thinking:
        body["thinking"] = thinking
    if output_config:
        body["output_config"] = output_config

    assert convert(body, reasoning=True).get("reasoning_effort") == effort
    assert "reasoning_effort" not in convert(body, reasoning=False)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "Bash"},
            {"tool_choice": {"type": "function", "function": {"name": "Bash"}}},
        ),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
    ],
)
def test_it_maps_tool_choice(choice, expected):
    tools = [{"name": "Bash", "input_schema": {"type": "object"}}]
    body = {"messages": [{"role": "user", "content": "x"}], "tools": tools}

    converted = convert(body | {"tool_choice": choice})

    assert {k: converted[k] for k in expected} == expected
    assert strict_check(converted) == ""


def test_it_drops_server_tools_and_a_choice_without_tools():
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "tool_choice": {"type": "any"},
    }

    converted = convert(body)

    assert "tools" not in converted and "tool_choice" not in converted
    assert strict_check(converted) == ""


def test_it_answers_a_tool_call_left_without_a_result():
    body = {
        "messages": [
            {"role": "user", "content": "run ls"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}
                ],
            },
            {"role": "user", "content": "never mind"},
        ]
    }

    converted = convert(body)

    assert converted["messages"][2] == {
        "role": "tool",
        "tool_call_id": "t1",
        "content": "(no result was returned)",
    }
    assert strict_check(converted) == ""


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"$schema": "x", "type": "object"}, {"type": "object"}),
        (
            {
                "type": "object",
                "properties": {"$schema": {"$schema": "y", "type": "string"}},
            },
            {"type": "object", "properties": {"$schema": {"type": "string"}}},
        ),
        (
            {
                "anyOf": [{"$schema": "z", "type": "string"}],
                "$defs": {"a": {"$schema": 1}},
            },
            {"anyOf": [{"type": "string"}], "$defs": {"a": {}}},
        ),
    ],
)
def test_it_removes_schema_keywords_but_not_property_names(schema, expected):
    assert schema_clean(schema) == expected


def test_it_converts_a_completion_with_parallel_tool_calls_and_cached_usage():
    request = {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}
    turn = Turn(
        text="Running both.",
        tool_calls=[
            {"id": "call_a", "name": "Bash", "arguments": '{"command": "ls"}'},
            {"id": "call_b", "name": "Read", "arguments": '{"file_path": "/x"}'},
        ],
    )

    message = response_from_openai(completion(request, turn), model="gpt-test")

    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["id"].startswith("msg_chatcmpl-")
    assert message["content"] == [
        {"type": "text", "text": "Running both."},
        {
            "type": "tool_use",
            "id": "call_a",
            "name": "Bash",
            "input": {"command": "ls"},
        },
        {
            "type": "tool_use",
            "id": "call_b",
            "name": "Read",
            "input": {"file_path": "/x"},
        },
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 100,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 20,
        "output_tokens": 15,
    }


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ],
)
def test_it_maps_finish_reasons(finish, stop_reason):
    request = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    payload = completion(request, Turn(text="t", finish_reason=finish))

    assert response_from_openai(payload, model="m")["stop_reason"] == stop_reason
    events = _converted_stream(
        chunks(request | {"stream": True}, Turn(text="t", finish_reason=finish))
    )
    assert events[-2][1]["delta"]["stop_reason"] == stop_reason


def _frames(items: list[dict], *, crlf: bool = False) -> bytes:
    newline = "\r\n" if crlf else "\n"
    text = "".join(f"data: {json.dumps(item)}{newline}{newline}" for item in items)
    return (text + f"data: [DONE]{newline}{newline}").encode()


def _converted_stream(items: list[dict], *, split: int = 7, crlf: bool = False):
    """Feed the provider's bytes in `split`-byte pieces; return (event, data) pairs."""
    converter = StreamConverter(model="gpt-test")
    data = _frames(items, crlf=crlf)
    out = converter.start()
    for at in range(0, len(data), split):
        out += converter.feed(data[at : at + split])
    assert converter.finished and converter.done
    out += converter.finish()
    return [(name, json.loads(payload)) for name, payload in sse_events(out.decode())]


@pytest.mark.parametrize("crlf", [False, True])
def test_it_streams_text_and_parallel_tool_calls_event_by_event(crlf):
    # Event by event on purpose: the whole sequence Claude Code reads.
    request = {"model": "gpt-test", "messages": [], "stream": True}
    request["stream_options"] = {"include_usage": True}
    turn = Turn(
        text="Let me check",
        tool_calls=[
            {"id": "call_a", "name": "Bash", "arguments": '{"command": "ls -la"}'},
            {"id": "call_b", "name": "Read", "arguments": '{"file_path": "/etc/x"}'},
        ],
    )

    events = _converted_stream(chunks(request, turn), crlf=crlf)

    names = [name for name, _ in events]
    assert names == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert all(name == data["type"] for name, data in events)
    start = events[0][1]["message"]
    assert (start["model"], start["content"], start["stop_reason"]) == (
        "gpt-test",
        [],
        None,
    )
    assert [e[1]["index"] for e in events if e[0].startswith("content_block")] == [
        0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
    ]  # fmt: skip
    assert events[7][1]["content_block"] == {
        "type": "tool_use", "id": "call_a", "name": "Bash", "input": {},
    }  # fmt: skip
    assert events[8][1]["delta"]["type"] == "input_json_delta"
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 100,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 20,
            "output_tokens": 15,
        },
    }
    rebuilt = message_from_events(sse_events("".join(
        f"event: {n}\ndata: {json.dumps(d)}\n\n" for n, d in events
    )))  # fmt: skip
    assert rebuilt.message["content"] == [
        {"type": "text", "text": "Let me check"},
        {
            "type": "tool_use",
            "id": "call_a",
            "name": "Bash",
            "input": {"command": "ls -la"},
        },
        {
            "type": "tool_use",
            "id": "call_b",
            "name": "Read",
            "input": {"file_path": "/etc/x"},
        },
    ]


def test_it_notices_a_stream_that_ends_early_or_reports_an_error():
    request = {"model": "gpt-test", "messages": [], "stream": True}
    items = chunks(request, Turn(text="partial answer"))
    converter = StreamConverter(model="gpt-test")
    converter.feed(_frames(items[:2]).replace(b"data: [DONE]\n\n", b""))
    assert not converter.finished

    failing = StreamConverter(model="gpt-test")
    error = {"error": {"message": "model crashed", "type": "server_error"}}
    failing.feed(_frames([items[0], error]))
    assert failing.error == error["error"]


def test_it_turns_a_whole_message_into_the_same_events_as_a_stream():
    request = {"model": "gpt-test", "messages": []}
    turn = Turn(text="hi", tool_calls=[{"id": "c", "name": "Bash", "arguments": "{}"}])
    message = response_from_openai(completion(request, turn), model="gpt-test")

    rebuilt = message_from_events(sse_events(events_from_message(message).decode()))

    assert rebuilt.message["content"] == message["content"]
    assert rebuilt.message["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("status", "expected_status", "kind"),
    [
        (400, 400, "invalid_request_error"),
        (401, 403, "permission_error"),
        (404, 404, "not_found_error"),
        (422, 400, "invalid_request_error"),
        (429, 429, "rate_limit_error"),
        (500, 500, "api_error"),
        (502, 529, "overloaded_error"),
        (503, 529, "overloaded_error"),
        (504, 529, "overloaded_error"),
        (507, 529, "overloaded_error"),
        (418, 400, "invalid_request_error"),
    ],
)
def test_it_maps_provider_errors_to_anthropic_statuses(status, expected_status, kind):
    body = json.dumps({"error": {"message": "no luck", "type": "x"}}).encode()

    mapped, error = error_from_provider(status, body, provider="local")

    assert mapped == expected_status
    assert error == {
        "type": "error",
        "error": {"type": kind, "message": f"local answered {status}: no luck"},
    }


def test_it_estimates_tokens_from_characters():
    body = {"system": "s" * 400, "messages": [{"role": "user", "content": "x" * 4000}]}

    assert 1000 < tokens_estimate(body) < 1200
