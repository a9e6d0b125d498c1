"""Anthropic's event stream re-synthesised from Chat Completions chunks.

The sequence Claude Code expects (and the SDKs check): message_start, ping, then
per content block content_block_start, its deltas (text_delta, input_json_delta)
and content_block_stop, then message_delta (stop reason, cumulative usage) and
message_stop; an `error` event when the provider's stream fails after its 200.
Framing follows https://html.spec.whatwg.org/multipage/server-sent-events.html
(parsed with the relay's one parser, apps.proxy.sse.sse_events).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from apps.proxy.routing.convert import STOP_REASONS, message_id, usage_from_openai
from apps.proxy.sse import sse_events


def sse(event: str, data: dict[str, Any]) -> bytes:
    """Frame one server-sent event as Anthropic does: event line, data line, blank."""
    return (
        b"event: " + event.encode() + b"\ndata: " + json.dumps(data).encode() + b"\n\n"
    )


class StreamConverter:
    """Re-synthesises Anthropic's event sequence from Chat Completions chunks.

    `start()` gives message_start and a ping; `feed(bytes)` the events that the
    complete chunks so far map to; `finish()` closes the open block and sends
    message_delta (stop reason, usage) and message_stop. `done` says the provider
    ended its stream properly ([DONE] or a finish_reason).
    """

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.done = False
        self.error: dict[str, Any] | None = None
        self.provider_model = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._buffer = ""
        self._open: tuple[str, int] | None = None  # ("text", -1) or ("tool", index)
        self._next = 0
        self._tools: dict[int, int] = {}  # provider tool index -> block index
        self._finish_reason: str | None = None
        self._usage: dict[str, int] = usage_from_openai(None)
        self._id = message_id(None)

    def start(self) -> bytes:
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": dict(self._usage),
        }
        return sse(
            "message_start", {"type": "message_start", "message": message}
        ) + sse("ping", {"type": "ping"})

    def feed(self, data: bytes) -> bytes:
        """Return the Anthropic events for the complete provider events in `data`."""
        self._buffer += self._decoder.decode(data)
        if "\r" in self._buffer:
            self._buffer = self._buffer.replace("\r\n", "\n").replace("\r", "\n")
        end = self._buffer.rfind("\n\n")
        if end < 0:
            return b""
        complete, self._buffer = self._buffer[: end + 2], self._buffer[end + 2 :]
        out = []
        for _, payload in sse_events(complete):
            if self.done or self.error:
                break
            out.append(self._chunk(payload))
        return b"".join(out)

    def _chunk(self, payload: str) -> bytes:
        if payload.strip() == "[DONE]":
            self.done = True
            return b""
        try:
            chunk = json.loads(payload)
        except ValueError:
            return b""  # comments and keep-alives some servers send
        if not isinstance(chunk, dict):
            return b""
        if isinstance(chunk.get("error"), dict):
            self.error = chunk["error"]
            return b""
        self.provider_model = chunk.get("model") or self.provider_model
        if chunk.get("usage"):
            self._usage = usage_from_openai(chunk["usage"])
        out = []
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                out.append(self._delta(choice.get("delta") or {}))
                if choice.get("finish_reason"):
                    self._finish_reason = choice["finish_reason"]
        return b"".join(out)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        out = []
        text = delta.get("content") or delta.get("refusal")
        if isinstance(text, str) and text:
            if self._open != ("text", -1):
                out.append(self._open_block(("text", -1), {"type": "text", "text": ""}))
            out.append(
                self._block_delta(self._next - 1, {"type": "text_delta", "text": text})
            )
        for position, call in enumerate(delta.get("tool_calls") or []):
            out.append(self._tool_delta(position, call))
        return b"".join(out)

    def _tool_delta(self, position: int, call: dict[str, Any]) -> bytes:
        out = []
        tool_index = call.get("index", position)
        function = call.get("function") or {}
        if tool_index not in self._tools:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name") or "",
                "input": {},
            }
            out.append(self._open_block(("tool", tool_index), block))
            self._tools[tool_index] = self._next - 1
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out.append(self._block_delta(self._tools[tool_index], delta))
        return b"".join(out)

    def _open_block(self, key: tuple[str, int], block: dict[str, Any]) -> bytes:
        closing = self._close_block()
        self._open = key
        index, self._next = self._next, self._next + 1
        return closing + sse(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )

    def _block_delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": delta},
        )

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        index = self._next - 1
        return sse("content_block_stop", {"type": "content_block_stop", "index": index})

    @property
    def finished(self) -> bool:
        """The provider said how the message ended (finish_reason or [DONE])."""
        return self.done or self._finish_reason is not None

    def finish(self) -> bytes:
        """Close the message: the last block, the stop reason, usage, message_stop."""
        delta = {
            "stop_reason": STOP_REASONS.get(self._finish_reason or "stop", "end_turn"),
            "stop_sequence": None,
        }
        return (
            self._close_block()
            + sse(
                "message_delta",
                {"type": "message_delta", "delta": delta, "usage": dict(self._usage)},
            )
            + sse("message_stop", {"type": "message_stop"})
        )


def error_event(error_type: str, message: str) -> bytes:
    """An Anthropic `error` event, as the API sends when a stream fails after a 200."""
    return sse(
        "error", {"type": "error", "error": {"type": error_type, "message": message}}
    )


def events_from_message(message: dict[str, Any]) -> bytes:
    """The event stream of a whole message (for a provider that did not stream)."""
    # Each block's three events built in line: kept whole to read in stream order.
    start = dict(message, content=[], stop_reason=None)
    out = [sse("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        empty = (
            dict(block, input={})
            if block["type"] == "tool_use"
            else dict(block, text="")
        )
        out.append(
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": empty},
            )
        )
        delta: dict[str, Any]
        if block["type"] == "tool_use":
            delta = {
                "type": "input_json_delta",
                "partial_json": json.dumps(block["input"]),
            }
        else:
            delta = {"type": "text_delta", "text": block["text"]}
        out.append(
            sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        )
        out.append(
            sse("content_block_stop", {"type": "content_block_stop", "index": index})
        )
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    out.append(
        sse(
            "message_delta",
            {"type": "message_delta", "delta": delta, "usage": message["usage"]},
        )
    )
    out.append(sse("message_stop", {"type": "message_stop"}))
    return b"".join(out)


async def chunks_with_pings(
    chunks: AsyncIterator[bytes], interval: float
) -> AsyncGenerator[bytes | None, None]:
    """Yield each chunk as it comes, and None whenever `interval` passes without one:
    a local model can think for minutes, and Claude Code gives up on a quiet stream."""
    iterator = chunks.__aiter__()
    pending: asyncio.Future | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield None
                continue
            task, pending = pending, None
            try:
                yield task.result()
            except StopAsyncIteration:
                return
    finally:
        if pending is not None:  # stopped early: stop the read before the close
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
