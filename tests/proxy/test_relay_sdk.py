"""End to end: the official anthropic SDK through a real daphne relay to the fake."""

from __future__ import annotations

import anthropic
import pytest

from apps.proxy.models import Exchange
from tests.fake_upstream import Reply
from tests.proxy.conftest import recorded

pytestmark = pytest.mark.django_db(transaction=True)


def client(relay, **kwargs) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=relay.url, api_key="sk-ant-test-key-123", **kwargs
    )


def test_it_relays_messages_create_and_records_usage_and_cost(relay, upstream):
    message = client(relay).messages.create(
        model="claude-sonnet-4-6",
        max_tokens=64,
        messages=[{"role": "user", "content": "hello there"}],
    )

    assert message.content[0].text == "You said: hello there"
    [row] = recorded()
    assert row.state == Exchange.State.COMPLETE
    assert row.status_code == 200
    assert row.is_streaming is False
    assert row.model_requested == "claude-sonnet-4-6"
    assert row.model == "claude-sonnet-4-6"  # the fake answers with the requested id
    assert row.message_id == message.id
    assert (row.input_tokens, row.output_tokens, row.cache_read_tokens) == (
        25,
        12,
        2000,
    )
    assert (row.cache_write_5m_tokens, row.cache_write_1h_tokens) == (60, 40)
    # 25*3 + 60*3.75 + 40*6 + 2000*0.3 + 12*15 per million
    assert row.cost_usd == pytest.approx((75 + 225 + 240 + 600 + 180) / 1e6)
    assert row.request_id == upstream.requests[0].header("request-id") or row.request_id


def test_it_relays_a_stream_with_every_event_and_assembles_the_message(relay, upstream):
    with client(relay).messages.stream(
        model="claude-opus-4-8",
        max_tokens=64,
        messages=[{"role": "user", "content": "run echo hi"}],
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()

    assert final.content[0].name == "Bash"
    assert final.content[0].input == {
        "command": "echo hi",
        "description": "Run the requested command",
    }
    assert "message_start" in events and "message_stop" in events
    [row] = recorded()
    assert row.is_streaming is True
    assert row.stop_reason == "tool_use"
    assert row.tools_called == {"Bash": 1}
    assert row.response_message["content"][0]["input"]["command"] == "echo hi"
    assert row.output_tokens == 12  # cumulative message_delta value, not start + delta
    assert row.unified_5h_utilization == pytest.approx(0.42)
    assert row.unified_status == "allowed"
    assert row.ttfb_ms is not None and row.duration_ms >= row.ttfb_ms


def test_it_relays_count_tokens_with_the_query_string(relay, upstream):
    result = client(relay).messages.count_tokens(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "count me"}]
    )

    assert result.input_tokens > 0
    assert upstream.requests[0].target.startswith("/v1/messages/count_tokens")
    [row] = recorded(path="/v1/messages/count_tokens")
    assert row.status_code == 200


def test_it_relays_529_with_retry_after_and_the_sdk_retries(relay, upstream):
    overloaded = (
        b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    )
    upstream.enqueue(
        Reply(status=529, body=overloaded, headers=[("retry-after", "0")]),
        Reply(status=529, body=overloaded, headers=[("retry-after", "0")]),
    )

    message = client(relay, max_retries=2).messages.create(
        model="claude-sonnet-4-6",
        max_tokens=8,
        messages=[{"role": "user", "content": "again"}],
    )

    assert message.content[0].text == "You said: again"
    assert len(upstream.requests) == 3
    rows = recorded(3)
    assert [r.status_code for r in rows] == [529, 529, 200]
    assert rows[0].error_type == "overloaded_error"
    assert rows[0].ratelimits["retry-after"] == 0


def test_it_hands_the_sdk_an_upstream_error_verbatim(relay, upstream):
    upstream.enqueue(
        Reply(
            status=400,
            body=b'{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}',
            headers=[("request-id", "req_bad1")],
        )
    )

    with pytest.raises(anthropic.BadRequestError) as caught:
        client(relay, max_retries=0).messages.create(
            model="claude-sonnet-4-6",
            max_tokens=8,
            messages=[{"role": "user", "content": "x"}],
        )

    assert caught.value.request_id == "req_bad1"
    [row] = recorded()
    assert (row.status_code, row.error_type, row.error_message) == (
        400,
        "invalid_request_error",
        "bad",
    )
