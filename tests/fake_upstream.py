"""A fake Anthropic API on a real loopback socket, for tests and benchmarks.

It speaks plain HTTP/1.1 with asyncio streams (no framework between the test and the
bytes), records every request it receives, and answers either with a programmed
`Reply` (FIFO) or with a default that behaves like the Messages API: streaming or
not, a Bash tool call when the prompt asks to "run" something, text otherwise.

Controls a test needs: pauses between events, a gate that holds the second event
until the test releases it, a long quiet period, compressed bodies (gzip, br, zstd;
SSE compressed incrementally), error statuses with headers, an abrupt connection
reset mid-stream, and a counter of events actually sent.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

import brotli
import zstandard

RATE_LIMIT_HEADERS = [
    ("anthropic-ratelimit-unified-status", "allowed"),
    ("anthropic-ratelimit-unified-5h-utilization", "0.42"),
    ("anthropic-ratelimit-unified-5h-reset", "1795000000"),
    ("anthropic-ratelimit-unified-7d-utilization", "0.13"),
    ("anthropic-ratelimit-unified-7d-reset", "1795500000"),
    ("anthropic-ratelimit-unified-representative-claim", "five_hour"),
]


def sse(event: str, data: dict[str, Any]) -> bytes:
    """Frame one server-sent event the way the API does."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def message_events(
    *,
    text: str = "Hello from the fake upstream.",
    model: str = "claude-sonnet-4-5-20250929",
    thinking: str | None = None,
    tool_use: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    output_tokens: int = 12,
    text_parts: int = 1,
    extra_events: bool = True,
) -> list[bytes]:
    """Return the events of one streamed message (ping and an unknown type included)."""
    usage = usage or {
        "input_tokens": 25,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 2000,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 60,
            "ephemeral_1h_input_tokens": 40,
        },
        "output_tokens": 1,
    }
    start = {
        "id": f"msg_fake{uuid.uuid4().hex[:16]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    events = [sse("message_start", {"type": "message_start", "message": start})]
    if extra_events:
        events.append(sse("ping", {"type": "ping"}))
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if thinking is not None:
        blocks.append(
            (
                {"type": "thinking", "thinking": "", "signature": ""},
                [
                    {"type": "thinking_delta", "thinking": thinking},
                    {"type": "signature_delta", "signature": "sig=="},
                ],
            )
        )
    if text:
        step = max(1, -(-len(text) // text_parts))
        pieces = [text[at : at + step] for at in range(0, len(text), step)]
        blocks.append(
            (
                {"type": "text", "text": ""},
                [{"type": "text_delta", "text": piece} for piece in pieces],
            )
        )
    if tool_use is not None:
        arguments = json.dumps(tool_use["input"])
        half = len(arguments) // 2
        blocks.append(
            (
                {
                    "type": "tool_use",
                    "id": tool_use.get("id", "toolu_fake1"),
                    "name": tool_use["name"],
                    "input": {},
                },
                [
                    {"type": "input_json_delta", "partial_json": arguments[:half]},
                    {"type": "input_json_delta", "partial_json": arguments[half:]},
                ],
            )
        )
    for index, (block, deltas) in enumerate(blocks):
        events += _block_events(index, block, deltas)
    if extra_events:
        events.append(sse("future_event_type", {"type": "future_event_type", "x": 1}))
    stop = "tool_use" if tool_use is not None else "end_turn"
    delta = {"stop_reason": stop, "stop_sequence": None}
    events += [
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": delta,
                "usage": {"output_tokens": output_tokens},
            },
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]
    return events


def _block_events(
    index: int, block: dict[str, Any], deltas: list[dict[str, Any]]
) -> list[bytes]:
    """Frame one content block: its start, each delta, its stop."""
    return [
        sse(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        ),
        *(
            sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
            for delta in deltas
        ),
        sse("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def message_json(events: list[bytes]) -> dict[str, Any]:
    """Rebuild the non-streaming Message a list of events amounts to (for replies)."""
    message: dict[str, Any] = {}
    content: list[dict[str, Any]] = []
    for raw in events:
        data = json.loads(raw.split(b"data: ", 1)[1])
        if data["type"] == "message_start":
            message = data["message"]
        elif data["type"] == "content_block_start":
            content.append(dict(data["content_block"]))
        elif data["type"] == "content_block_delta":
            delta = data["delta"]
            block = content[-1]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "input_json_delta":
                block["_json"] = block.get("_json", "") + delta["partial_json"]
        elif data["type"] == "message_delta":
            message.update(data["delta"])
            message["usage"] = {**message["usage"], **data["usage"]}
    for block in content:
        if "_json" in block:
            block["input"] = json.loads(block.pop("_json"))
    message["content"] = content
    return message


@dataclass
class Reply:
    """One programmed answer: `events` (SSE, chunked) or `body` (content-length)."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    events: list[bytes] | None = None
    pause: float = 0.0  # seconds between events
    first_delay: float = 0.0  # seconds before the response headers
    quiet: float = 0.0  # seconds of silence after the first event
    gate: threading.Event | None = None  # the second event waits for this
    encoding: str | None = None  # gzip, br or zstd
    reset_after: int | None = None  # abort the connection after this many events
    sent: int = 0  # events written so far (read by tests)


@dataclass
class Received:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class LoopServer:
    """A loopback server on an event loop of its own, in a background thread:
    subclasses answer connections in `_handle`."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

    def start(self) -> Self:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = server = self._loop.run_until_complete(
            asyncio.start_server(
                self._handle, "127.0.0.1", self.port, limit=2**26, backlog=512
            )
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        raise NotImplementedError


class FakeAnthropic(LoopServer):
    """Run the fake API in a background thread; `url` is where it listens."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Received] = []
        self.replies: deque[Reply] = deque()
        self.disconnects = 0  # connections the client closed while we were sending

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def enqueue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def reset(self) -> None:
        self.requests.clear()
        self.replies.clear()
        self.disconnects = 0

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                received = await read_request(reader)
                if received is None:
                    break
                self.requests.append(received)
                reply = (
                    self.replies.popleft() if self.replies else default_reply(received)
                )
                keep = await self._respond(writer, received, reply)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            self.disconnects += 1
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()

    async def _respond(
        self, writer: asyncio.StreamWriter, received: Received, reply: Reply
    ) -> bool:
        if reply.first_delay:
            await asyncio.sleep(reply.first_delay)
        headers = list(reply.headers)
        names = {name.lower() for name, _ in headers}
        if "request-id" not in names:
            headers.append(("request-id", f"req_fake{uuid.uuid4().hex[:16]}"))
        if reply.encoding:
            headers.append(("content-encoding", reply.encoding))
        if reply.events is None:
            body = reply.body or b""
            if reply.encoding:
                body = _compress_whole(body, reply.encoding)
            if "content-type" not in names:
                headers.append(("content-type", "application/json"))
            if received.method != "HEAD":
                headers.append(("content-length", str(len(body))))
            writer.write(
                response_head(reply.status, headers)
                + (b"" if received.method == "HEAD" else body)
            )
            await writer.drain()
            return True
        if "content-type" not in names:
            headers.append(("content-type", "text/event-stream; charset=utf-8"))
        headers.append(("transfer-encoding", "chunked"))
        writer.write(response_head(reply.status, headers))
        await writer.drain()
        compress, finish = _incremental(reply.encoding)
        for number, event in enumerate(reply.events):
            if number == 1 and reply.gate is not None:
                await asyncio.get_running_loop().run_in_executor(
                    None, reply.gate.wait, 10
                )
            if number == 1 and reply.quiet:
                await asyncio.sleep(reply.quiet)
            if number and reply.pause:
                await asyncio.sleep(reply.pause)
            if reply.reset_after is not None and number >= reply.reset_after:
                writer.transport.abort()
                return False
            data = compress(event) if compress else event
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
            reply.sent = number + 1
        if finish:
            tail = finish()
            writer.write(b"%x\r\n%s\r\n" % (len(tail), tail))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


def default_reply(received: Received) -> Reply:
    """Answer like the Messages API: tool call for 'run ...', text otherwise."""
    path = received.target.split("?", 1)[0]
    if received.method == "HEAD":
        return Reply(body=b"")
    if path.endswith("/v1/messages/count_tokens"):
        return Reply(
            body=json.dumps({"input_tokens": max(1, len(received.body) // 4)}).encode()
        )
    if path.endswith("/v1/models"):
        return Reply(
            body=json.dumps(
                {
                    "data": [
                        {
                            "id": "claude-sonnet-4-5-20250929",
                            "type": "model",
                            "display_name": "Claude Sonnet 4.5",
                        }
                    ],
                    "has_more": False,
                }
            ).encode()
        )
    if not path.endswith("/v1/messages"):
        return Reply(body=json.dumps({"ok": True, "path": received.target}).encode())
    bench_events = received.header("x-fake-events")
    if bench_events:  # benchmarks: exactly N events, `x-fake-gap-ms` apart
        gap = float(received.header("x-fake-gap-ms") or 0) / 1000
        events = message_events(
            text="x" * (int(bench_events) - 5),
            text_parts=int(bench_events) - 5,
            extra_events=False,
        )
        return Reply(events=events, pause=gap, headers=list(RATE_LIMIT_HEADERS))
    try:
        request = json.loads(received.body)
    except ValueError:
        return Reply(
            status=400,
            body=json.dumps(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "body is not JSON",
                    },
                }
            ).encode(),
        )
    events = message_events(**_default_turn(request))
    headers = list(RATE_LIMIT_HEADERS)
    if request.get("stream"):
        return Reply(events=events, headers=headers)
    return Reply(body=json.dumps(message_json(events)).encode(), headers=headers)


def _default_turn(request: dict[str, Any]) -> dict[str, Any]:
    model = request.get("model", "claude-sonnet-4-5-20250929")
    # Claude Code may append role "system" messages after the user's turn.
    users = [m for m in request.get("messages") or [] if m.get("role") == "user"]
    content = users[-1].get("content", "") if users else ""
    if isinstance(content, list):
        results = [
            b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"
        ]
        if results:
            output = results[-1].get("content")
            if isinstance(output, list):
                output = " ".join(
                    b.get("text", "") for b in output if isinstance(b, dict)
                )
            return {
                "model": model,
                "text": f"The command printed: {str(output).strip()}",
            }
        texts = [b.get("text", "") for b in content if isinstance(b, dict)]
        content = (
            texts[-1] if texts else ""
        )  # Claude Code puts reminders before the prompt
    prompt = str(content).strip()
    if prompt.lower().startswith("run "):
        command = prompt[4:].strip().strip("`'\".") or "echo hi"
        return {
            "model": model,
            "text": "",
            "tool_use": {
                "name": "Bash",
                "id": "toolu_fake1",
                "input": {
                    "command": command,
                    "description": "Run the requested command",
                },
            },
        }
    return {"model": model, "text": f"You said: {prompt[:200]}"}


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    529: "Overloaded",
}


def _compress_whole(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "br":
        return brotli.compress(body)
    if encoding == "zstd":
        return zstandard.ZstdCompressor().compress(body)
    raise ValueError(encoding)


def _incremental(encoding: str | None):
    """Return (compress, finish): each event flushed at once, as SSE servers must."""
    if encoding is None:
        return None, None
    if encoding == "gzip":
        gz = zlib.compressobj(wbits=31)
        return (lambda data: gz.compress(data) + gz.flush(zlib.Z_SYNC_FLUSH)), gz.flush
    if encoding == "br":
        br = brotli.Compressor()
        return (lambda data: br.process(data) + br.flush()), br.finish
    if encoding == "zstd":
        zs = zstandard.ZstdCompressor().compressobj()
        flush_block = zstandard.COMPRESSOBJ_FLUSH_BLOCK
        return (lambda data: zs.compress(data) + zs.flush(flush_block)), zs.flush
    raise ValueError(encoding)


async def read_request(reader: asyncio.StreamReader) -> Received | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = [tuple(line.split(": ", 1)) for line in lines[1:] if line]
    headers = [(h[0], h[1] if len(h) > 1 else "") for h in headers]
    lookup = {name.lower(): value for name, value in headers}
    body = b""
    if "content-length" in lookup:
        body = await reader.readexactly(int(lookup["content-length"]))
    elif lookup.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    return Received(method, target, headers, body)


if __name__ == "__main__":  # `python -m tests.fake_upstream PORT`: serve until killed
    import sys
    import time

    server = FakeAnthropic()
    server.port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server.start()
    print(server.url, flush=True)
    while True:  # nobody reads a benchmark's requests: keep memory flat over a run
        time.sleep(1)
        server.requests.clear()
