"""The relay's publishing to the live feed never costs it a call or a recording."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from apps.proxy.models import Exchange
from tests.conftest import free_port, wait_for
from tests.proxy.conftest import recorded

pytestmark = pytest.mark.django_db(transaction=True)
CALLS = 10
BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 16,
    "stream": True,
    "messages": [{"role": "user", "content": "say hello"}],
}
UNREACHABLE = "live feed: Redis unreachable"


@pytest.fixture(params=["closed port", "silent listener"])
def unreachable_redis(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Redis URL nobody answers: a closed port, or a socket that accepts
    connections (the kernel's backlog) and never replies, like a hung server."""
    if request.param == "closed port":
        yield f"redis://127.0.0.1:{free_port()}/0"
        return
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(128)
        yield f"redis://127.0.0.1:{silent.getsockname()[1]}/0"


def test_it_relays_and_records_every_call_while_redis_is_unreachable(
    relay_factory, upstream, unreachable_redis
):
    relay = relay_factory(
        CLAUDEMON_UPSTREAM_URL=upstream.url, CLAUDEMON_REDIS_URL=unreachable_redis
    )

    answers = []
    for sent in range(1, CALLS + 1):
        answers.append(httpx.post(relay.url + "/v1/messages", json=BODY, timeout=30))
        recorded(sent)  # written (and published) before the next call is sent
    wait_for(lambda: UNREACHABLE in relay.log())

    assert [answer.status_code for answer in answers] == [200] * CALLS
    assert all("event: message_stop" in answer.text for answer in answers)
    rows = recorded(CALLS)
    assert len(rows) == len(upstream.requests) == CALLS  # sent == recorded
    assert {row.state for row in rows} == {Exchange.State.COMPLETE}
    assert relay.log().count(UNREACHABLE) == 1  # logged once, not per call
