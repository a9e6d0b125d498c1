"""The relay: every request except /health goes upstream, and its answer comes back
byte for byte as it arrives. Recording happens off the hot path (apps.proxy.writer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpcore
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

import claudemon
from apps.proxy import selectors
from apps.proxy.models import Exchange
from apps.proxy.pool import PoolFull
from apps.proxy.recorder import Call, header_value
from apps.proxy.routing.match import route_for
from apps.proxy.routing.reload import routing_health
from apps.proxy.routing.serve import route_serve
from apps.proxy.upstream import (
    UPSTREAM_ERRORS,
    headers_forwardable,
    upstream_pool,
    upstream_reach,
    upstream_request,
    url_without_credentials,
)
from apps.proxy.writer import recording, recording_submit

if TYPE_CHECKING:  # only handler.py imports Django's handler modules at run time
    from django.core.handlers.asgi import ASGIRequest

State = Exchange.State
log = logging.getLogger("apps.proxy.views")


class RelayResponse(StreamingHttpResponse):
    """A streaming response that sends exactly the upstream's headers.

    Django's ASGI handler takes the header list from `items()`; returning the raw
    pairs keeps their bytes, order and duplicates (several set-cookie lines) and adds
    nothing of Django's own (no default Content-Type).
    """

    def __init__(
        self, content: AsyncIterator[bytes], *, status: int, raw_headers: list
    ) -> None:
        super().__init__(content, status=status)
        self._raw_headers = raw_headers
        self._relay_chunks = content

    def items(self) -> list:
        return self._raw_headers

    def __aiter__(self) -> AsyncIterator[bytes]:
        # Hand Django's sender our generator itself: its wrappers (make_bytes and
        # two more async generator layers per chunk) add nothing for bytes.
        return self._relay_chunks


async def relay(request: ASGIRequest) -> HttpResponseBase:
    """Forward one call upstream and stream the answer back as it arrives."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    call = _call_open(request)
    recording_submit("start", call)
    route = route_for(call)  # None unless a rule of CLAUDEMON_ROUTES_FILE takes it
    if route is not None:
        return await route_serve(call, route, client=request.scope.get("client"))
    try:
        upstream = await _upstream_send(call)
    except UPSTREAM_ERRORS as exc:
        return _failure_response(call, exc)
    except Exception as exc:  # a bug of ours: answer, record, and log it
        log.exception("relay failed before reaching the upstream")
        return _failure_response(call, exc)
    call.status_code = upstream.status
    call.response_headers = upstream.headers
    call.ttfb_ms = (time.perf_counter() - call.t0) * 1000
    return RelayResponse(
        _relay_body(call, upstream),
        status=upstream.status,
        raw_headers=headers_forwardable(upstream.headers),
    )


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """Refuse what only a web page sends: a Host that is not one of the relay's
    names (DNS rebinding), an Origin, or a cross-site fetch, unless allowed.

    Claude Code and the SDKs send no Origin or Sec-Fetch-Site and the Host of their
    base URL. A browser may POST text/plain here without a preflight, so answering
    would let any page relay calls and forge recorded sessions. Three lookups.
    """
    meta = request.META
    host = meta.get("HTTP_HOST")
    if host is not None and not _relay_host(host):
        return _forbidden(
            f"Host {host!r} is not a name of this relay (CLAUDEMON_RELAY_HOSTS)."
        )
    origin = meta.get("HTTP_ORIGIN")
    if origin is not None and origin not in settings.CLAUDEMON_RELAY_ORIGINS:
        return _forbidden(
            f"requests from web pages are refused (Origin {origin!r} is not in "
            "CLAUDEMON_RELAY_ORIGINS)."
        )
    site = meta.get("HTTP_SEC_FETCH_SITE")
    if origin is None and site in ("cross-site", "same-site"):
        return _forbidden(
            f"requests from web pages are refused (Sec-Fetch-Site: {site})."
        )
    return None


