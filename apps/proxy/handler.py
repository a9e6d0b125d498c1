"""The relay's ASGI handler: Django's, without a thread per request.

Django wraps every request in asgiref's ThreadSensitiveContext, which creates a
one-thread executor the first time sync code runs in that request and joins it
at the end. The relay runs no sync code except Django's final
`sync_to_async(response.close)`, so that context cost a thread start and join per
relayed call (the largest single item in bench/profile_relay.py). Without the
context, that call runs on asgiref's one shared sync thread instead.
"""

from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIHandler


class RelayASGIHandler(ASGIHandler):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"The relay serves HTTP only, not {scope['type']!r}.")
        await self.handle(scope, receive, send)
