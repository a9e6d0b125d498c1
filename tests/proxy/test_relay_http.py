"""The relay's HTTP semantics, driven with raw httpx against a real daphne process."""

from __future__ import annotations

import gzip
import json
import threading

import brotli
import httpx
import pytest
import zstandard

from apps.proxy.bodies import body_decode
from apps.proxy.models import Exchange
from tests.fake_upstream import Reply, message_events
from tests.proxy.conftest import recorded

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("POST", "/v1/messages?beta=true"),
        ("POST", "/v1/messages/count_tokens?beta=true"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/claude-opus-4-8?x=1&y=%20z"),
        ("HEAD", "/"),
        ("POST", "/api/event_logging/batch"),
        ("DELETE", "/v1/files/file_123"),
        ("GET", "/admin/"),
        ("GET", "/api/stats/summary"),
    ],
)
def test_it_relays_every_method_and_path_with_the_query_intact(
    relay, upstream, method, target
):
    response = httpx.request(
        method, relay.url + target, content=b"{}" if method == "POST" else None
    )

    assert response.status_code == 200
    assert [(r.method, r.target) for r in upstream.requests] == [(method, target)]


def test_it_keeps_a_path_prefix_of_the_upstream_url(relay_factory, upstream):
    prefixed = relay_factory(CLAUDEMON_UPSTREAM_URL=upstream.url + "/proxy/abc")

    httpx.post(prefixed.url + "/v1/messages/count_tokens?beta=true", content=b"{}")

    assert (
        upstream.requests[0].target == "/proxy/abc/v1/messages/count_tokens?beta=true"
    )


def test_it_answers_only_health_itself(relay, upstream):
    report = httpx.get(relay.url + "/health").json()

    assert report["status"] == "ok"
    assert report["upstream"] == upstream.url
    assert report["database"] == "ok"
    assert report["recording_backlog"] == 0
    assert upstream.requests == []


