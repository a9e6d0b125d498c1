"""The live feed through a real Redis: pushed by a real relay, polling while Redis
is away, and nothing lost across the switch (issue #15, item 2)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from apps.dashboard import consumers, routing
from apps.proxy.models import Exchange
from tests.conftest import RedisServer, Relay
from tests.dashboard.test_live_feed import WAIT, live_feed

pytestmark = pytest.mark.django_db(transaction=True)
CALLS = 12
BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 16,
    "stream": True,
    "messages": [{"role": "user", "content": "say hello"}],
}
PUSH = {"mode": "push", "reason": ""}
POLLING = {"mode": "polling", "reason": "Redis unreachable"}
UNREACHABLE = "live feed: Redis unreachable"


@pytest.fixture(scope="module")
def redis_relay(relay_factory, fake, redis_server: RedisServer) -> Relay:
    """A relay whose recorder publishes to the module's private Redis."""
    return relay_factory(
        CLAUDEMON_UPSTREAM_URL=fake.url, CLAUDEMON_REDIS_URL=redis_server.url
    )


@pytest.fixture
def pushed(
    settings, redis: RedisServer, redis_relay: Relay, upstream
) -> Iterator[Relay]:
    """The data side on the same Redis (the layer as claudemon/settings/base.py
    builds it); the relay's recordings are all written before the test ends."""
    settings.CLAUDEMON_REDIS_URL = redis.url
    host = {"address": redis.url, "socket_connect_timeout": 1, "socket_timeout": 10}
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [host], "prefix": "claudemon"},
        }
    }
    yield redis_relay
    redis_relay.settle()


class FeedWatch:
    """What an open feed has said: its modes and the rows it showed finished."""

    def __init__(self, feed: WebsocketCommunicator) -> None:
        self.feed = feed
        self.modes: list[dict[str, str]] = []
        self.finished: dict[int, str] = {}

    async def until(self, done: Callable[[], Any]) -> None:
        """Read messages until done() holds (each within WAIT seconds)."""
        while not done():
            message = await self.feed.receive_json_from(timeout=WAIT)
            if "feed" in message:
                self.modes.append(message["feed"])
            for row in message.get("rows", []):
                if row["state"] != Exchange.State.IN_PROGRESS:
                    self.finished[row["id"]] = row["state"]


async def _call(relay: Relay) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(relay.url + "/v1/messages", json=BODY)


def _polling_tasks() -> list[asyncio.Task]:
    """Return the feed's polling tasks running in this event loop."""
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name() == consumers.POLL_TASK and not task.done()
    ]


def _recorded() -> dict[int, str]:
    return dict(Exchange.objects.values_list("pk", "state"))


def test_it_pushes_a_relayed_call_to_the_open_feed_without_polling(user_client, pushed):
    async def run() -> tuple[FeedWatch, httpx.Response, list[asyncio.Task]]:
        watch = FeedWatch(live_feed(user_client, "after=0"))
        assert (await watch.feed.connect())[0]
        await watch.until(lambda: watch.modes)
        answer = await _call(pushed)
        await watch.until(lambda: watch.finished)
        polling = _polling_tasks()
        await watch.feed.disconnect()
        return watch, answer, polling

    watch, answer, polling = async_to_sync(run)()

    assert answer.status_code == 200
    assert watch.modes == [PUSH]
    assert polling == []  # the row came because the relay published it
    pushed.settle()
    assert watch.finished == _recorded() != {}


def test_it_delivers_every_call_by_polling_once_redis_stops(user_client, pushed, redis):
    logged_before = pushed.log().count(UNREACHABLE)

    async def run() -> tuple[FeedWatch, list[httpx.Response], list[asyncio.Task]]:
        watch = FeedWatch(live_feed(user_client, "after=0"))
        assert (await watch.feed.connect())[0]
        await watch.until(lambda: watch.modes)
        answers = [await _call(pushed)]
        await watch.until(lambda: watch.finished)
        redis.stop()  # while the feed is open
        answers += await asyncio.gather(*(_call(pushed) for _ in range(CALLS - 1)))
        await watch.until(lambda: len(watch.finished) == CALLS and len(watch.modes) > 1)
        polling = _polling_tasks()
        await watch.feed.disconnect()
        return watch, answers, polling

    watch, answers, polling = async_to_sync(run)()

    assert [answer.status_code for answer in answers] == [200] * CALLS
    assert all("event: message_stop" in answer.text for answer in answers)
    assert watch.modes == [PUSH, POLLING]
    assert len(polling) == 1
    pushed.settle()
    recorded = _recorded()
    assert len(recorded) == CALLS  # calls sent == exchanges recorded
    assert watch.finished == recorded  # and the feed showed every one, finished
    assert set(recorded.values()) == {Exchange.State.COMPLETE}
    assert pushed.log().count(UNREACHABLE) == logged_before + 1  # once, not per call


def test_it_returns_to_push_once_redis_is_back(user_client, pushed, redis):
    async def run() -> tuple[FeedWatch, list[asyncio.Task]]:
        watch = FeedWatch(live_feed(user_client, "after=0"))
        assert (await watch.feed.connect())[0]
        await watch.until(lambda: watch.modes)
        redis.stop()
        await watch.until(lambda: len(watch.modes) == 2)
        await asyncio.to_thread(redis.start)
        await watch.until(lambda: len(watch.modes) == 3)
        await _call(pushed)
        await watch.until(lambda: watch.finished)
        polling = _polling_tasks()
        await watch.feed.disconnect()
        return watch, polling

    watch, polling = async_to_sync(run)()

    assert watch.modes == [PUSH, POLLING, PUSH]
    assert polling == []
    pushed.settle()
    assert watch.finished == _recorded() != {}


def test_it_closes_a_pushed_feed_once_the_session_logs_out(user_client, pushed):
    async def run() -> tuple[list[dict[str, str]], dict]:
        watch = FeedWatch(live_feed(user_client, "after=0"))
        assert (await watch.feed.connect())[0]
        await watch.until(lambda: watch.modes)
        await database_sync_to_async(user_client.post)("/logout/")
        # Nothing is published: the feed's own heartbeat notices the logout.
        message = await watch.feed.receive_output(timeout=WAIT)
        await watch.feed.wait()
        return watch.modes, message

    modes, message = async_to_sync(run)()

    assert modes == [PUSH]
    assert message == {"type": "websocket.close", "code": routing.CLOSE_UNAUTHORIZED}
