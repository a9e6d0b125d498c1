"""Pure transforms from stored bodies to what the request inspector shows.

No queries here: the view fetches, this module shapes. Everything returned is
plain data (dicts, lists, strings); templates autoescape all of it. Bad or
unexpected JSON never raises: unknown shapes fall back to a generic view.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from apps.indexing.parser import LineError, json_parse
from apps.proxy.bodies import body_pretty, json_pretty
from apps.proxy.sse import sse_events

LONG_LINES = 30  # tool output beyond this many lines is folded
LONG_CHARS = 3000
RAW_LIMIT = 1_000_000  # raw bodies above this are shown truncated
EVENTS_LIMIT = 3000
_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]*={0,2}\s*$")
_SEGMENTS = re.compile(
    r"(<system-reminder>.*?(?:</system-reminder>|\Z))|(```[^\n`]*\n.*?(?:```|\Z))",
    re.DOTALL,
)


def json_load(data: bytes | None) -> Any:
    """Return the parsed JSON of a body, or None when it is absent or not JSON.

    Bounded like the indexer's lines: a body nested deeper than the transforms
    below can walk is shown as raw text only, never a RecursionError.
    """
    if not data:
        return None
    try:
        return json_parse(data.decode("utf-8"))
    except (LineError, UnicodeDecodeError):
        return None


def request_view(body: Any) -> dict:
    """Return the system blocks, tools and messages of a Messages API request body."""
    if not isinstance(body, dict):
        return {"system": [], "tools": [], "messages": [], "params": []}
    messages = _list(body.get("messages"))
    names = tool_names_by_id(messages)
    return {
        "system": system_blocks(body.get("system")),
        "tools": tools_offered(body.get("tools")),
        "messages": [
            message_view(m, index=i, names=names) for i, m in enumerate(messages)
        ],
        "params": _params(body),
    }


def _params(body: dict) -> list[tuple[str, str]]:
    skip = {"system", "tools", "messages"}
    return [(key, _compact(value)) for key, value in body.items() if key not in skip]


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def system_blocks(system: Any) -> list[dict]:
    """Return the system prompt as text blocks with their cache markers."""
    if isinstance(system, str):
        system = [{"type": "text", "text": system}]
    if not isinstance(system, list):
        return []
    blocks = []
    for block in system:
        if not isinstance(block, dict):
            continue
        text = block.get("text")
        if not isinstance(text, str):
            text = json_pretty(block)
        blocks.append(
            {
                "segments": text_segments(text),
                "cache": _cache_marker(block),
                "chars": len(text),
            }
        )
    return blocks


def _cache_marker(block: dict) -> str:
    control = block.get("cache_control")
    if not isinstance(control, dict):
        return ""
    ttl = control.get("ttl")
    return (
        f"{control.get('type', 'cache')} {ttl}"
        if ttl
        else str(control.get("type", "cache"))
    )


def tools_offered(tools: Any) -> list[dict]:
    """Return the tools offered: name, description and the schema pretty-printed."""
    if not isinstance(tools, list):
        return []
    result = []
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        schema = tool.get("input_schema")
        result.append(
            {
                "name": str(tool.get("name") or tool.get("type") or "?"),
                "description": str(tool.get("description") or ""),
                "schema": json_pretty(tool if schema is None else schema),
                "cache": _cache_marker(tool),
            }
        )
    return result


def tool_names_by_id(messages: list) -> dict[str, str]:
    """Return tool_use id -> tool name over all messages (to label tool results)."""
    names = {}
    for message in messages:
        for block in _content_list(message):
            if block.get("type") in ("tool_use", "server_tool_use") and block.get("id"):
                names[str(block["id"])] = str(block.get("name", "?"))
    return names


def message_view(message: Any, *, index: int, names: dict[str, str]) -> dict:
    """Return one message: role and its content blocks shaped for reading."""
    role = str(message.get("role", "?")) if isinstance(message, dict) else "?"
    blocks = [block_view(block, names=names) for block in _content_list(message)]
    return {"index": index, "role": role, "blocks": blocks}


def _content_list(message: Any) -> list[dict]:
    if not isinstance(message, dict):
        return []
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [block for block in content if isinstance(block, dict)]
    return []


def block_view(block: dict, *, names: dict[str, str]) -> dict:
    """Return one content block as {kind, ...} for the content_block partial."""
    kind = block.get("type")
    cache = _cache_marker(block)
    if kind == "text":
        text = str(block.get("text", ""))
        return {"kind": "text", "segments": text_segments(text), "cache": cache}
    if kind == "thinking":
        return {
            "kind": "thinking",
            "text": str(block.get("thinking", "")),
            "cache": cache,
        }
    if kind == "redacted_thinking":
        return {"kind": "redacted_thinking", "cache": cache}
    if kind == "image":
        return {"kind": "image", **image_source(block.get("source")), "cache": cache}
    if kind in ("tool_use", "server_tool_use"):
        return {"kind": "tool_use", **tool_call_view(block), "cache": cache}
    if kind == "tool_result" or str(kind).endswith("_tool_result"):
        return {
            "kind": "tool_result",
            **tool_result_view(block, names=names),
            "cache": cache,
        }
    return {
        "kind": "other",
        "type": str(kind),
        "json": json_pretty(block),
        "cache": cache,
    }


def text_segments(text: str) -> list[dict]:
    """Split text into plain runs, fenced code blocks and <system-reminder> blocks."""
    segments: list[dict] = []
    position = 0
    for match in _SEGMENTS.finditer(text):
        if match.start() > position:
            segments.append({"kind": "text", "text": text[position : match.start()]})
        chunk = match.group(0)
        if match.group(1):
            inner = chunk.removeprefix("<system-reminder>").removesuffix(
                "</system-reminder>"
            )
            segments.append({"kind": "reminder", "text": inner.strip("\n")})
        else:
            first, _, rest = chunk.partition("\n")
            segments.append(
                {
                    "kind": "code",
                    "lang": first[3:].strip(),
                    "text": rest.removesuffix("```"),
                }
            )
        position = match.end()
    if position < len(text):
        segments.append({"kind": "text", "text": text[position:]})
    return [s for s in segments if s["kind"] != "text" or s["text"].strip()]


def image_source(source: Any) -> dict:
    """Return {src} (a data: URI) for a base64 image, else {url} or {problem}.

    Every key is always present (empty when not the case): a template reading a
    missing key in a filter argument raises, which made an SVG a 500.
    """
    shown = {"src": "", "url": "", "problem": "", "media_type": ""}
    if not isinstance(source, dict):
        return {**shown, "problem": "image without a source"}
    if source.get("type") == "url":
        return {**shown, "url": str(source.get("url", ""))}
    media_type = str(source.get("media_type", ""))[:100]
    data = source.get("data")
    if source.get("type") != "base64" or media_type not in _IMAGE_TYPES:
        return {**shown, "problem": f"image of type {media_type!r} not shown"}
    if not isinstance(data, str) or not _BASE64.match(data):
        return {**shown, "problem": "image data is not base64"}
    src = f"data:{media_type};base64,{data}"
    return {**shown, "src": src, "media_type": media_type}


def tool_call_view(block: dict) -> dict:
    """Return a tool call with a purpose-built view for Claude Code's own tools."""
    name = str(block.get("name", "?"))
    raw = block.get("input")
    args = raw if isinstance(raw, dict) else {}
    builder = _TOOL_VIEWS.get(name, _generic_view)
    try:
        view = builder(args)
    except (TypeError, ValueError, AttributeError):
        view = _generic_view(args)
    return {
        "name": name,
        "id": str(block.get("id", "")),
        "input": json_pretty(raw),
        **view,
    }


