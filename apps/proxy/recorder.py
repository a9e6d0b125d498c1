"""Turn a relayed call's raw material into an Exchange row: pure functions, no I/O.

The relay only collects bytes while it forwards them (`Call`); everything here runs
later, on the recording thread, so parsing never delays a byte to the client.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

import brotli
import zstandard

from apps.proxy.bodies import body_encode, body_encode_request
from apps.proxy.models import Exchange
from apps.proxy.pricing import Usage, usage_cost
from apps.proxy.sse import sse_events

Header = tuple[bytes, bytes]
State = Exchange.State


@dataclass(slots=True)
class Call:
    """What the relay collects about one call while it forwards it."""

    uid: uuid.UUID
    started_at: datetime
    t0: float  # perf_counter at start; timings are measured on the monotonic clock
    method: str
    path: str
    query: str
    request_headers: list[Header]
    request_body: bytes
    status_code: int | None = None
    response_headers: list[Header] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    ttfb_ms: float | None = None
    duration_ms: float | None = None
    state: str = State.IN_PROGRESS
    error_type: str = ""
    error_message: str = ""
    routing: Any = None  # apps.proxy.routing.record.RoutedCall for a routed call
    # The full bodies' sizes when request_body and chunks hold only their start
    # (read back from a spill file, which caps bodies); None: they are whole.
    request_size: int | None = None
    response_size: int | None = None
    # Read back from a spill file (whose headers are fingerprints already): the
    # credential_fingerprint() of the call's own headers; None: read them.
    credential: str | None = None


# --- secrets -----------------------------------------------------------------

SECRET_HEADERS = frozenset(
    {"x-api-key", "authorization", "proxy-authorization", "cookie", "set-cookie"}
)
_SCHEMES = ("bearer ", "basic ")
# What this module stores for a secret; kept as is when redacted again (a step read
# back from a spill file was redacted before it was written).
_FINGERPRINT = re.compile(r"sha256:[0-9a-f]{12}\Z")


def secret_fingerprint(value: str) -> str:
    """Return `sha256:<first 12 hex>`, enough to tell two keys apart, useless to use."""
    return (
        "sha256:"
        + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    )


def credential_fingerprint(headers: Iterable[Header], *, redacted: bool = False) -> str:
    """Return the fingerprint of the API key or OAuth token a call was sent with
    (x-api-key, else an Authorization bearer), or "" when it carries neither.

    A call's own key is always hashed, even one shaped as a fingerprint, so
    nobody sends another's fingerprint as a key to have a call recorded as
    theirs (a claim, too, hashes what is pasted). Only `redacted` headers, from
    a spill line written before lines carried the credential, keep one.
    """
    for name in (b"x-api-key", b"authorization"):
        value = header_value(headers, name).strip()
        if value.lower().startswith("bearer "):
            value = value[7:].strip()
        if value:
            return _fingerprinted(value) if redacted else secret_fingerprint(value)
    return ""


def call_credential(call: Call) -> str:
    """Return whose a call is: its credential's fingerprint (kept when read back
    from a spill file, whose headers hold fingerprints, not keys)."""
    if call.credential is not None:
        return call.credential
    return credential_fingerprint(call.request_headers)


def headers_redact(
    headers: Iterable[Header], *, extra: Iterable[str] = ()
) -> list[list[str]]:
    """Return headers as [name, value] pairs with every secret value fingerprinted."""
    secret = SECRET_HEADERS | {name.lower() for name in extra}
    redacted = []
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        if name.lower() in secret:
            scheme = next((s for s in _SCHEMES if value.lower().startswith(s)), "")
            value = value[: len(scheme)] + _fingerprinted(value[len(scheme) :])
        redacted.append([name, value])
    return redacted


def _fingerprinted(value: str) -> str:
    return value if _FINGERPRINT.match(value) else secret_fingerprint(value)


# Query parameters that carry credentials (`?key=...` style gateways and tools).
SECRET_PARAMETERS = frozenset(
    {
        "key", "api_key", "apikey", "api-key", "x-api-key", "token", "access_token",
        "auth", "auth_token", "authorization", "refresh_token", "id_token",
        "client_secret", "secret", "password", "passwd", "pwd", "sig", "signature",
    }
)  # fmt: skip


def query_redact(query: str) -> str:
    """Return a query string with every secret parameter's value fingerprinted.

    Everything else is kept byte for byte: only `name=value` pairs whose name is
    secret change, so `?beta=true` stays as it was sent.
    """
    if "=" not in query:
        return query
    pairs = query.split("&")
    for i, pair in enumerate(pairs):
        name, equals, value = pair.partition("=")
        if equals and value and unquote_plus(name).lower() in SECRET_PARAMETERS:
            pairs[i] = f"{name}={_fingerprinted(unquote_plus(value))}"
    return "&".join(pairs)


def header_value(headers: Iterable[Header], name: bytes) -> str:
    """Return the first value of a header (name in lower case), or ''."""
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


# --- content encodings -------------------------------------------------------


def content_decode(data: bytes, encoding: str) -> bytes:
    """Undo a Content-Encoding list (applied in order, so undone in reverse).

    Tolerates a truncated body (a broken stream): returns what could be decoded.
    """
    for coding in reversed(
        [c.strip().lower() for c in encoding.split(",") if c.strip()]
    ):
        if coding in ("identity", ""):
            continue
        if coding in ("gzip", "x-gzip"):
            decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = decoder.decompress(data)
        elif coding == "deflate":
            try:
                data = zlib.decompressobj().decompress(data)
            except (
                zlib.error
            ):  # raw deflate without the zlib wrapper, as some servers send
                data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data)
        elif coding == "br":
            data = brotli.Decompressor().process(data)
        elif coding == "zstd":
            data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        else:
            raise ValueError(f"unsupported content-encoding {coding!r}")
    return data


# --- messages from events -----------------------------------------------------


def _json_loads(data: str | bytes) -> Any:
    """Parse JSON; nesting deeper than the interpreter's recursion limit (a hostile
    body 100,000 levels deep) fails as ValueError, like any other bad JSON, so every
    caller confines it to its own item instead of losing the recording thread."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply to parse") from None


