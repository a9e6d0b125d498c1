"""The relay's ASGI application: Django's own handler, with one worker thread for the
whole process instead of one started and joined per request.

Django's ASGIHandler runs each request in a fresh asgiref ThreadSensitiveContext,
and every request ends with a thread-sensitive `sync_to_async(response.close)`: the
context starts a one-thread executor for that close and joins it when the request
ends, a thread per relayed call (the largest single item bench/profile_relay.py
found). asgiref lets the outermost context name its executor, and an inner context
without one joins it (`ThreadSensitiveContext(executor=...)`, public API); so
Django's handler runs whole and unchanged inside a context holding one long-lived
single-thread executor, where every close runs.

Measured in-process on a trivial streaming view (3,000 requests, two runs each), CPU
per request: Django's handler as is 544-736 µs; inside this context 185-269 µs; the
former subclass of ASGIHandler that skipped the close's thread hop 66-68 µs, but it
re-implemented `ASGIHandler.handle` on Django internals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def relay_application(django_app: ASGIApp) -> ASGIApp:
    """Wrap Django's ASGI handler so its sync work shares one long-lived thread."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-sync")

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # A context with an executor can be entered once: one per request.
        async with ThreadSensitiveContext(executor=executor):
            await django_app(scope, receive, send)

    return application