def _bash_view(args: dict) -> dict:
    return {
        "view": "bash",
        "command": str(args.get("command", "")),
        "description": str(args.get("description", "")),
        "flags": _flags(args, "timeout", "run_in_background"),
    }


def _read_view(args: dict) -> dict:
    return {
        "view": "path",
        "path": str(args.get("file_path", "")),
        "flags": _flags(args, "offset", "limit", "pages"),
    }


def _write_view(args: dict) -> dict:
    content = str(args.get("content", ""))
    return {
        "view": "write",
        "path": str(args.get("file_path", "")),
        "content": content,
        "lines": content.count("\n")
        + (1 if content and not content.endswith("\n") else 0),
    }


def _edit_view(args: dict) -> dict:
    return {
        "view": "edit",
        "path": str(args.get("file_path", "")),
        "edits": [_edit_diff(args)],
    }


def _multi_edit_view(args: dict) -> dict:
    edits = _list(args.get("edits"))
    return {
        "view": "edit",
        "path": str(args.get("file_path", "")),
        "edits": [_edit_diff(edit) for edit in edits if isinstance(edit, dict)],
    }


def _edit_diff(edit: dict) -> dict:
    return {
        "lines": diff_lines(
            str(edit.get("old_string", "")), str(edit.get("new_string", ""))
        ),
        "replace_all": bool(edit.get("replace_all")),
    }


def diff_lines(old: str, new: str) -> list[dict]:
    """Return a line diff of old -> new as [{op: ' '|'+'|'-'|'@', text}]."""
    lines = []
    diff = difflib.unified_diff(
        old.splitlines(), new.splitlines(), lineterm="", n=max(3, old.count("\n") + 1)
    )
    for line in diff:
        if line.startswith(("---", "+++")):
            continue
        op = line[:1] if line[:1] in "+-@" else " "
        lines.append({"op": op, "text": line if op == "@" else line[1:]})
    return lines


