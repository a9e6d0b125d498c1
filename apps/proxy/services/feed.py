"""Tell the live feed which exchanges were just written, through Redis.

Invariants:
- Only with CLAUDEMON_REDIS_URL. Without it `exchange_publish` returns at once and
  no thread starts: the feed polls the database as it always did.
- The caller (the recorder's writer thread, once its transaction has committed)
  only puts into a bounded in-memory queue. One publisher thread, with its own
  event loop, sends to Redis with short timeouts, so a slow or absent Redis never
  holds up recording, let alone relaying.
- What waits is sent as one message, and when the queue is full changes are
  dropped: a message only wakes the feed, which then reads everything changed
  since its last read, so the next message (or its polling fallback) catches up.
- A failure is logged once when Redis goes away, and once more when it is back.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

FEED_GROUP = "claudemon.live"
# What a failing Redis raises: refused or reset connections, timeouts.
REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
_QUEUE_SIZE = 1000
_SEND_TIMEOUT = 2.0
_MAX_CHANGES = 500  # per message; the feed reads the rows anyway

log = logging.getLogger("apps.proxy.feed")


def exchange_publish(*, changes: list[dict[str, Any]]) -> None:
    """Queue the uids and states of written exchanges for the feed (never blocks)."""
    if settings.CLAUDEMON_REDIS_URL:
        _publisher().put(changes)


class Publisher:
    """The queue between the writer thread and Redis, and the thread that sends."""

    def __init__(self) -> None:
        self._queue: queue.Queue[list[dict[str, Any]]] = queue.Queue(_QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.down = False  # the last send failed

    def put(self, changes: list[dict[str, Any]]) -> None:
        self._start()
        try:
            self._queue.put_nowait(changes)
        except queue.Full:  # Redis lags far behind; the next message catches up
            pass

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="claudemon-feed-publisher", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        # Imported here: the relay loads channels only when Redis is configured.
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        loop = asyncio.new_event_loop()  # one loop: channels_redis pools per loop
        while True:
            changes = self._queue.get()
            while not self._queue.empty():
                changes = changes + self._queue.get_nowait()
            message = {"type": "exchange.changed", "changes": changes[-_MAX_CHANGES:]}
            send = layer.group_send(FEED_GROUP, message)
            try:
                loop.run_until_complete(asyncio.wait_for(send, _SEND_TIMEOUT))
            except Exception as exc:  # whatever it is, the recorder goes on
                self._failed(exc)
            else:
                self._sent()

    def _failed(self, exc: Exception) -> None:
        if not self.down:
            log.warning(
                "live feed: Redis unreachable (%s: %s); feeds poll the database "
                "until it is back",
                type(exc).__name__,
                exc,
            )
        self.down = True

    def _sent(self) -> None:
        if self.down:
            log.info("live feed: Redis reachable again; feeds are pushed")
        self.down = False


_instance: Publisher | None = None


def _publisher() -> Publisher:
    global _instance
    if _instance is None:
        _instance = Publisher()
    return _instance