def event_payloads(events: list[tuple[str, str]]) -> list[Any]:
    """Decode every event's JSON data, in one call when all of it is valid JSON."""
    try:
        decoded = _json_loads("[" + ",".join(data for _, data in events) + "]")
        if len(decoded) == len(events):  # an element per event: nothing misaligned
            return decoded
    except ValueError:
        pass
    payloads: list[Any] = []
    for _, data in events:
        try:
            payloads.append(_json_loads(data))
        except ValueError:
            payloads.append(None)
    return payloads


@dataclass(slots=True)
class Assembled:
    """A response message rebuilt from a JSON body or from stream events."""

    message: dict[str, Any] | None = None
    usage: Usage = field(default_factory=Usage)
    speed: str = ""  # usage.speed: "fast" in fast mode
    error_type: str = ""
    error_message: str = ""


def usage_from_api(usage: dict[str, Any] | None) -> Usage:
    """Map an API usage object to Usage (no 5m/1h split means all writes are 5m)."""
    usage = usage or {}
    creation = usage.get("cache_creation") or {}
    split_5m = creation.get("ephemeral_5m_input_tokens")
    split_1h = creation.get("ephemeral_1h_input_tokens")
    total_writes = usage.get("cache_creation_input_tokens") or 0
    if split_5m is None and split_1h is None:
        split_5m, split_1h = total_writes, 0
    return Usage(
        input=usage.get("input_tokens") or 0,
        output=usage.get("output_tokens") or 0,
        cache_read=usage.get("cache_read_input_tokens") or 0,
        cache_write_5m=split_5m or 0,
        cache_write_1h=split_1h or 0,
    )


