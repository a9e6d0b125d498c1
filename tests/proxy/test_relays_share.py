"""Several relays on one database: a relay that starts closes only the calls its
own earlier process left open, never those its peers are still carrying."""

from __future__ import annotations

import signal
import threading

import httpx
import pytest

from apps.proxy.models import Exchange
from tests.conftest import wait_for
from tests.fake_upstream import Reply, message_events

pytestmark = pytest.mark.django_db(transaction=True)
OPEN = Exchange.State.IN_PROGRESS


def _held_stream(url: str, upstream, gate: threading.Event) -> threading.Thread:
    """Start a stream that stays open until `gate` is set; return its thread."""
    upstream.enqueue(Reply(events=message_events(text="abc"), gate=gate))

    def run() -> None:
        try:
            with httpx.stream("POST", f"{url}/v1/messages", content=b"{}") as held:
                for _ in held.iter_lines():
                    pass
        except httpx.HTTPError:  # the killed relay's stream ends here
            pass

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: Exchange.objects.filter(state=OPEN).exists())
    return thread


def _started(relay_factory, upstream, name: str):
    """A relay that has opened its recorder (and so closed what it should)."""
    relay = relay_factory(
        CLAUDEMON_UPSTREAM_URL=upstream.url, CLAUDEMON_RELAY_NAME=name
    )
    upstream.enqueue(Reply(body=b"{}"))
    assert httpx.post(f"{relay.url}/v1/messages/count_tokens", content=b"{}").is_success
    relay.settle()
    return relay


def test_a_starting_relay_leaves_its_peers_calls_open(relay_factory, upstream):
    carrier = _started(relay_factory, upstream, "carrier")
    gate = threading.Event()
    stream = _held_stream(carrier.url, upstream, gate)
    held = Exchange.objects.get(state=OPEN)
    assert held.relay == "carrier"

    _started(relay_factory, upstream, "newcomer")
    still = Exchange.objects.get(pk=held.pk)
    gate.set()
    stream.join(10)
    carrier.settle()

    assert (still.state, still.error_type) == (OPEN, "")
    assert Exchange.objects.get(pk=held.pk).state == Exchange.State.COMPLETE


def test_a_restarted_relay_closes_what_its_killed_process_left_open(
    relay_factory, upstream
):
    crashed = _started(relay_factory, upstream, "phoenix")
    gate = threading.Event()
    stream = _held_stream(crashed.url, upstream, gate)
    crashed.process.send_signal(signal.SIGKILL)
    crashed.process.wait(10)
    stream.join(10)
    gate.set()
    left = Exchange.objects.get(state=OPEN)

    _started(relay_factory, upstream, "phoenix")

    closed = Exchange.objects.get(pk=left.pk)
    assert (closed.state, closed.error_type) == (
        Exchange.State.PROXY_ERROR,
        "relay_stopped",
    )
