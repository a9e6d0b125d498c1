"""The live feed: a WebSocket that pushes exchange rows as they start and finish.

It learns of changes by polling the shared SQLite database (the relay runs in
another process and writes there), so it needs nothing from the core process.
Rows are rendered with the same partial as the live page.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError
from django.template.loader import render_to_string
from django.utils import timezone

from apps.dashboard import page_state
from apps.dashboard.auth import session_login_valid
from apps.dashboard.selectors import requests as request_selectors
from apps.dashboard.selectors.claims import viewer_of
from apps.indexing.schemas import ID_MAX
from apps.proxy.models import Exchange

POLL_SECONDS = 0.35
logger = logging.getLogger(__name__)
CLOSE_UNAUTHORIZED = 4401


class LiveFeedConsumer(AsyncWebsocketConsumer):
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
        await self.accept()
        self.poller = asyncio.create_task(self._poll_forever())

    async def disconnect(self, code: int) -> None:
        poller = getattr(self, "poller", None)
        if poller is not None:
            poller.cancel()

    async def receive(self, text_data: str | None = None, bytes_data=None) -> None:
        """The feed is one-way; anything the browser sends is ignored."""

    async def _poll_forever(self) -> None:
        while True:
            # The scope's user was read once, at the handshake: a logout (or a
            # password change, or an expired session) must end the feed too.
            if not await self._still_logged_in():
                await self.close(code=CLOSE_UNAUTHORIZED)
                return
            try:
                rows = await self._changes()
            except DatabaseError:  # e.g. locked by a long write: try next tick
                logger.warning("live feed poll failed", exc_info=True)
                rows = []
            if rows:
                await self.send(text_data=json.dumps({"rows": rows}))
            await asyncio.sleep(POLL_SECONDS)

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
        changed = request_selectors.exchange_live_changes(
            after_id=self.after_id, watch_ids=self.watch_ids, viewer=viewer
        )
        if not changed:
            return []
        self.after_id = max([self.after_id, *(row.pk for row in changed)])
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