def test_it_passes_request_headers_through_except_hop_by_hop(relay, upstream):
    httpx.post(
        relay.url + "/v1/messages/count_tokens",
        content=b"{}",
        headers=[
            ("x-api-key", "sk-ant-api03-abc"),
            ("authorization", "Bearer sk-ant-oat01-xyz"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "oauth-2025-04-20,interleaved-thinking-2025-05-14"),
            ("x-stainless-retry-count", "0"),
            ("x-custom", "one"),
            ("x-custom", "two"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("connection", "keep-alive, x-drop-me"),
            ("x-drop-me", "named by Connection"),
        ],
    )

    seen = upstream.requests[0]
    assert seen.header("x-api-key") == "sk-ant-api03-abc"
    assert seen.header("authorization") == "Bearer sk-ant-oat01-xyz"
    assert seen.header("anthropic-version") == "2023-06-01"
    assert (
        seen.header("anthropic-beta")
        == "oauth-2025-04-20,interleaved-thinking-2025-05-14"
    )
    assert seen.header("x-stainless-retry-count") == "0"
    assert [v for k, v in seen.headers if k.lower() == "x-custom"] == ["one", "two"]
    for dropped in ("keep-alive", "te", "x-drop-me"):
        assert seen.header(dropped) is None
    assert seen.header("host") == upstream.url.removeprefix("http://")
    assert seen.header("user-agent") == f"python-httpx/{httpx.__version__}"


def test_it_passes_every_response_header_back(relay, upstream):
    upstream.enqueue(
        Reply(
            status=429,
            body=b'{"type":"error","error":'
            b'{"type":"rate_limit_error","message":"slow down"}}',
            headers=[
                ("request-id", "req_429"),
                ("retry-after", "17"),
                ("anthropic-organization-id", "org-1"),
                ("anthropic-ratelimit-requests-remaining", "0"),
                ("anthropic-ratelimit-requests-reset", "2026-11-23T12:00:00Z"),
                ("set-cookie", "a=1; Path=/"),
                ("set-cookie", "b=2; Path=/"),
                ("x-future-header", "kept"),
            ],
        )
    )

    response = httpx.post(relay.url + "/v1/messages", content=b"{}")

    assert response.status_code == 429
    assert response.headers["request-id"] == "req_429"
    assert response.headers["retry-after"] == "17"
    assert response.headers["anthropic-organization-id"] == "org-1"
    assert response.headers["x-future-header"] == "kept"
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert response.json()["error"]["type"] == "rate_limit_error"
    [row] = recorded()
    assert row.ratelimits["requests-remaining"] == 0
    assert row.ratelimits["requests-reset"] == "2026-11-23T12:00:00+00:00"
    assert row.ratelimits["retry-after"] == 17


@pytest.mark.parametrize("status", [400, 401, 404, 413, 429, 500, 529])
def test_it_relays_error_statuses_verbatim(relay, upstream, status):
    body = json.dumps(
        {"type": "error", "error": {"type": f"e{status}", "message": "m"}}
    ).encode()
    upstream.enqueue(
        Reply(status=status, body=body, headers=[("x-status", str(status))])
    )

    response = httpx.post(relay.url + "/v1/messages", content=b"{}")

    assert (response.status_code, response.content) == (status, body)
    assert response.headers["x-status"] == str(status)
    [row] = recorded()
    assert (row.status_code, row.error_type, row.state) == (
        status,
        f"e{status}",
        "complete",
    )


def test_it_relays_a_30_mb_body_byte_for_byte(relay, upstream):
    big = (
        b'{"model":"claude-sonnet-4-6","messages":[{"role":"user","content":"'
        + (b"x" * (30 * 1024 * 1024))
        + b'"}],"max_tokens":1}'
    )

    response = httpx.post(relay.url + "/v1/messages", content=big, timeout=60)

    assert response.status_code == 200
    assert upstream.requests[0].body == big
    [row] = recorded(timeout=30)
    assert row.request_size == len(big)
    assert body_decode(row.request_body) == big


def test_it_relays_and_records_a_body_that_is_not_json(relay, upstream):
    odd = b"\x00\xffnot json at all {"

    httpx.post(relay.url + "/v1/messages/batches", content=odd)

    assert upstream.requests[0].body == odd
    [row] = recorded()
    assert body_decode(row.request_body) == odd
    assert row.model_requested == ""


def test_it_forwards_each_event_before_the_upstream_sends_the_next(relay, upstream):
    gate = threading.Event()
    reply = Reply(events=message_events(text="abc", text_parts=3), gate=gate)
    upstream.enqueue(reply)

    with httpx.stream("POST", relay.url + "/v1/messages", content=b"{}") as response:
        lines = response.iter_lines()
        first = [next(lines), next(lines)]
        sent_when_first_arrived = reply.sent
        gate.set()
        rest = list(lines)

    assert first[0] == "event: message_start"
    assert sent_when_first_arrived == 1
    assert "event: future_event_type" in rest and "event: ping" in rest
    assert rest[-3:] == ["event: message_stop", 'data: {"type": "message_stop"}', ""]


def test_it_relays_event_bytes_untouched(relay, upstream):
    events = message_events(text="héllo wörld", thinking="hmm", text_parts=4)
    upstream.enqueue(Reply(events=events))

    response = httpx.post(relay.url + "/v1/messages", content=b"{}")

    assert response.content == b"".join(events)
    [row] = recorded()
    assert [b["type"] for b in row.response_message["content"]] == ["thinking", "text"]
    assert row.response_message["content"][1]["text"] == "héllo wörld"
    assert row.response_message["content"][0]["signature"] == "sig=="


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
@pytest.mark.parametrize("streaming", [True, False])
def test_it_relays_compressed_bodies_unchanged_and_records_them_decoded(
    relay, upstream, encoding, streaming
):
    events = message_events(text="compressed answer")
    plain = b"".join(events)
    if streaming:
        upstream.enqueue(Reply(events=events, encoding=encoding))
    else:
        upstream.enqueue(
            Reply(
                body=json.dumps(
                    {
                        "type": "message",
                        "model": "claude-opus-4-8",
                        "content": [],
                        "usage": {"output_tokens": 3},
                    }
                ).encode(),
                encoding=encoding,
            )
        )

    with httpx.Client() as client:
        response = client.post(
            relay.url + "/v1/messages",
            content=b"{}",
            headers={"accept-encoding": "gzip, br, zstd"},
        )
    assert response.headers["content-encoding"] == encoding
    [row] = recorded()
    decoded = body_decode(row.response_body)
    if streaming:
        assert response.content == plain  # httpx decoded the bytes we relayed
        assert decoded == plain
        assert row.response_message["content"][0]["text"] == "compressed answer"
    else:
        assert json.loads(decoded)["usage"]["output_tokens"] == 3
        assert row.output_tokens == 3


def test_it_relays_the_compressed_bytes_themselves(relay, upstream):
    body = b'{"type":"message","content":[],"usage":{}}' * 50
    upstream.enqueue(Reply(body=body, encoding="gzip"))

    with httpx.stream("POST", relay.url + "/v1/messages", content=b"{}") as response:
        raw = b"".join(response.iter_raw())

    assert raw != body and gzip.decompress(raw) == body
    assert brotli and zstandard  # decoders for the other codings are installed


def test_it_records_the_client_user_agent_session_and_agent(relay, upstream):
    httpx.post(
        relay.url + "/v1/messages?beta=true",
        content=json.dumps(
            {
                "model": "claude-haiku-4-5",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"name": "Bash"}, {"name": "Read"}],
            }
        ),
        headers={
            "user-agent": "claude-cli/2.1.197 (external, cli)",
            "x-claude-code-session-id": "8df6aa00-0000-4000-8000-000000000001",
            "x-claude-code-agent-id": "agent-7",
        },
    )

    [row] = recorded()
    assert row.user_agent == "claude-cli/2.1.197 (external, cli)"
    assert row.session_id == "8df6aa00-0000-4000-8000-000000000001"
    assert row.agent_id == "agent-7"
    assert row.tools_offered == ["Bash", "Read"]
    assert row.tools_called == {}
    assert row.query == "beta=true"
    assert row.state == Exchange.State.COMPLETE
