"""The relay's ASGI application: Django's own handler, reading a request body into
one bytes object, with one worker thread for the whole process instead of one
started and joined per request.

One worker thread: Django's ASGIHandler runs each request in a fresh asgiref
ThreadSensitiveContext, and every request ends with a thread-sensitive
`sync_to_async(response.close)`: the context starts a one-thread executor for that
close and joins it when the request ends, a thread per relayed call (the largest
single item bench/profile_relay.py found). asgiref lets the outermost context name
its executor (`ThreadSensitiveContext(executor=...)`, public API), so Django's
handler runs unchanged inside a context holding one long-lived executor. CPU per
request, in-process on a trivial streaming view: Django's handler as is 544-736 µs,
inside this context 185-269 µs.

One bytes object: the stock `read_body` spools the body into a
SpooledTemporaryFile and `request.body` copies it out again, so a 24 MB body was
held three times at once (75 MB of peak memory, tests/proxy/test_recording_faults.
py). `read_body` is the handler's hook for reading the body (a public method, its
signature and its caller pinned in tests/proxy/test_pins.py); this one joins the
chunks once and hands Django a BytesIO over them, which `request.body` reads back
without a copy. Nothing else of the handler is replaced.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class RelayHandler(ASGIHandler):
    """Django's ASGI handler, reading the request body into one bytes object."""

    async def read_body(
        self, receive: Callable[[], Awaitable[Mapping[str, Any]]]
    ) -> io.BytesIO:
        """Return the request's body; raise RequestAborted if the client left."""
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                # BytesIO shares a bytes object it starts with, and read() of
                # the whole hands that same object back: no copy either way.
                return io.BytesIO(b"".join(chunks))


def relay_application(handler: ASGIApp | None = None) -> ASGIApp:
    """Return the relay's handler (or another app), its sync work on one
    long-lived thread."""
    handler = handler or RelayHandler()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-sync")

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # A context with an executor can be entered once: one per request.
        async with ThreadSensitiveContext(executor=executor):
            await handler(scope, receive, send)

    return application
