"""Pure functions from one transcript line (bytes) to the fields of an entry.

Nothing here touches the database or the file system. The format is not documented
and changes between Claude Code releases (see shared/reference/claude-code-data.md),
so every accessor tolerates a missing or oddly typed field: an unknown line type is
kept with no searchable text, never rejected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Long tool outputs are trimmed for the search index only; the whole line is kept
# (compressed) in the entry, so nothing is lost.
TOOL_RESULT_HEAD = 1000
TOOL_RESULT_TAIL = 200
TOOL_INPUT_VALUE_MAX = 1000
TEXT_MAX = 60_000
TITLE_MAX = 200
# Far deeper than any transcript line; pages walk a line recursively, so a line
# nested near Python's recursion limit is refused here, as a bad line.
MAX_DEPTH = 200

_TITLE_TYPES = {"custom-title": "customTitle", "ai-title": "aiTitle"}
_SCAFFOLDING = (
    "<command-",
    "<local-command-",
    "<system-reminder>",
    "Caveat:",
    "[Request interrupted",
)


class LineError(ValueError):
    """A line that cannot be indexed (not JSON, too deep, too long, not an object)."""


@dataclass(slots=True)
class ParsedLine:
    type: str = ""
    uuid: str = ""
    parent_uuid: str = ""
    role: str = ""
    timestamp: datetime | None = None
    is_sidechain: bool = False
    is_meta: bool = False
    is_compact_summary: bool = False
    session_id: str = ""
    agent_id: str = ""
    request_id: str = ""
    message_id: str = ""
    model: str = ""
    text: str = ""
    tools: list[str] = field(default_factory=list)
    usage: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    speed: str = ""  # usage.speed: "fast" in fast mode
    cwd: str = ""
    version: str = ""
    git_branch: str = ""
    slug: str = ""
    spawned_agent: str = ""
    tool_use_ids: list[str] = field(default_factory=list)
    tool_result_ids: list[str] = field(default_factory=list)
    title: str = ""
    invalid_utf8: bool = False


def line_parse(raw: bytes) -> ParsedLine:
    """Parse one JSONL line into entry fields; raise LineError when it is not JSON."""
    try:
        text = raw.decode("utf-8")
        invalid = False
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        invalid = True
    data = json_parse(text)
    if not isinstance(data, dict):
        raise LineError(f"a JSON {type(data).__name__}, not an object")
    parsed = record_parse(data)
    parsed.invalid_utf8 = invalid
    return parsed


def json_parse(text: str) -> Any:
    """Decode JSON nested at most MAX_DEPTH deep; raise LineError for anything else.

    json.loads raises more than JSONDecodeError: ValueError for an integer of over
    4,300 digits (https://docs.python.org/3/library/stdtypes.html#int-max-str-digits)
    and RecursionError for deep nesting. A line nested just under the interpreter's
    limit would parse here and overflow later, in a page that walks it.
    """
    try:
        data = json.loads(text)
    except RecursionError:
        raise LineError(f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise LineError(f"malformed JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:
        raise LineError(f"malformed JSON ({str(exc).split(';')[0]})") from None
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(data) > MAX_DEPTH:
        raise LineError(f"nested deeper than {MAX_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(text):
        # JSON may escape a lone UTF-16 surrogate (\ud800); Python decodes it to a
        # str that cannot be encoded as UTF-8, which SQLite and every page need.
        # The stored line keeps it as written; the decoded values get U+FFFD.
        dumped = json.dumps(data, ensure_ascii=False)
        data = json.loads(_SURROGATE.sub("\ufffd", dumped))
    if "\\u0000" in text:
        # An escaped NUL: PostgreSQL's text cannot hold one (and an id with one is
        # no id). The stored line keeps it as written; decoded values get U+FFFD.
        data = _nul_replace(data)
    return data


def _nul_replace(value: Any) -> Any:
    """Return value with every NUL in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_nul_replace(item) for item in value]
    if isinstance(value, dict):
        return {_nul_replace(k): _nul_replace(v) for k, v in value.items()}
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # decoded pairs are one character


def _depth(value: Any) -> int:
    """Return how deep containers nest in a decoded value, without recursing."""
    deepest, stack = 0, [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, level + 1) for c in children if isinstance(c, dict | list))
    return deepest