def _grep_view(args: dict) -> dict:
    return {
        "view": "search",
        "pattern": str(args.get("pattern", "")),
        "path": str(args.get("path", "")),
        "flags": _flags(
            args,
            "glob",
            "type",
            "output_mode",
            "-i",
            "-n",
            "-A",
            "-B",
            "-C",
            "multiline",
            "head_limit",
        ),
    }


def _glob_view(args: dict) -> dict:
    return {
        "view": "search",
        "pattern": str(args.get("pattern", "")),
        "path": str(args.get("path", "")),
        "flags": [],
    }


def _todo_view(args: dict) -> dict:
    todos = _list(args.get("todos"))
    items = []
    for todo in todos:
        if isinstance(todo, dict):
            status = str(todo.get("status", "pending"))
            items.append({"content": str(todo.get("content", "")), "status": status})
    counts = {
        s: sum(i["status"] == s for i in items)
        for s in ("completed", "in_progress", "pending")
    }
    return {"view": "todos", "todos": items, "counts": counts}


def _task_view(args: dict) -> dict:
    return {
        "view": "task",
        "agent": str(args.get("subagent_type", "")),
        "description": str(args.get("description", "")),
        "prompt": str(args.get("prompt", "")),
    }


def _web_fetch_view(args: dict) -> dict:
    return {
        "view": "web",
        "target": str(args.get("url", "")),
        "prompt": str(args.get("prompt", "")),
    }


def _web_search_view(args: dict) -> dict:
    return {
        "view": "web",
        "target": str(args.get("query", "")),
        "prompt": "",
        "flags": _flags(args, "allowed_domains", "blocked_domains"),
    }


def _generic_view(args: dict) -> dict:
    fields = [(str(key), _compact(value)) for key, value in args.items()]
    return {"view": "generic", "fields": fields}


def _flags(args: dict, *names: str) -> list[tuple[str, str]]:
    return [(name, _compact(args[name])) for name in names if name in args]


_TOOL_VIEWS = {
    "Bash": _bash_view,
    "Read": _read_view,
    "Write": _write_view,
    "Edit": _edit_view,
    "MultiEdit": _multi_edit_view,
    "Grep": _grep_view,
    "Glob": _glob_view,
    "TodoWrite": _todo_view,
    "Task": _task_view,
    "Agent": _task_view,
    "WebFetch": _web_fetch_view,
    "WebSearch": _web_search_view,
}


def tool_result_view(block: dict, *, names: dict[str, str]) -> dict:
    """Return a tool result: its tool's name, error flag, text and images, folding."""
    content = block.get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    texts, images = [], []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "image":
            images.append(image_source(part.get("source")))
        elif part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        else:
            texts.append(json_pretty(part))
    text = "\n".join(texts)
    lines = text.count("\n") + 1
    long = lines > LONG_LINES or len(text) > LONG_CHARS
    tool_id = str(block.get("tool_use_id", ""))
    return {
        "tool": names.get(tool_id, ""),
        "tool_id": tool_id,
        "is_error": bool(block.get("is_error")),
        "text": text,
        "preview": "\n".join(text.splitlines()[:8])[:800] if long else "",
        "long": long,
        "line_count": lines,
        "images": images,
    }


def _strip_cache_control(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip_cache_control(v) for k, v in value.items() if k != "cache_control"
        }
    if isinstance(value, list):
        return [_strip_cache_control(v) for v in value]
    return value


def new_messages_start(current: list, previous: list | None) -> int:
    """Return the index of the first message not already sent by the previous request.

    Claude Code re-sends the whole conversation each turn and moves its
    cache_control markers, so messages are compared without them.
    """
    if not previous:
        return 0
    count = 0
    for mine, theirs in zip(current, previous, strict=False):
        if _strip_cache_control(mine) != _strip_cache_control(theirs):
            break
        count += 1
    return count


def stream_events(body: bytes | None) -> list[dict]:
    """Return the server-sent events of a streamed body as [{event, data}]."""
    if not body:
        return []
    events = sse_events(body.decode("utf-8", "replace"))
    return [{"event": name, "data": body_pretty(data)} for name, data in events]


def raw_text(body: bytes | None) -> dict:
    """Return a body for the raw tab: pretty JSON when it is JSON, capped in size."""
    if body is None:
        return {"text": "", "size": 0, "truncated": False}
    text = body_pretty(body)
    truncated = len(text) > RAW_LIMIT
    return {"text": text[:RAW_LIMIT], "size": len(body), "truncated": truncated}


def header_rows(headers: Any) -> list[tuple[str, str]]:
    """Return stored [name, value] header pairs (secrets already fingerprinted)."""
    if not isinstance(headers, list):
        return []
    return [
        (str(pair[0]), str(pair[1]))
        for pair in headers
        if isinstance(pair, (list, tuple)) and len(pair) == 2
    ]


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []
