"""A strict fake OpenAI-compatible Chat Completions server on a real loopback socket.

Strict the way the real API is: a request is checked against the official
`openai` SDK's own request types (every key at every level must be one the type
declares, literals must match, required keys must be there), then against the
conversation rules the API enforces (a tool message must answer a tool call of
the assistant message before it, every tool call must be answered, an assistant
message needs content or tool calls). A violation is a 400 in OpenAI's error
shape, and is kept in `rejected` for the test to read.

Answers are scripted (`enqueue(Turn(...))`, FIFO) or, by default, behave like a
model: a prompt starting "run " gets a Bash tool call, a tool result gets text
saying what the command printed, anything else an echo. Streams are built from
the SDK's `ChatCompletionChunk` type (validated before they are sent).
"""

from __future__ import annotations

import asyncio
import collections.abc
import json
import types
import typing
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import typing_extensions
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat import completion_create_params as params

from tests.fake_upstream import LoopServer, Received, read_request, response_head


@dataclass
class Turn:
    """One scripted answer: text and/or tool calls, or an error status."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # name, arguments
    finish_reason: str | None = None  # default: tool_calls if any, else stop
    status: int = 200
    error: str = ""  # the error message for a non-200 status
    headers: list[tuple[str, str]] = field(default_factory=list)
    pause: float = 0.0  # seconds between chunks
    first_delay: float = 0.0  # seconds before the first chunk (after the headers)
    cut_after: int | None = None  # close the stream after this many chunks
    usage: dict[str, Any] | None = None
    model: str = ""
    mid_stream_error: str = ""  # send an error chunk after the first chunk


class FakeOpenAI(LoopServer):
    """Run the fake in a background thread; `url` is its base URL (…/v1)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Received] = []
        self.rejected: list[str] = []
        self.turns: deque[Turn] = deque()
        self.connections = 0  # connections accepted (a pooled client reuses one)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *turns: Turn) -> None:
        self.turns.extend(turns)

    def reset(self) -> None:
        self.requests.clear()
        self.rejected.clear()
        self.turns.clear()
        self.connections = 0

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.requests]

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        try:
            while (received := await read_request(reader)) is not None:
                self.requests.append(received)
                if not await self._respond(writer, received):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _respond(self, writer: asyncio.StreamWriter, received: Received) -> bool:
        problem, request = check_request(received)
        if problem:
            self.rejected.append(problem)
            await _send_json(writer, 400, _error_body(problem, "invalid_request_error"))
            return True
        turn = self.turns.popleft() if self.turns else default_turn(request)
        if turn.status != 200:
            body = _error_body(turn.error or "scripted error", "server_error")
            await _send_json(writer, turn.status, body, turn.headers)
            return True
        if request.get("stream"):
            return await _stream(writer, request, turn)
        await _send_json(writer, 200, completion(request, turn), turn.headers)
        return True


def check_request(received: Received) -> tuple[str, dict[str, Any]]:
    """('', request) when the API would accept it, else (why not, {})."""
    if received.method != "POST" or not received.target.endswith("/chat/completions"):
        return f"unknown endpoint {received.method} {received.target}", {}
    try:
        request = json.loads(received.body)
    except ValueError:
        return "body is not JSON", {}
    if not isinstance(request, dict):
        return "body is not a JSON object", {}
    kind = (
        params.CompletionCreateParamsStreaming
        if request.get("stream")
        else params.CompletionCreateParamsNonStreaming
    )
    problem = typed_check(request, kind, "body")
    return problem or conversation_check(request), request


