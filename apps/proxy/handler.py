"""The relay's ASGI handler: Django's request cycle, without thread hops.

Django's own handler costs the relay, per call:
- asgiref's ThreadSensitiveContext, which starts a one-thread executor the first
  time sync code runs in the request and joins it at the end (the largest single
  item bench/profile_relay.py found);
- `sync_to_async(response.close)` once the response is sent: a hop to a worker
  thread and back, there only because request_finished receivers may touch the
  database. The relay drops those receivers (CLAUDEMON_LEAN_REQUESTS), so with no
  receiver left the close runs on the loop;
- the request body spooled through a temporary file object chunk by chunk; the
  relay holds every body in memory anyway (it forwards and records it), so the
  chunks are joined once.

The rest is Django's cycle as is: request_started, the request object, URL
resolution and middleware through `get_response_async`, and a watch for the
client going away while the response is produced or streamed, which cancels the
view (the relay records the exchange as client_disconnected).
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpRequest, HttpResponseBase
from django.urls import set_script_prefix


class RelayASGIHandler(ASGIHandler):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"The relay serves HTTP only, not {scope['type']!r}.")
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body = await _read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        await signals.request_started.asend(sender=self.__class__, scope=scope)
        request, refusal = self.create_request(scope, io.BytesIO(body))
        if request is None:
            await self.send_response(refusal, send)
            await _close(refusal)
            return
        serving = asyncio.create_task(self._serve(request, send))
        watching = asyncio.create_task(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait((serving, watching), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server gave up on this request
            serving.cancel()
            watching.cancel()
            raise
        if not serving.done():  # the client left first: stop producing
            serving.cancel()
        watching.cancel()
        try:
            await watching
        except (asyncio.CancelledError, RequestAborted):
            pass
        try:
            response = await serving
        except asyncio.CancelledError:
            await signals.request_finished.asend(sender=self.__class__)
            return
        await _close(response)

    async def _serve(self, request: HttpRequest, send: Any) -> HttpResponseBase:
        response = await self.run_get_response(request)
        try:
            await self.send_response(response, send)
        except asyncio.CancelledError:  # the client left mid-response
            pass
        return response


async def _read_body(receive: Any) -> bytes:
    """The whole request body (raises RequestAborted if the client leaves first)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestAborted()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _close(response: HttpResponseBase) -> None:
    """Close a sent response, on the loop unless a sync receiver needs a thread."""
    if signals.request_finished.has_listeners():
        await sync_to_async(response.close)()
    else:
        response.close()
