"""Answer a call a rule took: its target first, then each fallback in turn.

A target is tried until one answers: a connection failure, a timeout, a 429 or a
5xx from any but the last target moves on to the next (nothing has reached the
client yet). What the last target says is what Claude Code gets, in Anthropic's
shape: streamed events re-synthesised from an OpenAI-compatible provider, the
bytes as they come from an Anthropic-compatible one, errors mapped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, TypeVar

import httpcore
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from apps.proxy.models import Exchange
from apps.proxy.recorder import Call, Header, header_value
from apps.proxy.routing.config import Target
from apps.proxy.routing.convert import (
    request_to_openai,
    response_from_openai,
    tokens_estimate,
)
from apps.proxy.routing.match import Route
from apps.proxy.routing.providers import (
    error_from_provider,
    provider_note,
    provider_refusal,
    provider_request,
    provider_send,
    provider_targets_allowed,
)
from apps.proxy.routing.record import RoutedCall
from apps.proxy.routing.stream import (
    StreamConverter,
    chunks_with_pings,
    error_event,
    events_from_message,
    sse,
)
from apps.proxy.upstream import UPSTREAM_ERRORS, headers_forwardable
from apps.proxy.writer import recording_submit

State = Exchange.State
log = logging.getLogger("apps.proxy.routing")
_PING = sse("ping", {"type": "ping"})
_ERROR_BODY_LIMIT = 1 << 20  # an error page is never worth more than this
_DRAIN_SECONDS = 1.0
_Response = TypeVar("_Response", bound=HttpResponseBase)


async def route_serve(call: Call, route: Route, *, client: Any) -> HttpResponseBase:
    """Serve a routed call; never raises (a bug of ours answers 500 and is logged)."""
    call.routing = RoutedCall(route=route.rule.name, agent=route.agent)
    try:
        return await _serve(call, route, client)
    except Exception as exc:
        log.exception("routing failed")
        message = f"claudemon failed to route this call: {exc!r}"
        return _error(call, 500, "api_error", message, state=State.PROXY_ERROR)


async def _serve(call: Call, route: Route, client: Any) -> HttpResponseBase:
    targets = provider_targets_allowed(call, route, client)
    if not targets:
        return _error(
            call, 403, "permission_error", provider_refusal(route), state=State.COMPLETE
        )
    try:
        body = json.loads(call.request_body)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        message = "The request body is not a JSON object."
        return _error(call, 400, "invalid_request_error", message, state=State.COMPLETE)
    failure: Exception | None = None
    for position, target in enumerate(targets):
        if route.endpoint == "count_tokens" and target.provider.kind == "openai":
            return _estimate(call, target, body)
        response = await _try(call, target, body, last=position == len(targets) - 1)
        if isinstance(response, Exception):
            failure = response
            continue
        if response is not None:
            return await _answer(
                call, target, response, stream=body.get("stream") is True
            )
    return _unreachable(call, failure)


async def _try(
    call: Call, target: Target, body: dict, *, last: bool
) -> httpcore.Response | Exception | None:
    """Send to one target: its response, the failure, or None to fall back."""
    record: RoutedCall = call.routing
    provider = target.provider
    stream = body.get("stream") is True
    outgoing = _outgoing_body(call, target, body)
    record.request = None if outgoing is call.request_body else outgoing
    name, model = provider.name, target.model or str(body.get("model", ""))
    try:
        request = provider_request(target, call=call, body=outgoing, stream=stream)
        response = await provider_send(target, request)
    except UPSTREAM_ERRORS as exc:
        provider_note(name, status=None, error=f"{type(exc).__name__}: {exc}")
        record.attempt(
            provider=name, model=model, outcome=type(exc).__name__, status=None
        )
        record.provider, record.model = name, model  # the last one tried, unless
        return exc  # a fallback serves the call
    provider_note(name, status=response.status)
    if not last and (response.status == 429 or response.status >= 500):
        await response.aclose()
        record.attempt(
            provider=name, model=model, outcome="fell back", status=response.status
        )
        return None
    record.attempt(provider=name, model=model, outcome="served", status=response.status)
    record.provider, record.model, record.free = name, model, provider.free
    record.provider_status = response.status
    return response


def _outgoing_body(call: Call, target: Target, body: dict) -> bytes:
    """The body the target gets: converted for OpenAI, else only the model replaced
    (and the call's own bytes when nothing changes)."""
    provider = target.provider
    if provider.kind == "openai":
        converted = request_to_openai(
            body,
            model=target.model,
            max_tokens_field=provider.max_tokens_field,
            reasoning=provider.reasoning,
        )
        return json.dumps(converted, ensure_ascii=False).encode()
    if not target.model or target.model == body.get("model"):
        return call.request_body
    return json.dumps(dict(body, model=target.model), ensure_ascii=False).encode()


async def _answer(
    call: Call, target: Target, response: httpcore.Response, *, stream: bool
) -> HttpResponseBase:
    call.ttfb_ms = (time.perf_counter() - call.t0) * 1000
    if target.provider.kind == "anthropic":
        call.routing.passthrough = True
        headers = headers_forwardable(response.headers)
        return _stream(call, response.status, headers, _passthrough(response))
    if response.status != 200:
        payload = await _read(response)
        call.routing.chunks = [payload]
        status, error = error_from_provider(
            response.status, payload, provider=target.provider.name
        )
        retry = [
            (name.lower(), value)
            for name, value in response.headers
            if name.lower() in (b"retry-after", b"retry-after-ms")
        ]
        return _json(call, status, error, extra=retry, state=State.UPSTREAM_ERROR)
    content_type = header_value(response.headers, b"content-type")
    if stream and content_type.startswith("text/event-stream"):
        converter = StreamConverter(model=target.model)
        events = _converted(call, response, converter, target.provider.ping_interval)
        return _stream(call, 200, [(b"content-type", b"text/event-stream")], events)
    return await _whole(call, target, response, stream=stream)


async def _whole(
    call: Call, target: Target, response: httpcore.Response, *, stream: bool
) -> HttpResponseBase:
    """A provider that answered in one piece (or was asked to)."""
    payload = await _read(response)
    call.routing.chunks = [payload]
    try:
        completion = json.loads(payload)
        message = response_from_openai(completion, model=target.model)
    except (ValueError, AttributeError, TypeError, IndexError):
        text = f"{target.provider.name} answered something that is not a completion."
        return _error(call, 502, "api_error", text, state=State.UPSTREAM_ERROR)
    call.routing.provider_model = str(completion.get("model") or "")
    if stream:
        headers = [(b"content-type", b"text/event-stream")]
        return _stream(call, 200, headers, _once(events_from_message(message)))
    return _json(call, 200, message, state=State.COMPLETE)


async def _read(response: httpcore.Response) -> bytes:
    chunks, size = [], 0
    try:
        async for chunk in response.aiter_stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > _ERROR_BODY_LIMIT:
                break
    finally:
        await response.aclose()
    return b"".join(chunks)


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


async def _passthrough(response: httpcore.Response) -> AsyncGenerator[bytes, None]:
    try:
        async for chunk in response.aiter_stream():
            yield chunk
    finally:
        await response.aclose()


async def _converted(
    call: Call, response: httpcore.Response, converter: StreamConverter, interval: float
) -> AsyncGenerator[bytes, None]:
    """Anthropic events from the provider's chunks, with pings while it is quiet."""
    yield converter.start()
    chunks = response.aiter_stream()
    try:
        async for events in _provider_events(call, chunks, converter, interval):
            yield events
        if converter.done:  # the client has its message_stop: free the connection
            await _drain(chunks)
    finally:
        await response.aclose()


async def _provider_events(
    call: Call,
    chunks: AsyncIterator[bytes],
    converter: StreamConverter,
    interval: float,
) -> AsyncGenerator[bytes, None]:
    record: RoutedCall = call.routing
    ticks = chunks_with_pings(chunks, interval)
    try:
        async for chunk in ticks:
            if chunk is None:
                yield _PING
                continue
            record.chunks.append(chunk)
            events = converter.feed(chunk)
            if events:
                yield events
            if converter.done or converter.error:
                break
    finally:
        await ticks.aclose()  # leaves `chunks` open for the drain
    record.provider_model = converter.provider_model
    if converter.error is not None:
        message = str(converter.error.get("message") or converter.error)
        _failed(call, "provider_stream_error", message)
        yield error_event("api_error", f"{record.provider}: {message}")
    elif converter.finished:
        yield converter.finish()
    else:
        message = f"{record.provider} ended its stream before the message was complete."
        _failed(call, "provider_stream_incomplete", message)
        yield error_event("api_error", message)


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows [DONE] (the end of the chunked body, at once from any sane
    server): only a response read to its end gives its connection back to the
    pool, and a remote provider's next call then skips a TCP and TLS handshake."""
    try:
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for _ in chunks:
                pass
    except (TimeoutError, *UPSTREAM_ERRORS):
        pass


def _failed(call: Call, error_type: str, message: str) -> None:
    call.state = State.UPSTREAM_ERROR
    call.error_type, call.error_message = error_type, message


def _headers(call: Call, headers: list[Header]) -> list[Header]:
    """The answer's headers: the provider's (passthrough) or ours, plus the route's."""
    record: RoutedCall = call.routing
    names = {name.lower() for name, _ in headers}
    extra = [] if b"request-id" in names else [(b"request-id", _request_id())]
    return [
        *headers,
        *extra,
        (b"x-claudemon-route", record.route.encode("utf-8", "replace")),
        (b"x-claudemon-provider", record.provider.encode("utf-8", "replace")),
    ]


def _request_id() -> bytes:
    return f"req_routed_{uuid.uuid4().hex}".encode()


def _response(response: _Response, headers: list[Header]) -> _Response:
    for name, value in headers:
        response[name.decode("latin-1")] = value.decode("latin-1")
    return response


def _stream(
    call: Call, status: int, headers: list[Header], pieces: AsyncGenerator[bytes, None]
) -> HttpResponseBase:
    call.status_code = status
    call.response_headers = _headers(call, headers)
    body = _relayed(call, pieces)
    return _response(StreamingHttpResponse(body, status=status), call.response_headers)


async def _relayed(
    call: Call, pieces: AsyncGenerator[bytes, None]
) -> AsyncGenerator[bytes, None]:
    """Send each piece at once, keep it for the record; end like the relay does."""
    try:
        async for piece in pieces:
            call.chunks.append(piece)
            yield piece
        if call.state == State.IN_PROGRESS:
            call.state = State.COMPLETE
    except (asyncio.CancelledError, GeneratorExit):
        call.state = State.CLIENT_DISCONNECTED
        call.error_type = "client_disconnected"
        call.error_message = "The client disconnected before the response ended."
        raise
    except UPSTREAM_ERRORS as exc:
        _failed(call, "provider_connection_error", f"{type(exc).__name__}: {exc}")
        if (
            header_value(call.response_headers, b"content-type").startswith(
                "text/event-stream"
            )
            and not call.routing.passthrough
        ):
            yield error_event("api_error", call.error_message)
    finally:
        await pieces.aclose()  # closes the provider's response on every way out
        call.duration_ms = (time.perf_counter() - call.t0) * 1000
        recording_submit("finish", call)


def _json(
    call: Call, status: int, payload: dict, *, state: str, extra: Sequence[Header] = ()
) -> HttpResponseBase:
    body = json.dumps(payload).encode()
    headers = _headers(call, [(b"content-type", b"application/json"), *extra])
    call.status_code, call.response_headers, call.chunks = status, headers, [body]
    call.state = state
    call.duration_ms = (time.perf_counter() - call.t0) * 1000
    recording_submit("finish", call)
    return _response(HttpResponse(body, status=status), headers)


def _error(
    call: Call, status: int, kind: str, message: str, *, state: str
) -> HttpResponseBase:
    if state != State.COMPLETE:
        call.error_type, call.error_message = kind, message
    payload = {"type": "error", "error": {"type": kind, "message": message}}
    return _json(call, status, payload, state=state)


def _estimate(call: Call, target: Target, body: dict) -> HttpResponseBase:
    """count_tokens where the provider has none: an estimate, and a header says so."""
    record: RoutedCall = call.routing
    record.provider, record.model, record.estimate = (
        target.provider.name,
        target.model,
        True,
    )
    record.attempt(
        provider=record.provider, model=target.model, outcome="estimated", status=None
    )
    extra = [(b"x-claudemon-token-count", b"estimate: characters / 4")]
    payload = {"input_tokens": tokens_estimate(body)}
    return _json(call, 200, payload, state=State.COMPLETE, extra=extra)


def _unreachable(call: Call, failure: Exception | None) -> HttpResponseBase:
    """Every target failed before answering: 504 for a timeout, else 502."""
    record: RoutedCall = call.routing
    tried = ", ".join(f"{a['provider']} ({a['outcome']})" for a in record.attempts)
    status = 504 if isinstance(failure, httpcore.TimeoutException) else 502
    message = f"claudemon could not reach the route's providers: {tried}."
    call.error_type = "provider_timeout" if status == 504 else "provider_unreachable"
    call.error_message = message
    payload = {"type": "error", "error": {"type": "api_error", "message": message}}
    return _json(call, status, payload, state=State.UPSTREAM_ERROR)