def typed_check(value: Any, annotation: Any, where: str) -> str:  # noqa: C901
    # One walk over the SDK's TypedDicts, unions, literals and containers; kept
    # whole because each branch is one kind of type.
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Required, typing.NotRequired, typing.Annotated):
        return typed_check(value, args[0], where)
    if annotation is Any or annotation is object:
        return ""
    if origin in (typing.Union, types.UnionType):
        problems = [typed_check(value, option, where) for option in args]
        return "" if "" in problems else min(problems, key=len)
    if origin is typing.Literal:
        return "" if value in args else f"{where}: {value!r} is not one of {args}"
    if annotation is type(None):
        return "" if value is None else f"{where}: expected null"
    if typing_extensions.is_typeddict(annotation):  # what the SDK's types are
        return _typeddict_check(value, annotation, where)
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence):
        if not isinstance(value, list):
            return f"{where}: expected an array"
        for number, item in enumerate(value):
            problem = typed_check(item, args[0] if args else Any, f"{where}[{number}]")
            if problem:
                return problem
        return ""
    if origin in (dict, typing.Dict) or annotation is dict:  # noqa: UP006
        return "" if isinstance(value, dict) else f"{where}: expected an object"
    return _scalar_check(value, annotation, where)


def _typeddict_check(value: Any, annotation: Any, where: str) -> str:
    if not isinstance(value, dict):
        return f"{where}: expected an object"
    hints = typing_extensions.get_type_hints(annotation, include_extras=True)
    for key in value:
        if key not in hints:
            return f"{where}: unrecognized field {key!r}"
    required = set(annotation.__required_keys__) | {
        key for key, hint in hints.items() if typing.get_origin(hint) is typing.Required
    }
    for key in sorted(required):
        if key not in value:
            return f"{where}: missing required field {key!r}"
    for key, item in value.items():
        problem = typed_check(item, hints[key], f"{where}.{key}")
        if problem:
            return problem
    return ""


def _scalar_check(value: Any, annotation: Any, where: str) -> str:
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif annotation is str:
        ok = isinstance(value, str)
    else:
        return ""  # a type this checker does not know: accept, as the API might
    return "" if ok else f"{where}: {value!r} is not a {annotation.__name__}"


def conversation_check(request: dict[str, Any]) -> str:
    """The rules the API enforces across messages."""
    if not request["messages"]:
        return "messages: must not be empty"
    pending: list[str] = []
    for number, message in enumerate(request["messages"]):
        where = f"messages[{number}]"
        role = message["role"]
        if role == "tool":
            if message["tool_call_id"] not in pending:
                return f"{where}: tool message does not answer a preceding tool call"
            pending.remove(message["tool_call_id"])
            continue
        if pending:
            return f"{where}: tool calls {pending} were not answered"
        if role == "assistant":
            if not message.get("content") and not message.get("tool_calls"):
                return f"{where}: assistant message needs content or tool_calls"
            pending = [call["id"] for call in message.get("tool_calls", [])]
        elif role in ("user", "system") and message.get("content") in ("", []):
            return f"{where}: content must not be empty"
    if pending:
        return f"tool calls {pending} were not answered"
    if request.get("tool_choice") is not None and not request.get("tools"):
        return "tool_choice is only allowed when tools are given"
    return ""


def default_turn(request: dict[str, Any]) -> Turn:
    """Behave like a model: run commands when asked, report what they printed."""
    # Claude Code may put a system message after the turn: look past it.
    last = [m for m in request["messages"] if m["role"] != "system"][-1]
    if last["role"] == "tool":
        return Turn(text=f"The command printed: {last['content'].strip()}")
    users = [m for m in request["messages"] if m["role"] == "user"]
    content = users[-1]["content"] if users else ""
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if p["type"] == "text")
    prompt = content.strip().split("\n\n")[-1].strip()
    if prompt.startswith("bench-stream "):  # bench/relay.py: N words, GAP ms apart
        words, gap = prompt.split()[1:3]
        return Turn(text=" ".join(["x"] * int(words)), pause=float(gap) / 1000)
    if prompt.lower().startswith("run "):
        arguments = {"command": prompt[4:].strip(), "description": "Run it"}
        return Turn(tool_calls=[{"name": "Bash", "arguments": json.dumps(arguments)}])
    return Turn(text=f"You said: {prompt[:200]}")