def message_from_json(body: bytes) -> Assembled:
    """Read a non-streaming response body: a Message or an error object."""
    try:
        payload = _json_loads(body)
    except ValueError:
        return Assembled()
    if not isinstance(payload, dict):
        return Assembled()
    if payload.get("type") == "error":
        error = payload.get("error") or {}
        return Assembled(
            error_type=str(error.get("type", "")),
            error_message=str(error.get("message", "")),
        )
    if payload.get("type") == "message":
        usage = payload.get("usage")
        return Assembled(
            message=payload, usage=usage_from_api(usage), speed=_speed_of(usage)
        )
    return Assembled()


def message_from_events(events: list[tuple[str, str]]) -> Assembled:  # noqa: C901
    # One pass over the documented event order; stays whole so the state is visible.
    message: dict[str, Any] | None = None
    blocks: dict[int, dict[str, Any]] = {}
    partial_json: dict[int, list[str]] = {}
    usage: dict[str, Any] = {}
    result = Assembled()
    for event in event_payloads(events):
        if not isinstance(event, dict):
            continue
        kind = event.get("type")
        if kind == "message_start":
            message = dict(event.get("message") or {})
            usage = dict(message.get("usage") or {})
        elif kind == "content_block_start":
            blocks[event.get("index", len(blocks))] = dict(
                event.get("content_block") or {}
            )
        elif kind == "content_block_delta":
            index = event.get("index", 0)
            _apply_delta(
                blocks.setdefault(index, {}),
                event.get("delta") or {},
                partial_json.setdefault(index, []),
            )
        elif kind == "content_block_stop":
            index = event.get("index", 0)
            if partial_json.get(index):
                raw = "".join(partial_json.pop(index))
                try:
                    blocks.setdefault(index, {})["input"] = _json_loads(raw)
                except ValueError:
                    blocks.setdefault(index, {})["input_unparsed"] = raw
        elif kind == "message_delta":
            if message is None:
                message = {}
            message.update({k: v for k, v in (event.get("delta") or {}).items()})
            # Counts in message_delta are cumulative: overwrite, never add.
            usage.update(
                {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
            )
        elif kind == "error":
            error = event.get("error") or {}
            result.error_type = str(error.get("type", ""))
            result.error_message = str(error.get("message", ""))
    if message is not None:
        message["content"] = [blocks[i] for i in sorted(blocks)]
        message["usage"] = usage
        result.message = message
        result.usage = usage_from_api(usage)
        result.speed = _speed_of(usage)
    return result


def _speed_of(usage: object) -> str:
    speed = usage.get("speed") if isinstance(usage, dict) else None
    return speed[:16] if isinstance(speed, str) else ""


def _apply_delta(
    block: dict[str, Any], delta: dict[str, Any], json_parts: list[str]
) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = block.get("text", "") + delta.get("text", "")
    elif kind == "thinking_delta":
        block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
    elif kind == "signature_delta":
        block["signature"] = delta.get("signature", "")
    elif kind == "input_json_delta":
        json_parts.append(delta.get("partial_json", ""))
    elif kind == "citations_delta":
        block.setdefault("citations", []).append(delta.get("citation"))


def tools_called(message: dict[str, Any] | None) -> dict[str, int]:
    """Count the tools the model called in a response (not the tools it was offered)."""
    if not message:
        return {}
    names = Counter(
        block.get("name", "?")
        for block in message.get("content") or []
        if isinstance(block, dict)
        and block.get("type") in ("tool_use", "server_tool_use")
    )
    return dict(names)


# --- request facts and rate limits ------------------------------------------

_OLD_USER_ID = re.compile(r"_session_([0-9a-fA-F-]{36})")


def request_facts(body: bytes) -> dict[str, Any]:
    """Read model, streaming flag, offered tools and session from a request body.

    A body that is not a JSON object yields nothing: it is relayed and stored as is,
    with a note saying why it could not be read when it is not JSON at all.
    """
    try:
        payload = _json_loads(body) if body else None
    except ValueError as exc:
        return {"request_body_note": f"not parsed as JSON: {exc}"[:500]}
    if not isinstance(payload, dict):
        return {}
    offered = payload.get("tools")
    tools = offered if isinstance(offered, list) else []
    facts: dict[str, Any] = {
        "model_requested": str(payload.get("model") or "")[:200],
        "is_streaming": payload.get("stream") is True,
        "tools_offered": [t.get("name", "?") for t in tools if isinstance(t, dict)],
    }
    session = _session_from_metadata(payload.get("metadata"))
    if session:
        facts["session_id"] = session
    return facts


def _session_from_metadata(metadata: object) -> str:
    """Read the session id from metadata.user_id (JSON, or an older flat form)."""
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str):
        return ""
    try:
        decoded = _json_loads(user_id)
    except ValueError:
        match = _OLD_USER_ID.search(user_id)
        return match.group(1) if match else ""
    return str(decoded.get("session_id", ""))[:100] if isinstance(decoded, dict) else ""


