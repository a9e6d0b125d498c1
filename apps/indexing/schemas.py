"""Schemas of the transcript search and browse API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import AfterValidator

# Bounds of the parameters that reach SQL: SQLite integers are signed 64-bit (a
# larger id or offset is an OverflowError, not "no rows"), and datetimes near
# year 1 or 9999 overflow when converted to UTC for the query. Out of range is 422.
ID_MAX = 2**63 - 1
OFFSET_MAX = 10**9
YEARS = (1970, 2999)


def _moment_check(value: datetime | None) -> datetime | None:
    if value is not None and not YEARS[0] <= value.year <= YEARS[1]:
        raise ValueError(f"must lie between the years {YEARS[0]} and {YEARS[1]}")
    return value


Moment = Annotated[datetime | None, AfterValidator(_moment_check)]


class SearchFilter(Schema):
    q: str = Field("", max_length=20_000)
    mode: Literal["words", "raw"] = "words"
    project: int | None = Field(None, ge=1, le=ID_MAX)
    session: str = Field("", max_length=200)
    role: Literal["", "user", "assistant", "tool"] = ""
    since: Moment = None
    until: Moment = None
    tool: str = Field("", max_length=100)
    limit: int = Field(20, ge=1, le=200)
    offset: int = Field(0, ge=0, le=100_000)


class SnippetPartOut(Schema):
    text: str
    match: bool


class SearchHitOut(Schema):
    entry_id: int
    uuid: str
    type: str
    role: str
    timestamp: datetime | None
    tools: list[str]
    rank: float
    snippet: str
    snippet_parts: list[SnippetPartOut]
    session_id: str | None
    session_title: str
    project_path: str | None
    line_no: int


class SearchOut(Schema):
    query: str
    mode: str
    limit: int
    offset: int
    has_more: bool
    results: list[SearchHitOut]


class SessionFilter(Schema):
    project: int | None = Field(None, ge=1, le=ID_MAX)
    title: str = Field("", max_length=500)
    since: Moment = None
    until: Moment = None
    subagents: bool = False
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=OFFSET_MAX)


class TranscriptSessionOut(Schema):
    """A session as its transcripts record it. Its calls, tokens and cost are in
    GET /api/sessions, from the usage ledger (each call counted once)."""

    session_id: str
    title: str
    title_source: str
    project_id: int | None
    project_path: str | None
    is_subagent: bool
    agent_id: str
    parent_session_id: str | None
    first_at: datetime | None
    last_at: datetime | None
    cli_version: str
    git_branch: str
    entry_count: int
    user_count: int
    assistant_count: int
    tool_call_count: int


class ThreadFilter(Schema):
    limit: int = Field(200, ge=1, le=2000)
    offset: int = Field(0, ge=0, le=OFFSET_MAX)
    raw: bool = False


class EntryOut(Schema):
    id: int
    line_no: int
    uuid: str
    parent_uuid: str
    type: str
    role: str
    timestamp: datetime | None
    is_sidechain: bool
    is_meta: bool
    agent_id: str
    model: str
    request_id: str
    message_id: str
    text: str
    tools: list[str]
    usage: dict[str, int]
    exchange_id: int | None
    record: Any = None
    subagents: list[SubagentOut] = []


class SubagentOut(Schema):
    session_id: str
    title: str
    entries: list[EntryOut]


class TranscriptOut(Schema):
    session: TranscriptSessionOut
    limit: int
    offset: int
    entries: list[EntryOut]


class TodoFilter(Schema):
    session: str = Field("", max_length=200)
    status: str = Field("", max_length=32)
    limit: int = Field(200, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=OFFSET_MAX)


class TodoOut(Schema):
    kind: str
    session_id: str
    agent_id: str
    position: int
    content: str
    status: str
    active_form: str


class TodosOut(Schema):
    counts: dict[str, int]
    todos: list[TodoOut]


class PlanFilter(Schema):
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=OFFSET_MAX)


class PlanOut(Schema):
    slug: str
    content: str
    modified_at: datetime | None


EntryOut.model_rebuild()
