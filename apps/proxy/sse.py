"""The one parser of server-sent event streams (recorder, routing, inspector, admin).

Follows https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation:
CR, LF or CRLF end lines; a blank line dispatches; `data:` lines join with LF;
comments and unknown fields are ignored; an event without data is not dispatched;
an unterminated last event is dropped.
"""

from __future__ import annotations

import re

_LINE = re.compile(r"\r\n|\r|\n")


def sse_events(text: str) -> list[tuple[str, str]]:
    """Parse an event stream into (event name, data) pairs."""
    if "\r" in text:
        return _sse_lines(_LINE.split(text))
    # Fast path for LF-only streams (what the API sends): blank lines split events,
    # and the usual two-line event needs no per-line loop.
    events: list[tuple[str, str]] = []
    blocks = text.split("\n\n")
    for block in blocks[:-1]:  # the last piece has no blank line after it yet
        first, newline, rest = block.partition("\n")
        if (
            newline
            and first.startswith("event: ")
            and rest.startswith("data: ")
            and "\n" not in rest
        ):
            events.append((first[7:], rest[6:]))
        elif block:
            events.extend(_sse_lines([*block.split("\n"), ""]))
    return events


def _sse_lines(lines: list[str]) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    name, data = "", list[str]()
    for line in lines:
        if not line:
            if data:
                events.append((name or "message", "\n".join(data)))
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)
    return events