def _relay_host(host: str) -> bool:
    names = settings.CLAUDEMON_RELAY_HOSTS
    host = host.lower()
    name = host[: host.find("]") + 1] if host.startswith("[") else host.split(":")[0]
    return name in names or "*" in names


def _forbidden(message: str) -> HttpResponse:
    log.warning("refused a request: %s", message)
    error = {"type": "permission_error", "message": f"claudemon {message}"}
    return JsonResponse({"type": "error", "error": error}, status=403)


def _call_open(request: ASGIRequest) -> Call:
    scope = request.scope
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
    return Call(
        uid=uuid.uuid4(),
        started_at=datetime.now(UTC),
        t0=time.perf_counter(),
        method=scope["method"],
        path=raw_path.decode("latin-1"),
        query=_text(scope.get("query_string", b"")),
        request_headers=list(scope["headers"]),
        request_body=request.body,
    )


def _text(value: bytes | str) -> str:
    # ASGI says bytes; Django's test AsyncClient passes str.
    return value.decode("latin-1") if isinstance(value, bytes) else value


async def _upstream_send(call: Call) -> httpcore.Response:
    outgoing = upstream_request(
        method=call.method,
        raw_path=call.path.encode("latin-1"),
        query_string=call.query.encode("latin-1"),
        headers=call.request_headers,
        body=call.request_body,
    )
    response = await upstream_pool().handle_async_request(outgoing)
    upstream_reach.answered()  # for /ready: no connect check while calls flow
    return response


async def _relay_body(call: Call, upstream: httpcore.Response) -> AsyncIterator[bytes]:
    """Yield each upstream chunk as it arrives; keep a reference for the record."""
    chunks = call.chunks
    try:
        async for chunk in upstream.aiter_stream():
            chunks.append(chunk)
            yield chunk
        call.state = State.COMPLETE
    except (asyncio.CancelledError, GeneratorExit):
        call.state = State.CLIENT_DISCONNECTED
        call.error_type = "client_disconnected"
        call.error_message = "The client disconnected before the response ended."
        raise
    except UPSTREAM_ERRORS as exc:
        call.state = State.UPSTREAM_ERROR
        call.error_type, call.error_message = _describe(exc)
        # Raising here would leave daphne unable to end the response (its
        # exception handler cannot reply once a response started), so the stream
        # ends cleanly; an SSE client also gets the error event Anthropic itself
        # sends when a stream fails after its 200.
        if _ends_on_event_boundary(call):
            yield _error_event(call.error_message)
    except Exception as exc:  # a bug of ours must not take daphne's reaper down
        log.exception("relay failed while streaming")
        call.state = State.PROXY_ERROR
        call.error_type, call.error_message = (
            "proxy_error",
            f"claudemon failed: {exc!r}",
        )
    finally:
        call.duration_ms = (time.perf_counter() - call.t0) * 1000
        await upstream.aclose()  # on a disconnect this cancels the upstream request
        recording_submit("finish", call)


def _ends_on_event_boundary(call: Call) -> bool:
    """True when an error event can be appended without corrupting the stream."""
    content_type = header_value(call.response_headers, b"content-type")
    encoding = header_value(call.response_headers, b"content-encoding")
    last = call.chunks[-1] if call.chunks else b"\n\n"
    return (
        content_type.startswith("text/event-stream")
        and encoding in ("", "identity")
        and (last.endswith(b"\n\n") or last.endswith(b"\r\n\r\n"))
    )


def _error_event(message: str) -> bytes:
    error = {"type": "error", "error": {"type": "api_error", "message": message}}
    return b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n"


