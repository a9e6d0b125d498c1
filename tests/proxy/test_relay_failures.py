"""Failures on either side: timeouts, unreachable upstream, resets, disconnects."""

from __future__ import annotations

import json
import socket
import threading

import anthropic
import httpx
import pytest

from apps.proxy.bodies import body_decode
from apps.proxy.models import Exchange
from tests.conftest import free_port, wait_for
from tests.fake_upstream import Reply, message_events
from tests.proxy.conftest import recorded

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def quick_relay(relay_factory, fake):
    """A relay with one-second timeouts, to prove the timeouts exist."""
    return relay_factory(
        CLAUDEMON_UPSTREAM_URL=fake.url,
        CLAUDEMON_CONNECT_TIMEOUT="1",
        CLAUDEMON_IDLE_TIMEOUT="1",
    )


def test_it_answers_502_in_anthropic_shape_when_the_upstream_is_unreachable(
    relay_factory,
):
    closed_port = free_port()  # nothing listens there
    relay = relay_factory(CLAUDEMON_UPSTREAM_URL=f"http://127.0.0.1:{closed_port}")

    response = httpx.post(relay.url + "/v1/messages", content=b"{}")

    assert response.status_code == 502
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert f"127.0.0.1:{closed_port}" in error["error"]["message"]
    [row] = recorded()
    assert (row.state, row.status_code, row.error_type) == (
        Exchange.State.UPSTREAM_ERROR,
        502,
        "upstream_unreachable",
    )


def test_it_answers_504_when_the_upstream_does_not_accept_the_connection(relay_factory):
    # A listening socket whose accept queue is full: further SYNs are dropped, so
    # connecting hangs until the connect timeout.
    jammed = socket.socket()
    jammed.bind(("127.0.0.1", 0))
    jammed.listen(0)
    port = jammed.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    relay = relay_factory(
        CLAUDEMON_UPSTREAM_URL=f"http://127.0.0.1:{port}",
        CLAUDEMON_CONNECT_TIMEOUT="0.5",
    )
    try:
        response = httpx.post(relay.url + "/v1/messages", content=b"{}", timeout=10)
    finally:
        for sock in [*fillers, jammed]:
            sock.close()

    assert response.status_code == 504
    assert "CLAUDEMON_CONNECT_TIMEOUT" in response.json()["error"]["message"]
    [row] = recorded()
    assert row.error_type == "upstream_connect_timeout"


def test_it_answers_504_when_the_upstream_sends_nothing_within_the_idle_timeout(
    quick_relay, upstream
):
    upstream.enqueue(Reply(body=b"{}", first_delay=2.5))

    response = httpx.post(quick_relay.url + "/v1/messages", content=b"{}", timeout=10)

    assert response.status_code == 504
    assert "CLAUDEMON_IDLE_TIMEOUT" in response.json()["error"]["message"]
    [row] = recorded()
    assert (row.state, row.error_type) == (
        Exchange.State.UPSTREAM_ERROR,
        "upstream_idle_timeout",
    )


def test_it_never_cuts_a_stream_that_outlasts_the_timeouts_while_events_flow(
    quick_relay, upstream
):
    events = message_events(text="x" * 40, text_parts=40)
    # The fake sleeps 0.06 s before each event after the first: the stream lasts
    # over 2.5 s by construction, past both 1 s timeouts.
    upstream.enqueue(Reply(events=events, pause=0.06))

    response = httpx.post(quick_relay.url + "/v1/messages", content=b"{}", timeout=30)

    assert response.content == b"".join(events)
    [row] = recorded()
    assert row.state == Exchange.State.COMPLETE


