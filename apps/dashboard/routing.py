"""WebSocket routing of the data deployment (the live feed lands here).

Every connection passes three layers before any consumer sees it: the Origin
must be one of ALLOWED_HOSTS (a page on another site cannot ride the user's
session cookie), the session is read (AuthMiddlewareStack), and an anonymous
connection is refused at the handshake with close code 4401.
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings
from django.urls import path

from apps.dashboard.consumers import LiveFeedConsumer

CLOSE_UNAUTHORIZED = 4401

_live_feed = LiveFeedConsumer.as_asgi()
websocket_urlpatterns: list = [path("ws/live/", _live_feed, name="live-feed")]
if settings.FORCE_SCRIPT_NAME:
    # Behind the front door pages open the feed under the prefix (CLAUDEMON_DATA_PREFIX,
    # FORCE_SCRIPT_NAME); channels, unlike Django's HTTP handler, strips only an ASGI
    # root_path, which neither daphne nor the front door sets.
    prefix = settings.FORCE_SCRIPT_NAME.strip("/")
    websocket_urlpatterns.append(path(f"{prefix}/ws/live/", _live_feed))


class WebsocketLoginRequired:
    """ASGI middleware: refuse websockets of anonymous users (close code 4401)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        user = scope.get("user")
        if scope["type"] == "websocket" and not getattr(
            user, "is_authenticated", False
        ):
            message = await receive()
            if message["type"] == "websocket.connect":
                # Closing before accepting refuses the handshake (HTTP 403 at
                # the wire); ASGI test clients see the 4401 code.
                await send({"type": "websocket.close", "code": CLOSE_UNAUTHORIZED})
            return None
        return await self.inner(scope, receive, send)


def websocket_app(inner: Any) -> Any:
    """Wrap a websocket application with the origin, session and login checks."""
    return AllowedHostsOriginValidator(
        AuthMiddlewareStack(WebsocketLoginRequired(inner))
    )


websocket_application = websocket_app(URLRouter(websocket_urlpatterns))
