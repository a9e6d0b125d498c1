"""Anthropic Messages <-> OpenAI Chat Completions, both ways, streaming included.

Requests (`request_to_openai`): every field Claude Code sends is converted or
dropped on purpose, so that a strict server accepts the result:
- system (string or blocks) -> a first "system" message (less Claude Code's
  `x-anthropic-billing-header` block); role "system" messages
  in the conversation stay "system" messages where they are;
- text -> text; images (base64, url) -> image_url parts (data: URLs for base64);
  documents (base64 PDF) -> file parts, text documents -> text;
- tool_use -> assistant tool_calls (arguments as JSON text); tool_result -> "tool"
  messages right after, in order (is_error prefixes "[tool error] "; images in a
  result follow in a user message); a tool call left without a result gets one
  saying so, since the API rejects a conversation with an unanswered call;
- tools -> functions (`$schema` removed at every level; server tools dropped);
  tool_choice auto/any/tool/none -> auto/required/function/none;
  disable_parallel_tool_use -> parallel_tool_calls false;
- max_tokens -> max_tokens or max_completion_tokens (the provider says which);
  temperature, top_p, stop_sequences (first four) -> same; stream -> stream with
  usage; thinking and output_config.effort -> reasoning_effort when the provider
  has `reasoning = true`, else dropped;
- dropped: thinking and redacted_thinking blocks, cache_control, citations,
  metadata (user_id holds device and account ids), context_management,
  output_config, top_k, service_tier and anything unknown.
Responses: text -> text blocks; tool_calls -> tool_use blocks (arguments streamed
as input_json_delta); finish_reason stop/length/tool_calls/content_filter ->
end_turn/max_tokens/tool_use/refusal; usage prompt (less cached)/cached/completion
-> input/cache_read/output. The provider's reasoning text is dropped: Claude Code
would send it back as an unsigned thinking block, which Anthropic rejects.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high"}
_BILLING = "x-anthropic-billing-header:"
_OPENAI_STOP_LIMIT = 4  # OpenAI accepts up to four stop sequences


# --- requests ----------------------------------------------------------------


def request_to_openai(
    body: dict[str, Any], *, model: str, max_tokens_field: str, reasoning: bool
) -> dict[str, Any]:
    """Convert an Anthropic Messages request into a Chat Completions request."""
    messages = _system_messages(body.get("system"))
    for message in body.get("messages") or []:
        messages += _message(message)
    out: dict[str, Any] = {"model": model, "messages": _answer_tool_calls(messages)}
    if isinstance(body.get("max_tokens"), int):
        out[max_tokens_field] = body["max_tokens"]
    for key in ("temperature", "top_p"):
        if isinstance(body.get(key), (int, float)):
            out[key] = body[key]
    stops = body.get("stop_sequences")
    if isinstance(stops, list) and stops:
        out["stop"] = [str(s) for s in stops[:_OPENAI_STOP_LIMIT]]
    out.update(_tools(body.get("tools"), body.get("tool_choice")))
    if reasoning:
        effort = _effort(body.get("thinking"), body.get("output_config"))
        if effort:
            out["reasoning_effort"] = effort
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _text_of(content: Any) -> str:
    """The text of a string or of a list of blocks (non-text blocks skipped)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n\n".join(
        block.get("text", "")
        for block in content
        if isinstance(block, dict) and block.get("type") == "text"
    )


def _system_messages(system: Any) -> list[dict[str, Any]]:
    if isinstance(system, list):  # Anthropic's billing line means nothing elsewhere
        system = [
            block
            for block in system
            if not (
                isinstance(block, dict)
                and str(block.get("text", "")).startswith(_BILLING)
            )
        ]
    text = _text_of(system)
    return [{"role": "system", "content": text}] if text else []


def _message(message: Any) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        return []
    role, content = message.get("role"), message.get("content")
    if role == "system":  # Claude Code's mid-conversation system messages
        return _system_messages(content)
    if role == "assistant":
        return _assistant(content)
    if role == "user":
        return _user(content)
    return []


def _user(content: Any) -> list[dict[str, Any]]:
    """Tool results first (each a "tool" message), then the user's own parts."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}] if content else []
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_result":
            tool, images = _tool_result(block)
            out.append(tool)
            parts += images
        else:
            parts += _part(block)
    if parts:
        out.append({"role": "user", "content": _compact(parts)})
    return out


def _compact(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A plain string when every part is text: what every server accepts."""
    if all(part["type"] == "text" for part in parts):
        return "\n\n".join(part["text"] for part in parts)
    return parts


def _part(block: dict[str, Any]) -> list[dict[str, Any]]:
    kind = block.get("type")
    if kind == "text":
        text = block.get("text", "")
        return [{"type": "text", "text": text}] if text else []
    if kind == "image":
        return _image(block.get("source") or {})
    if kind == "document":
        return _document(block.get("source") or {})
    return []  # thinking, redacted_thinking, server tool blocks: not for this API


def _image(source: dict[str, Any]) -> list[dict[str, Any]]:
    if source.get("type") == "base64":
        media = source.get("media_type", "image/png")
        url = f"data:{media};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = source.get("url", "")
    else:
        return [{"type": "text", "text": "[image omitted: unsupported source]"}]
    return [{"type": "image_url", "image_url": {"url": url}}]


def _document(source: dict[str, Any]) -> list[dict[str, Any]]:
    if source.get("type") == "text":
        return [{"type": "text", "text": source.get("data", "")}]
    if source.get("type") == "base64":
        media = source.get("media_type", "application/pdf")
        data = f"data:{media};base64,{source.get('data', '')}"
        return [
            {"type": "file", "file": {"file_data": data, "filename": "document.pdf"}}
        ]
    return [{"type": "text", "text": "[document omitted: unsupported source]"}]


def _tool_result(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The "tool" message of a result, and the images it held (sent as user parts)."""
    content = block.get("content")
    images: list[dict[str, Any]] = []
    if isinstance(content, list):
        for item in content:
            if isinstance(item, dict) and item.get("type") == "image":
                images += _image(item.get("source") or {})
        text = _text_of(content)
    else:
        text = str(content) if content is not None else ""
    if block.get("is_error"):
        text = "[tool error] " + text
    tool_id = str(block.get("tool_use_id", ""))
    message = {
        "role": "tool",
        "tool_call_id": tool_id,
        "content": text or "(no output)",
    }
    if images:
        images.insert(0, {"type": "text", "text": f"Images returned by {tool_id}:"})
    return message, images


def _assistant(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "assistant", "content": content}] if content else []
    texts, calls = [], []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and block.get("text"):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            calls.append(
                {
                    "id": str(block.get("id", "")),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name", "")),
                        "arguments": arguments,
                    },
                }
            )
    if not texts and not calls:
        return []
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "\n\n".join(texts) or None,
    }
    if calls:
        message["tool_calls"] = calls
    return [message]


def _answer_tool_calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every tool call a result: the API refuses a call left unanswered."""
    out: list[dict[str, Any]] = []
    pending: list[str] = []
    for message in messages:
        if message["role"] == "tool" and message["tool_call_id"] in pending:
            pending.remove(message["tool_call_id"])
        elif pending and message["role"] != "tool":
            out += [_no_result(call_id) for call_id in pending]
            pending = []
        out.append(message)
        if message["role"] == "assistant":
            pending = [call["id"] for call in message.get("tool_calls", [])]
    out += [_no_result(call_id) for call_id in pending]
    return out


def _no_result(call_id: str) -> dict[str, Any]:
    return {
        "role": "tool",
        "tool_call_id": call_id,
        "content": "(no result was returned)",
    }


def _tools(tools: Any, choice: Any) -> dict[str, Any]:
    tools = tools if isinstance(tools, list) else []
    functions = [
        _function(tool)
        for tool in tools
        if isinstance(tool, dict) and "input_schema" in tool
    ]
    if not functions:
        return {}
    out: dict[str, Any] = {"tools": functions}
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "any":
            out["tool_choice"] = "required"
        elif kind == "none":
            out["tool_choice"] = "none"
        elif kind == "tool":
            out["tool_choice"] = {
                "type": "function",
                "function": {"name": choice.get("name", "")},
            }
        elif kind == "auto":
            out["tool_choice"] = "auto"
        if choice.get("disable_parallel_tool_use") is True:
            out["parallel_tool_calls"] = False
    return out


def _function(tool: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {"name": str(tool.get("name", ""))}
    if tool.get("description"):
        function["description"] = str(tool["description"])
    function["parameters"] = schema_clean(
        tool.get("input_schema") or {"type": "object"}
    )
    return {"type": "function", "function": function}


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")


def schema_clean(schema: Any) -> Any:
    """Drop `$schema` from a JSON schema and every schema inside it (not from the
    names of properties, which may be anything)."""
    if isinstance(schema, list):
        return [schema_clean(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$schema":
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: schema_clean(sub) for name, sub in value.items()}
        else:
            out[key] = schema_clean(value)
    return out


def _effort(thinking: Any, output_config: Any) -> str:
    """reasoning_effort from output_config.effort, else from the thinking budget."""
    thinking = thinking if isinstance(thinking, dict) else {}
    if thinking.get("type") not in ("enabled", "adaptive"):
        return ""
    effort = output_config.get("effort") if isinstance(output_config, dict) else None
    if effort in _EFFORTS:
        return _EFFORTS[effort]
    budget = thinking.get("budget_tokens")
    if isinstance(budget, int):
        return "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    return "medium"


# --- responses ---------------------------------------------------------------


def usage_from_openai(usage: Any) -> dict[str, int]:
    """Anthropic usage from OpenAI usage: prompt tokens include the cached ones."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = int(usage.get("prompt_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return {
        "input_tokens": max(prompt - cached, 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }


def message_id(provider_id: Any) -> str:
    """An Anthropic-style message id carrying the provider's id when it has one."""
    text = "".join(c for c in str(provider_id or "") if c.isalnum() or c in "-_")
    return f"msg_{text or uuid.uuid4().hex}"


def response_from_openai(payload: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Convert a Chat Completion into an Anthropic Message."""
    choices = payload.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content") or message.get("refusal")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name", ""),
                "input": _arguments(function.get("arguments")),
            }
        )
    return {
        "id": message_id(payload.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn"),
        "stop_sequence": None,
        "usage": usage_from_openai(payload.get("usage")),
    }


def _arguments(arguments: Any) -> dict[str, Any]:
    """Tool arguments as an object (a model may send broken JSON: keep it visible)."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"_unparsed_arguments": str(arguments)}
    return value if isinstance(value, dict) else {"_value": value}


def tokens_estimate(body: dict[str, Any]) -> int:
    """A rough input token count for a provider with no counting endpoint: the
    characters of system, messages and tools over four."""
    parts = [body.get("system"), body.get("messages"), body.get("tools")]
    characters = sum(
        len(json.dumps(part, ensure_ascii=False)) for part in parts if part
    )
    return max(1, characters // 4)