def test_it_ends_the_stream_with_an_error_event_when_the_upstream_goes_quiet(
    quick_relay, upstream
):
    upstream.enqueue(Reply(events=message_events(), quiet=2.5))

    response = httpx.post(quick_relay.url + "/v1/messages", content=b"{}", timeout=10)

    assert response.status_code == 200
    assert response.text.startswith("event: message_start")
    last = response.text.rstrip("\n").split("\n\n")[-1]
    assert last.startswith("event: error\ndata: ")
    error = json.loads(last.split("data: ", 1)[1])
    assert error["error"]["type"] == "api_error"
    assert "CLAUDEMON_IDLE_TIMEOUT" in error["error"]["message"]
    [row] = recorded()
    assert (row.state, row.error_type) == (
        Exchange.State.UPSTREAM_ERROR,
        "upstream_idle_timeout",
    )
    assert body_decode(row.response_body).startswith(b"event: message_start")
    assert b"event: error" not in body_decode(row.response_body)  # ours, not upstream's


def test_it_ends_the_client_stream_when_the_upstream_connection_breaks(relay, upstream):
    events = message_events(text="abcdef", text_parts=6)
    upstream.enqueue(Reply(events=events, reset_after=4))

    with pytest.raises(anthropic.APIStatusError) as caught:
        with anthropic.Anthropic(
            base_url=relay.url, api_key="k", max_retries=0
        ).messages.stream(
            model="claude-sonnet-4-6",
            max_tokens=8,
            messages=[{"role": "user", "content": "x"}],
        ) as stream:
            for _event in stream:
                pass

    assert "upstream" in str(caught.value)
    [row] = recorded()
    assert row.state == Exchange.State.UPSTREAM_ERROR
    assert row.error_type == "upstream_connection_error"
    assert body_decode(row.response_body) == b"".join(events[:4])


def test_it_ends_a_compressed_stream_without_adding_bytes_when_the_upstream_breaks(
    relay, upstream
):
    upstream.enqueue(
        Reply(
            events=message_events(text="abcdef", text_parts=6),
            encoding="gzip",
            reset_after=3,
        )
    )

    with httpx.stream("POST", relay.url + "/v1/messages", content=b"{}") as response:
        raw = b"".join(response.iter_raw())

    [row] = recorded()
    assert row.state == Exchange.State.UPSTREAM_ERROR
    assert row.response_size == len(raw)  # exactly the upstream's bytes, nothing added


def test_it_cancels_the_upstream_at_once_when_the_client_disconnects(relay, upstream):
    events = message_events(text="y" * 100, text_parts=100)
    reply = Reply(events=events, pause=0.05)  # 5 s if nobody stopped it
    upstream.enqueue(reply)

    with httpx.stream("POST", relay.url + "/v1/messages", content=b"{}") as response:
        lines = response.iter_lines()
        assert next(lines) == "event: message_start"
    # Leaving the block closed our connection mid-stream.

    wait_for(lambda: upstream.disconnects == 1, timeout=3)
    assert reply.sent < len(events)
    [row] = recorded()
    assert row.state == Exchange.State.CLIENT_DISCONNECTED
    partial = body_decode(row.response_body)
    assert partial.startswith(b"event: message_start") and len(partial) < len(
        b"".join(events)
    )


def test_a_call_beyond_the_connection_bound_gets_503_at_once(relay_factory, upstream):
    relay = relay_factory(
        CLAUDEMON_UPSTREAM_URL=upstream.url, CLAUDEMON_UPSTREAM_CONNECTIONS="1"
    )
    gate = threading.Event()
    upstream.enqueue(Reply(events=message_events(text="abc"), gate=gate))

    with httpx.stream("POST", relay.url + "/v1/messages", content=b"{}") as held:
        lines = held.iter_lines()
        next(lines)  # the first call holds the one connection
        refused = httpx.post(relay.url + "/v1/messages", content=b"{}")
        gate.set()
        list(lines)
    after = httpx.post(relay.url + "/v1/messages", content=b"{}")

    assert refused.status_code == 503
    assert "CLAUDEMON_UPSTREAM_CONNECTIONS" in refused.json()["error"]["message"]
    assert after.status_code == 200
    assert len(upstream.requests) == 2  # the refused call never left
    rows = recorded(3)
    assert [(r.status_code, r.error_type) for r in rows] == [
        (200, ""),
        (503, "relay_busy"),
        (200, ""),
    ]