_RATELIMIT = "anthropic-ratelimit-"


def ratelimits_parse(headers: Iterable[Header]) -> dict[str, Any]:
    """Collect anthropic-ratelimit-* and retry-after: numbers as numbers, resets ISO."""
    limits: dict[str, Any] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1").strip()
        if name.startswith(_RATELIMIT):
            key = name[len(_RATELIMIT) :]
            if key.endswith("-reset"):
                reset = _instant(value)
                limits[key] = reset.isoformat() if reset else value
            else:
                limits[key] = _number(value)
        elif name == "retry-after":
            limits["retry-after"] = _number(value)
    return limits


def _number(value: str) -> int | float | str:
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def _instant(value: str) -> datetime | None:
    """Parse a reset time: unix seconds (unified) or RFC 3339 (standard headers)."""
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _unified_columns(limits: dict[str, Any]) -> dict[str, Any]:
    def utilization(key: str) -> float | None:
        value = limits.get(key)
        return float(value) if isinstance(value, (int, float)) else None

    def reset(key: str) -> datetime | None:
        value = limits.get(key)
        return _instant(value) if isinstance(value, str) else None

    status = limits.get("unified-status")
    return {
        "unified_status": str(status)[:32] if status is not None else "",
        "unified_5h_utilization": utilization("unified-5h-utilization"),
        "unified_5h_reset": reset("unified-5h-reset"),
        "unified_7d_utilization": utilization("unified-7d-utilization"),
        "unified_7d_reset": reset("unified-7d-reset"),
    }


# --- rows --------------------------------------------------------------------


def call_start_row(
    call: Call,
    *,
    redact: Iterable[str] = (),
    max_body: int | None = None,
    relay: str = "",
) -> dict[str, Any]:
    """Return the fields known when a call starts (its in-progress row).

    A request body over max_body is stored cut at max_body and left unparsed (its
    facts would be a guess): the row says so and keeps the full size.
    """
    headers = call.request_headers
    size = len(call.request_body) if call.request_size is None else call.request_size
    body = call.request_body[:max_body] if max_body is not None else call.request_body
    session_id = header_value(headers, b"x-claude-code-session-id")[:100]
    row = {
        "uid": call.uid,
        "started_at": call.started_at,
        "method": call.method[:16],
        "path": call.path,
        "query": query_redact(call.query),
        "session_id": session_id,
        "agent_id": header_value(headers, b"x-claude-code-agent-id")[:100],
        "user_agent": header_value(headers, b"user-agent")[:500],
        "credential": call_credential(call),
        "request_headers": headers_redact(headers, extra=redact),
        "request_size": size,
        "relay": relay,
    }
    if len(body) < size:
        row["request_body"] = body_encode(body)
        row["request_body_note"] = _truncation(len(body), size)
        return row
    facts = request_facts(body)
    if row["session_id"]:
        facts.pop("session_id", None)
    row.update(facts)
    # Cut here, off the write transaction; services stores the session's blocks.
    row["request_body"] = body_encode_request(body, session_id=session_id)
    return row