def _failure_response(call: Call, exc: Exception) -> HttpResponse:
    """Answer like Anthropic would when the upstream cannot be reached or times out."""
    if isinstance(exc, UPSTREAM_ERRORS):
        status = _failure_status(exc)
        call.error_type, call.error_message = _describe(exc)
        call.state = State.UPSTREAM_ERROR
    else:
        status = 500
        call.error_type = "proxy_error"
        call.error_message = f"claudemon failed to relay this request: {exc!r}"
        call.state = State.PROXY_ERROR
    call.status_code = status
    call.duration_ms = (time.perf_counter() - call.t0) * 1000
    body = {
        "type": "error",
        "error": {"type": "api_error", "message": call.error_message},
    }
    payload = json.dumps(body).encode()
    call.response_headers = [(b"content-type", b"application/json")]
    call.chunks = [payload]
    recording_submit("finish", call)
    return HttpResponse(payload, status=status, content_type="application/json")


def _failure_status(exc: Exception) -> int:
    """503 at the pool's bound (Claude Code retries it), 504 on a timeout, else 502."""
    if isinstance(exc, PoolFull):
        return 503
    return 504 if isinstance(exc, httpcore.TimeoutException) else 502


def _describe(exc: Exception) -> tuple[str, str]:
    """Name the cause of an upstream failure in words a user can act on."""
    upstream = url_without_credentials(settings.CLAUDEMON_UPSTREAM_URL)
    if isinstance(exc, PoolFull):
        return "relay_busy", (
            f"claudemon already has {settings.CLAUDEMON_UPSTREAM_CONNECTIONS} calls "
            f"in flight to the upstream {upstream} "
            "(CLAUDEMON_UPSTREAM_CONNECTIONS); try again when some have finished."
        )
    if isinstance(exc, httpcore.ConnectTimeout):
        return "upstream_connect_timeout", (
            f"claudemon could not connect to the upstream {upstream} within "
            f"{settings.CLAUDEMON_CONNECT_TIMEOUT:g} s (CLAUDEMON_CONNECT_TIMEOUT)."
        )
    if isinstance(exc, httpcore.TimeoutException):
        return "upstream_idle_timeout", (
            f"The upstream {upstream} sent nothing for "
            f"{settings.CLAUDEMON_IDLE_TIMEOUT:g} s (CLAUDEMON_IDLE_TIMEOUT)."
        )
    if isinstance(exc, httpcore.ConnectError):
        return (
            "upstream_unreachable",
            f"claudemon could not connect to the upstream {upstream}: {exc}",
        )
    return "upstream_connection_error", (
        f"The connection to the upstream {upstream} failed: {type(exc).__name__}: {exc}"
    )


async def health(request: HttpRequest) -> JsonResponse:
    """Report relay health: 200 while relaying works; recording trouble: degraded."""
    database = await sync_to_async(selectors.database_status, thread_sensitive=False)()
    backlog = recording()
    backlog.start()  # a spill left by an earlier process is written without a call
    stuck, problem = backlog.database_problem(), backlog.problem()
    report: dict[str, Any] = {
        "status": "ok" if database == "ok" and not problem else "degraded",
        "version": claudemon.__version__,
        "upstream": url_without_credentials(settings.CLAUDEMON_UPSTREAM_URL),
        "database": f"error: {stuck}" if stuck else database,
        "recording": problem or "ok",
        "recording_backlog": backlog.backlog(),
        **routing_health(),
        "quarantine": backlog.quarantine(),
        "legacy_spill": backlog.legacy_spill or None,
    }
    return JsonResponse(report)


async def ready(request: HttpRequest) -> JsonResponse:
    """Say whether the relay can serve: the upstream reachable (a call answered in
    the last 30 s, else a connect check kept 10 s) and its recording threads alive.

    A busy or absent database does not make a relay unready: every relay shares it,
    so a load balancer would take them all out at once, while each relay's backlog
    and spill file hold the calls until it is back (/health says degraded)."""
    upstream = await upstream_reach.check()
    backlog = recording()
    backlog.start()
    problem = backlog.own_problem()
    report = {
        "status": "not ready" if upstream or problem else "ready",
        "upstream": upstream or "ok",
        "recording": problem or "ok",
        "recording_backlog": backlog.backlog(),
    }
    return JsonResponse(report, status=503 if upstream or problem else 200)
