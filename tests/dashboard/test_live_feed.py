"""The live feed over a real websocket (channels' communicator, the deployed stack),
showing a member (not staff) only the calls of the credentials they claimed."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from apps.dashboard import routing, services
from apps.proxy.models import Exchange
from apps.proxy.recorder import secret_fingerprint
from tests.factories import exchange_create

pytestmark = pytest.mark.django_db(transaction=True)
WAIT = 10  # seconds a communicator waits for the next message before failing
BIG = 2**64


def _feed(client: Client, query: str) -> WebsocketCommunicator:
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
        feed = _feed(user_client, f"after=0&watch={BIG},{BIG + 1}")
        assert (await feed.connect())[0]
        exchange = await database_sync_to_async(exchange_create)()
        received = await _next_row_id(feed)
        await feed.disconnect()
        return exchange.pk, received

    created, received = async_to_sync(run)()
    assert received == created


def test_it_closes_once_the_session_logs_out(user_client):
    async def run() -> dict:
        feed = _feed(user_client, "after=0")
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


def test_it_shows_a_member_their_new_calls_and_never_anothers(member, member_client):
    services.claim_add(user=member, secret="sk-ant-key-of-carol")
    mine, theirs = (
        {"credential": secret_fingerprint(key)}
        for key in ("sk-ant-key-of-carol", "sk-ant-key-of-anna")
    )
    flying = exchange_create(state=Exchange.State.IN_PROGRESS, ended_at=None, **theirs)

    async def run() -> tuple[list[int], list[int]]:
        # Watching another's call by id (a hand-made URL) does not show it either.
        feed = _feed(member_client, f"after={flying.pk}&watch={flying.pk}")
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
