"""A sample ~/.claude tree builder: real files in a temporary directory.

Line shapes follow shared/reference/claude-code-data.md (releases 2.1.112, 2.1.197
and 2.1.330): string and block content, one line per assistant content block with a
repeated usage, tool results with toolUseResult, summaries, titles, system and
attachment lines, unknown types, and both subagent layouts.
"""

from __future__ import annotations

import ctypes
import json
import os
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _ts(seconds: float) -> str:
    moment = T0 + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def encode_folder(path: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in path)


class Transcript:
    """One transcript file; helpers append lines the way Claude Code writes them."""

    def __init__(
        self, path: Path, *, session_id: str, cwd: str, version: str, agent_id: str = ""
    ) -> None:
        self.path, self.session_id, self.cwd, self.version = (
            path,
            session_id,
            cwd,
            version,
        )
        self.agent_id = agent_id
        self.clock = 0.0
        self.last_uuid: str | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def _common(self, **extra: Any) -> dict:
        self.clock += 1
        record = {
            "parentUuid": self.last_uuid,
            "isSidechain": bool(self.agent_id),
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "version": self.version,
            "gitBranch": "main",
            "uuid": str(uuidlib.uuid4()),
            "timestamp": _ts(self.clock),
        }
        if self.agent_id:
            record["agentId"] = self.agent_id
        record.update(extra)
        self.last_uuid = record["uuid"]
        return record

    def write(self, *records: dict | bytes | str) -> None:
        with open(self.path, "ab") as handle:
            for record in records:
                if isinstance(record, dict):
                    record = json.dumps(record)
                if isinstance(record, str):
                    record = record.encode()
                handle.write(record + b"\n")

    def user(self, content: Any, **extra: Any) -> dict:
        record = self._common(
            type="user", message={"role": "user", "content": content}, **extra
        )
        self.write(record)
        return record

    def assistant(
        self,
        blocks: list[dict],
        *,
        message_id: str,
        request_id: str,
        usage: dict | None = None,
        model: str = "claude-sonnet-4-5-20250929",
        **extra: Any,
    ) -> list[dict]:
        """Write one line per content block, each repeating the same usage."""
        usage = usage or {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        records = []
        for block in blocks:
            message = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [block],
                "stop_reason": None,
                "usage": usage,
            }
            records.append(
                self._common(
                    type="assistant", message=message, requestId=request_id, **extra
                )
            )
        self.write(*records)
        return records

    def tool_result(self, tool_use_id: str, output: str, **extra: Any) -> dict:
        return self.user(
            [
                {
                    "tool_use_id": tool_use_id,
                    "type": "tool_result",
                    "content": output,
                    "is_error": False,
                }
            ],
            toolUseResult={
                "stdout": output,
                "stderr": "",
                "interrupted": False,
                "isImage": False,
            },
            **extra,
        )

    def other(self, **fields: Any) -> dict:
        record = {"sessionId": self.session_id, "timestamp": _ts(self.clock), **fields}
        self.write(record)
        return record


class ClaudeTree:
    """A config root (like ~/.claude) under a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "projects").mkdir(parents=True, exist_ok=True)

    def transcript(
        self,
        *,
        cwd: str = "/home/me/my_proj",
        session_id: str | None = None,
        version: str = "2.1.197",
    ) -> Transcript:
        session_id = session_id or str(uuidlib.uuid4())
        path = self.root / "projects" / encode_folder(cwd) / f"{session_id}.jsonl"
        return Transcript(path, session_id=session_id, cwd=cwd, version=version)

    def subagent(self, parent: Transcript, *, agent_id: str, layout: str) -> Transcript:
        folder = parent.path.parent
        if layout == "old":
            path = folder / f"agent-{agent_id}.jsonl"
        else:
            path = folder / parent.session_id / "subagents" / f"agent-{agent_id}.jsonl"
        sub = Transcript(
            path,
            session_id=parent.session_id,
            cwd=parent.cwd,
            version=parent.version,
            agent_id=agent_id,
        )
        sub.clock = parent.clock
        return sub

    def todo(
        self, session_id: str, items: list[dict], agent_id: str | None = None
    ) -> Path:
        path = self.root / "todos" / f"{session_id}-agent-{agent_id or session_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(items))
        return path

    def plan(self, slug: str, text: str) -> Path:
        path = self.root / "plans" / f"{slug}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def history(self, *records: dict) -> Path:
        path = self.root / "history.jsonl"
        with open(path, "a") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
        return path


@pytest.fixture
def claude_tree(tmp_path: Path, settings) -> ClaudeTree:
    """An empty config root that index_sync reads (CLAUDEMON_CLAUDE_DIRS)."""
    tree = ClaudeTree(tmp_path / "dot-claude")
    settings.CLAUDEMON_CLAUDE_DIRS = [str(tree.root)]
    return tree


def conversation_write(
    tree: ClaudeTree, *, cwd: str = "/home/me/my_proj", version: str = "2.1.197"
) -> Transcript:
    """Write the standard sample session: 11 lines, 2 responses, known totals.

    Lines: queue-operation, user prompt, assistant text+tool_use (2 lines, same
    usage), tool result, assistant text, system, attachment, unknown type,
    last-prompt, and a <synthetic> API-error line that must not count.
    """
    t = tree.transcript(cwd=cwd, version=version)
    t.other(
        type="queue-operation",
        operation="enqueue",
        content="plan the migration rollback",
    )
    t.user("plan the migration rollback for the billing service")
    usage1 = {
        "input_tokens": 1200,
        "output_tokens": 300,
        "cache_creation_input_tokens": 2000,
        "cache_read_input_tokens": 5000,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 1500,
            "ephemeral_1h_input_tokens": 500,
        },
    }
    t.assistant(
        [
            {"type": "text", "text": "I will inspect the alembic history first."},
            {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "Bash",
                "input": {
                    "command": "alembic history --verbose",
                    "description": "history",
                },
            },
        ],
        message_id="msg_01",
        request_id="req_01",
        usage=usage1,
    )
    t.tool_result("toolu_01", "rev 42 -> 43 (head), add invoices table\n" * 3)
    t.assistant(
        [{"type": "text", "text": "Rollback with alembic downgrade 42."}],
        message_id="msg_02",
        request_id="req_02",
        usage={
            "input_tokens": 50,
            "output_tokens": 20,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 7000,
        },
    )
    t.other(type="system", subtype="turn_duration", durationMs=5000)
    t.other(type="attachment", attachment={"type": "skill_listing", "content": "x"})
    t.other(type="brand-new-type", payload={"anything": [1, 2, 3]})
    t.other(type="last-prompt", lastPrompt="plan the migration", leafUuid=t.last_uuid)
    t.assistant(
        [{"type": "text", "text": "API Error: overloaded"}],
        message_id="msg_err",
        request_id="req_err",
        model="<synthetic>",
        usage={"input_tokens": 0, "output_tokens": 0},
        isApiErrorMessage=True,
    )
    return t


@contextmanager
def unreadable(path: Path) -> Iterator[None]:
    """Make a file unreadable by this thread, even when the tests run as root."""
    mode = path.stat().st_mode
    path.chmod(0)
    try:
        with _without_dac_override():
            yield
    finally:
        path.chmod(mode)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inh")]


@contextmanager
def _without_dac_override() -> Iterator[None]:
    """Drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from this thread's effective
    set (root reads any file with them; capabilities(7)); restore them after."""
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()  # version 3
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    saved = data[0].effective
    data[0].effective &= ~0b110  # bits 1 and 2
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    try:
        yield
    finally:
        data[0].effective = saved
        libc.capset(ctypes.byref(header), data)
