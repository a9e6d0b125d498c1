"""The live feed: a WebSocket that pushes exchange rows as they start and finish.

The relay runs in another process and writes into the shared database. With
CLAUDEMON_REDIS_URL its recorder publishes each exchange it has written
(apps.proxy.services.feed) and the feed, subscribed to that group, reads what
changed when told; while Redis does not answer it polls the database instead and
tells the page so. Without Redis it polls, as the single-user default always has.
Every read is "the rows after the last one sent, the rows shown in flight that
have finished, and rows below the last one sent that committed late", so a lost
message or a change of mode loses no row. Late commits happen with several
writers (relays on PostgreSQL): a row takes its id when inserted but shows when
its transaction commits, possibly after a higher id of another relay was sent.
Rows are rendered with the same partial as the live page.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError
from django.template.loader import render_to_string
from django.utils import timezone

from apps.dashboard import page_state
from apps.dashboard.auth import session_login_valid
from apps.dashboard.selectors import requests as request_selectors
from apps.dashboard.selectors.claims import viewer_of
from apps.indexing.schemas import ID_MAX
from apps.proxy.models import Exchange
from apps.proxy.services.feed import FEED_GROUP, REDIS_ERRORS

POLL_SECONDS = 0.35
POLL_TASK = "live-feed-poll"  # the name of the polling task, while it runs
RETRY_SECONDS = 2.0  # while polling, how often Redis is tried again
HEARTBEAT_SECONDS = 5.0  # while pushed, how often the login and Redis are checked
REDIS_TIMEOUT = 2.0
# How far below the last id sent a row may still appear: ids other writers took
# while one writer's transaction was open (batches of a few hundred rows at most).
LATE_WINDOW = 2000
logger = logging.getLogger(__name__)
CLOSE_UNAUTHORIZED = 4401


class LiveFeedConsumer(AsyncWebsocketConsumer):
    # No channel layer for the base class: its receive loop would end the websocket
    # when Redis fails. The feed subscribes and receives itself (_listen).
    channel_layer_alias = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not getattr(user, "is_authenticated", False):
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.after_id = _int(query.get("after", ["0"])[0])
        self.watch_ids = [_int(v) for v in query.get("watch", [""])[0].split(",") if v]
        self.watch_ids = [v for v in self.watch_ids if v > 0][-500:]
        self.zone = page_state.zone_from_name(self.scope.get("cookies", {}).get("tz"))
        self.person = query.get("user", [""])[0][:150]  # staff: one person's calls
        self.mode = ""
        # Ids at most LATE_WINDOW below after_id that the page has: None until the
        # first read takes those the page was rendered with.
        self.shown: set[int] | None = None
        redis = settings.CLAUDEMON_REDIS_URL
        self.layer: Any = get_channel_layer() if redis else None
        if self.layer is not None:
            self.channel_name = await self.layer.new_channel()
        await self.accept()
        self.runner = asyncio.create_task(self._run())

    async def disconnect(self, code: int) -> None:
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.cancel()
        if getattr(self, "layer", None) is not None and self.mode == "push":
            discard = self.layer.group_discard(FEED_GROUP, self.channel_name)
            try:
                await asyncio.wait_for(discard, REDIS_TIMEOUT)
            except REDIS_ERRORS:  # the membership expires in Redis by itself
                pass

    async def receive(self, text_data: str | None = None, bytes_data=None) -> None:
        """The feed is one-way; anything the browser sends is ignored."""

    async def _run(self) -> None:
        """Be pushed while Redis answers, poll while it does not; end at logout."""
        while True:
            if self.layer is not None and await self._subscribe():
                await self._report("push")
                if not await self._send_changes() or not await self._listen():
                    break
            if self.layer is not None:
                await self._report("polling", "Redis unreachable")
            seconds = RETRY_SECONDS if self.layer is not None else None
            poller = asyncio.create_task(self._poll(seconds), name=POLL_TASK)
            if not await poller:
                break
        await self.close(code=CLOSE_UNAUTHORIZED)

    async def _subscribe(self) -> bool:
        """Join the feed's group (or renew the membership); False if Redis fails."""
        join = self.layer.group_add(FEED_GROUP, self.channel_name)
        try:
            await asyncio.wait_for(join, REDIS_TIMEOUT)
        except REDIS_ERRORS:
            return False
        return True

    async def _listen(self) -> bool:
        """Send the changes each time the group is told of some. Return False at
        logout, True when Redis fails (the caller then polls)."""
        receiving = asyncio.ensure_future(self.layer.receive(self.channel_name))
        try:
            while True:
                done, _ = await asyncio.wait({receiving}, timeout=HEARTBEAT_SECONDS)
                if not done:  # quiet: check the login, and that Redis still answers
                    if not await self._still_logged_in():
                        return False
                    if not await self._subscribe():
                        return True
                    continue
                try:
                    receiving.result()
                except REDIS_ERRORS:
                    return True
                receiving = asyncio.ensure_future(self.layer.receive(self.channel_name))
                if not await self._send_changes():
                    return False
        finally:
            receiving.cancel()

    async def _poll(self, seconds: float | None) -> bool:
        """Send the changes every POLL_SECONDS for `seconds` (None: for ever).
        Return False at logout."""
        loop = asyncio.get_running_loop()
        until = None if seconds is None else loop.time() + seconds
        while until is None or loop.time() < until:
            if not await self._send_changes():
                return False
            await asyncio.sleep(POLL_SECONDS)
        return True

    async def _send_changes(self) -> bool:
        """Send the rows changed since the last read; False once logged out."""
        # The scope's user was read once, at the handshake: a logout (or a
        # password change, or an expired session) must end the feed too.
        if not await self._still_logged_in():
            return False
        try:
            rows = await self._changes()
        except DatabaseError:  # e.g. locked by a long write: try next time
            logger.warning("live feed read failed", exc_info=True)
            rows = []
        if rows:
            await self.send(text_data=json.dumps({"rows": rows}))
        return True

    async def _report(self, mode: str, reason: str = "") -> None:
        """Tell the page whether it is pushed or polled, when that changes."""
        if mode != self.mode:
            self.mode = mode
            status = {"mode": mode, "reason": reason}
            await self.send(text_data=json.dumps({"feed": status}))

    @database_sync_to_async
    def _still_logged_in(self) -> bool:
        session = self.scope.get("session")
        key = getattr(session, "session_key", None)
        return session_login_valid(session_key=key, user=self.scope.get("user"))

    @database_sync_to_async
    def _changes(self) -> list[dict]:
        """Read changed rows and render them (in a worker thread: ORM + templates)."""
        # Whose calls, read every tick: a claim made or given up shows at once.
        viewer = viewer_of(user=self.scope["user"], person=self.person)
        below = request_selectors.exchange_ids_between(
            above=max(0, self.after_id - LATE_WINDOW), upto=self.after_id
        )
        if self.shown is None:
            self.shown = set(below)
        late = [pk for pk in below if pk not in self.shown]
        changed = request_selectors.exchange_live_changes(
            after_id=self.after_id,
            watch_ids=self.watch_ids,
            viewer=viewer,
            late_ids=late,
        )
        # A late id that is not returned is not the viewer's: never ask again.
        self.shown.update(late, (row.pk for row in changed))
        if not changed:
            return []
        self.after_id = max([self.after_id, *(row.pk for row in changed)])
        floor = self.after_id - LATE_WINDOW
        self.shown = {pk for pk in self.shown if pk > floor}
        flying = [row.pk for row in changed if row.state == Exchange.State.IN_PROGRESS]
        finished = {row.pk for row in changed} - set(flying)
        self.watch_ids = [v for v in self.watch_ids if v not in finished] + flying
        with timezone.override(self.zone):
            return [
                {
                    "id": row.pk,
                    "state": row.state,
                    "html": render_to_string(
                        "dashboard/partials/exchange_row.html", {"row": row}
                    ),
                }
                for row in changed
            ]


def _int(value: str) -> int:
    """Return an id from the query string, clamped to SQLite's integer range."""
    try:
        return min(max(0, int(value)), ID_MAX)
    except ValueError:
        return 0