def record_parse(data: dict) -> ParsedLine:
    """Return the entry fields of one decoded transcript record."""
    kind = _str(data.get("type"))
    message = _dict(data.get("message"))
    parsed = ParsedLine(
        type=kind[:40],
        uuid=_str(data.get("uuid"))[:64],
        parent_uuid=_str(data.get("parentUuid") or data.get("leafUuid"))[:64],
        role=_str(message.get("role"))[:16],
        timestamp=timestamp_parse(data.get("timestamp")),
        is_sidechain=data.get("isSidechain") is True,
        is_meta=data.get("isMeta") is True,
        is_compact_summary=data.get("isCompactSummary") is True,
        session_id=_str(data.get("sessionId"))[:100],
        agent_id=_str(data.get("agentId"))[:100],
        request_id=_str(data.get("requestId"))[:200],
        message_id=_str(message.get("id"))[:200],
        model=_str(message.get("model"))[:200],
        cwd=_str(data.get("cwd")),
        version=_str(data.get("version"))[:40],
        git_branch=_str(data.get("gitBranch"))[:200],
        slug=_str(data.get("slug"))[:200],
    )
    parts: list[str] = []
    if message:
        _content_parse(message.get("content"), parsed, parts)
        if kind == "assistant":
            parsed.usage = _usage_of(message, data)
            speed = _dict(message.get("usage")).get("speed")
            parsed.speed = speed[:16] if isinstance(speed, str) else ""
    elif kind == "summary":
        parts.append(_str(data.get("summary")))
    elif kind in _TITLE_TYPES:
        parsed.title = _str(
            data.get(_TITLE_TYPES[kind]) or data.get("title") or data.get("summary")
        )
        parts.append(parsed.title)
    if parsed.tool_result_ids:
        parsed.role = "tool" if not _has_prose(message.get("content")) else parsed.role
        agent = _dict(data.get("toolUseResult")).get("agentId")
        parsed.spawned_agent = _str(agent)[:100]
    parsed.text = "\n".join(p for p in parts if p)[:TEXT_MAX]
    return parsed


def _content_parse(content: Any, parsed: ParsedLine, parts: list[str]) -> None:
    if isinstance(content, str):
        parts.append(content)
        return
    if not isinstance(content, list):
        return
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(_str(block.get("text")))
        elif kind == "thinking":
            parts.append(_str(block.get("thinking")))
        elif kind == "tool_use":
            name = _str(block.get("name"))[:100]
            if name:
                parsed.tools.append(name)
            parsed.tool_use_ids.append(_str(block.get("id")))
            parts.extend(_input_strings(block.get("input")))
        elif kind == "tool_result":
            parsed.tool_result_ids.append(_str(block.get("tool_use_id")))
            parts.append(_trim_output(_result_text(block.get("content"))))


def _has_prose(content: Any) -> bool:
    if isinstance(content, str):
        return True
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "text" for b in content
    )


def _input_strings(value: Any, depth: int = 0) -> list[str]:
    """Collect the string values of a tool input (command, path, pattern, ...)."""
    if isinstance(value, str):
        return [_trim_output(value, TOOL_INPUT_VALUE_MAX, 0)] if value else []
    if depth > 4:
        return []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _input_strings(v, depth + 1)]
    if isinstance(value, list):
        return [s for v in value[:200] for s in _input_strings(v, depth + 1)]
    return []


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            _str(b.get("text"))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _trim_output(
    text: str, head: int = TOOL_RESULT_HEAD, tail: int = TOOL_RESULT_TAIL
) -> str:
    if len(text) <= head + tail:
        return text
    return text[:head] + " … " + (text[-tail:] if tail else "")


def _usage_of(message: dict, data: dict) -> tuple[int, int, int, int, int]:
    """Return (input, output, cache_read, write_5m, write_1h); 0s if not billable."""
    if message.get("model") == "<synthetic>" or data.get("isApiErrorMessage") is True:
        return (0, 0, 0, 0, 0)
    usage = _dict(message.get("usage"))
    split = _dict(usage.get("cache_creation"))
    write_total = _int(usage.get("cache_creation_input_tokens"))
    if split:
        write_1h = _int(split.get("ephemeral_1h_input_tokens"))
        write_5m = _int(split.get("ephemeral_5m_input_tokens"))
        write_5m += max(0, write_total - write_5m - write_1h)
    else:
        write_5m, write_1h = write_total, 0
    return (
        _int(usage.get("input_tokens")),
        _int(usage.get("output_tokens")),
        _int(usage.get("cache_read_input_tokens")),
        write_5m,
        write_1h,
    )


def timestamp_parse(value: Any) -> datetime | None:
    """Return an aware UTC datetime from an ISO 8601 string or epoch milliseconds."""
    try:
        if isinstance(value, str) and value:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                return moment.replace(tzinfo=UTC)
            return moment.astimezone(UTC)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def title_clean(text: str) -> str:
    """Return a one-line title from a prompt, or '' for command scaffolding."""
    text = text.strip()
    if not text or text.startswith(_SCAFFOLDING):
        return ""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_MAX else line[: TITLE_MAX - 1] + "…"


def todos_parse(data: Any) -> list[dict]:
    """Return todo items {content, status, active_form} from a todos/tasks document."""
    items = data if isinstance(data, list) else [data]
    todos = []
    for item in items:
        if not isinstance(item, dict):
            continue
        content = _str(
            item.get("content")
            or item.get("subject")
            or item.get("title")
            or item.get("description")
        )
        if content:
            todos.append(
                {
                    "content": content,
                    "status": _str(item.get("status"))[:32],
                    "active_form": _str(item.get("activeForm"))[:500],
                }
            )
    return todos


def history_parse(data: dict) -> ParsedLine:
    """Return entry fields of one prompt-history record (kept, not searched)."""
    return ParsedLine(
        type="history",
        timestamp=timestamp_parse(data.get("timestamp")),
        session_id=_str(data.get("sessionId"))[:100],
        cwd=_str(data.get("project")),
    )


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, min(int(value), 2**31 - 1))


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}