def _truncation(kept: int, size: int) -> str:
    return (
        f"truncated: the first {kept:,} of {size:,} bytes kept "
        "(CLAUDEMON_RECORD_MAX_BODY)"
    )


def body_prefix(chunks: list[bytes], limit: int | None) -> bytes:
    """Join chunks up to limit bytes, without joining what would be cut anyway."""
    if limit is None:
        return b"".join(chunks)
    taken, size = [], 0
    for chunk in chunks:
        if size >= limit:
            break
        taken.append(chunk)
        size += len(chunk)
    return b"".join(taken)[:limit]


def call_finish_row(
    call: Call, *, redact: Iterable[str] = (), max_body: int | None = None
) -> dict[str, Any]:
    """Return the fields known when a call ends: outcome, usage, cost, content."""
    raw = body_prefix(call.chunks, max_body)
    size = call.response_size
    if size is None:
        size = sum(map(len, call.chunks))
    headers = call.response_headers
    row: dict[str, Any] = {
        "state": call.state,
        "status_code": call.status_code,
        "ttfb_ms": call.ttfb_ms,
        "duration_ms": call.duration_ms,
        "first_byte_at": _after(call, call.ttfb_ms),
        "ended_at": _after(call, call.duration_ms),
        "request_id": header_value(headers, b"request-id")[:200],
        "response_headers": headers_redact(headers, extra=redact),
        "error_type": call.error_type[:100],
        "error_message": call.error_message,
    }
    try:
        body = content_decode(raw, header_value(headers, b"content-encoding"))
    except (ValueError, zlib.error, brotli.error, zstandard.ZstdError) as exc:
        body = raw
        row["error_message"] = (
            row["error_message"] + f" (recorded body not decoded: {exc})"
        ).strip()
    if len(raw) < size:
        row["response_body_note"] = _truncation(len(raw), size)
    elif max_body is not None and len(body) > max_body:
        row["response_body_note"] = f"decoded: {_truncation(max_body, len(body))}"
        body = body[:max_body]
    row["response_size"] = size
    row["response_body"] = body_encode(body)
    limits = ratelimits_parse(headers)
    row["ratelimits"] = limits
    row.update(_unified_columns(limits))
    row.update(_outcome_fields(call, body, headers))
    # Routed: route, provider, what the provider got. getattr: a Call spilled to
    # disk by an older version has no routing slot.
    routing = getattr(call, "routing", None)
    if routing is not None:
        row.update(routing.row())
    return row


def _after(call: Call, ms: float | None) -> datetime | None:
    return call.started_at + timedelta(milliseconds=ms) if ms is not None else None


def _outcome_fields(call: Call, body: bytes, headers: list[Header]) -> dict[str, Any]:
    """Assemble the message and derive model, usage, tools, cost and errors."""
    content_type = header_value(headers, b"content-type").lower()
    if content_type.startswith("text/event-stream"):
        assembled = message_from_events(sse_events(body.decode("utf-8", "replace")))
    else:
        assembled = message_from_json(body)
    message = assembled.message or {}
    usage = assembled.usage
    fields: dict[str, Any] = {
        "is_streaming": content_type.startswith("text/event-stream"),
        "response_message": assembled.message,
        "model": str(message.get("model") or "")[:200],
        "message_id": str(message.get("id") or "")[:200],
        "stop_reason": str(message.get("stop_reason") or "")[:64],
        "tools_called": tools_called(assembled.message),
        "input_tokens": usage.input,
        "output_tokens": usage.output,
        "cache_read_tokens": usage.cache_read,
        "cache_write_5m_tokens": usage.cache_write_5m,
        "cache_write_1h_tokens": usage.cache_write_1h,
        "speed": assembled.speed,
        "cost_usd": usage_cost(
            model=message.get("model") or "",
            usage=usage,
            at=call.started_at,
            speed=assembled.speed,
        )
        if assembled.message
        else None,
    }
    if assembled.error_type and not call.error_type:
        fields["error_type"] = assembled.error_type[:100]
        fields["error_message"] = assembled.error_message
    return fields
