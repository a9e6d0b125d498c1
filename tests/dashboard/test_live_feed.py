"""The live feed over a real websocket (channels' communicator, the deployed stack),
showing a member (not staff) only the calls of the credentials they claimed."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from apps.dashboard import routing, services
from apps.dashboard.consumers import POLL_TASK
from apps.proxy.models import Exchange
from apps.proxy.recorder import secret_fingerprint
from tests.factories import exchange_create

pytestmark = pytest.mark.django_db(transaction=True)
WAIT = 10  # seconds a communicator waits for the next message before failing
BIG = 2**64


def live_feed(client: Client, query: str) -> WebsocketCommunicator:
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.session.session_key}"
    return WebsocketCommunicator(
        routing.websocket_application,
        f"/ws/live/?{query}",
        headers=[
            (b"origin", b"http://127.0.0.1:8002"),
            (b"host", b"127.0.0.1:8002"),
            (b"cookie", cookie.encode()),
        ],
    )


async def _next_row_id(feed: WebsocketCommunicator) -> int:
    message = await feed.receive_json_from(timeout=WAIT)
    return message["rows"][0]["id"]


def test_it_streams_despite_ids_beyond_sqlite_integers(user_client):
    async def run() -> tuple[int, int]:
        feed = live_feed(user_client, f"after=0&watch={BIG},{BIG + 1}")
        assert (await feed.connect())[0]
        exchange = await database_sync_to_async(exchange_create)()
        received = await _next_row_id(feed)
        await feed.disconnect()
        return exchange.pk, received

    created, received = async_to_sync(run)()
    assert received == created


def test_it_closes_once_the_session_logs_out(user_client):
    async def run() -> dict:
        feed = live_feed(user_client, "after=0")
        assert (await feed.connect())[0]
        first = await database_sync_to_async(exchange_create)()
        assert await _next_row_id(feed) == first.pk
        await database_sync_to_async(user_client.post)("/logout/")
        await database_sync_to_async(exchange_create)()
        message = await feed.receive_output(timeout=WAIT)
        await feed.wait()
        return message

    message = async_to_sync(run)()
    assert message == {"type": "websocket.close", "code": routing.CLOSE_UNAUTHORIZED}, (
        json.dumps(message)[:200]
    )


def test_it_polls_and_says_nothing_of_redis_when_none_is_configured(user_client):
    async def run() -> tuple[int, dict, list[asyncio.Task]]:
        feed = live_feed(user_client, "after=0")
        assert (await feed.connect())[0]
        exchange = await database_sync_to_async(exchange_create)()
        message = await feed.receive_json_from(timeout=WAIT)
        polling = [t for t in asyncio.all_tasks() if t.get_name() == POLL_TASK]
        await feed.disconnect()
        return exchange.pk, message, polling

    created, message, polling = async_to_sync(run)()

    assert settings.CLAUDEMON_REDIS_URL == ""
    assert list(message) == ["rows"]  # no "feed" mode: the page shows "live"
    assert message["rows"][0]["id"] == created
    assert len(polling) == 1


def test_it_shows_a_row_that_commits_after_a_higher_id_was_sent(user_client):
    """Two relays on PostgreSQL: a row takes its id at INSERT and shows at COMMIT,
    so id 7 can appear after id 8 was sent. Modelled by writing the ids in that
    order; the feed, past 8 already, must still send 7."""

    async def run() -> list[int]:
        feed = live_feed(user_client, "after=0")
        assert (await feed.connect())[0]
        create = database_sync_to_async(exchange_create)
        first = await create()
        assert await _next_row_id(feed) == first.pk
        await create(pk=first.pk + 2)
        assert await _next_row_id(feed) == first.pk + 2
        await create(pk=first.pk + 1)
        late = await _next_row_id(feed)
        await feed.disconnect()
        return [first.pk + 1, late]

    expected, received = async_to_sync(run)()
    assert received == expected


def test_it_does_not_resend_rows_the_page_was_rendered_with(user_client):
    async def run() -> int:
        older = await database_sync_to_async(exchange_create)()
        feed = live_feed(user_client, f"after={older.pk}")
        assert (await feed.connect())[0]
        newer = await database_sync_to_async(exchange_create)()
        message = await feed.receive_json_from(timeout=WAIT)
        await feed.disconnect()
        assert [row["id"] for row in message["rows"]] == [newer.pk]
        return newer.pk

    async_to_sync(run)()


def test_it_shows_a_member_their_new_calls_and_never_anothers(member, member_client):
    services.claim_add(user=member, secret="sk-ant-key-of-carol")
    mine, theirs = (
        {"credential": secret_fingerprint(key)}
        for key in ("sk-ant-key-of-carol", "sk-ant-key-of-anna")
    )
    flying = exchange_create(state=Exchange.State.IN_PROGRESS, ended_at=None, **theirs)

    async def run() -> tuple[list[int], list[int]]:
        # Watching another's call by id (a hand-made URL) does not show it either.
        feed = live_feed(member_client, f"after={flying.pk}&watch={flying.pk}")
        assert (await feed.connect())[0]
        create = database_sync_to_async(exchange_create)
        sent = [(await create(**theirs)).pk, (await create(**mine)).pk]
        await database_sync_to_async(Exchange.objects.filter(pk=flying.pk).update)(
            state=Exchange.State.COMPLETE
        )
        sent += [(await create(**theirs)).pk, (await create(**mine)).pk]
        received: list[int] = []
        while sent[-1] not in received:  # every row up to B's newest call
            message = await feed.receive_json_from(timeout=WAIT)
            received += [row["id"] for row in message["rows"]]
        await feed.disconnect()
        return sent, received

    sent, received = async_to_sync(run)()
    assert received == [sent[1], sent[3]]