def _usage(turn: Turn) -> dict[str, Any]:
    return turn.usage or {
        "prompt_tokens": 120,
        "completion_tokens": 15,
        "total_tokens": 135,
        "prompt_tokens_details": {"cached_tokens": 20},
    }


def _calls(turn: Turn) -> list[dict[str, Any]]:
    return [
        {
            "id": call.get("id") or f"call_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {"name": call["name"], "arguments": call["arguments"]},
        }
        for call in turn.tool_calls
    ]


def completion(request: dict[str, Any], turn: Turn) -> dict[str, Any]:
    """A whole Chat Completion, validated against the SDK's type."""
    message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
    if turn.tool_calls:
        message["tool_calls"] = _calls(turn)
    body = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": 1_800_000_000,
        "model": turn.model or request["model"],
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _finish(turn),
                "logprobs": None,
            }
        ],
        "usage": _usage(turn),
    }
    ChatCompletion.model_validate(body)
    return body


def _finish(turn: Turn) -> str:
    return turn.finish_reason or ("tool_calls" if turn.tool_calls else "stop")


def chunks(request: dict[str, Any], turn: Turn) -> list[dict[str, Any]]:
    """The chunks of a streamed answer, as the API sends them (text in pieces, each
    tool call's id and name first and its arguments in two halves)."""
    # Built in the order the API sends them: kept whole to read that way.
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion.chunk",
        "created": 1_800_000_000,
        "model": turn.model or request["model"],
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {**base, "choices": [choice]}

    out = [chunk({"role": "assistant", "content": ""})]
    words = turn.text.split(" ")
    out += [
        chunk({"content": word if n == 0 else " " + word})
        for n, word in enumerate(words)
        if turn.text
    ]
    for index, call in enumerate(_calls(turn)):
        head = {"index": index, "id": call["id"], "type": "function"}
        head["function"] = {"name": call["function"]["name"], "arguments": ""}
        out.append(chunk({"tool_calls": [head]}))
        arguments = call["function"]["arguments"]
        for part in (
            arguments[: len(arguments) // 2],
            arguments[len(arguments) // 2 :],
        ):
            out.append(
                chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": part}}]}
                )
            )
    out.append(chunk({}, _finish(turn)))
    if (request.get("stream_options") or {}).get("include_usage"):
        out.append({**base, "choices": [], "usage": _usage(turn)})
    for item in out:
        ChatCompletionChunk.model_validate(item)
    return out


async def _stream(writer: asyncio.StreamWriter, request: dict, turn: Turn) -> bool:
    headers = [
        *turn.headers,
        ("content-type", "text/event-stream"),
        ("transfer-encoding", "chunked"),
    ]
    writer.write(response_head(200, headers))
    await writer.drain()
    if turn.first_delay:
        await asyncio.sleep(turn.first_delay)
    events = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks(request, turn)]
    events.append(b"data: [DONE]\n\n")
    if turn.mid_stream_error:
        error = {"error": {"message": turn.mid_stream_error, "type": "server_error"}}
        events = [events[0], f"data: {json.dumps(error)}\n\n".encode()]
    for number, event in enumerate(events):
        if turn.cut_after is not None and number >= turn.cut_after:
            writer.transport.abort()
            return False
        if number and turn.pause:
            await asyncio.sleep(turn.pause)
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True


async def _send_json(
    writer: asyncio.StreamWriter,
    status: int,
    body: dict[str, Any],
    headers: list[tuple[str, str]] = (),
) -> None:
    data = json.dumps(body).encode()
    head = [
        *headers,
        ("content-type", "application/json"),
        ("content-length", str(len(data))),
    ]
    writer.write(response_head(status, head) + data)
    await writer.drain()


def _error_body(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


if __name__ == "__main__":  # `python -m tests.fake_openai PORT`: serve until killed
    import sys
    import time

    fake = FakeOpenAI()
    fake.port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    fake.start()
    print(fake.url, flush=True)
    while True:
        time.sleep(3600)
