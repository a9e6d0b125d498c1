"""A session's thread and single entries: their original lines and searchable text."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from apps.indexing.models import Block, Entry, Session
from apps.indexing.rawlines import block_record
from apps.indexing.selectors.sessions import findable
from apps.indexing.selectors.turns import TurnMark
from apps.proxy.selectors import exchange_ids_by_request_id

# Entries that carry a session for search filters but are not lines of it.
NOT_TRANSCRIPT = ("todo", "task", "plan", "history")


@dataclass(slots=True)
class ThreadEntry:
    entry: Entry
    exchange_id: int | None = None
    subagents: list[SubagentThread] = field(default_factory=list)
    text: str = ""
    line: bytes = b""


@dataclass(slots=True)
class SubagentThread:
    session: Session
    entries: list[ThreadEntry]


def session_thread(
    *, session: Session, limit: int = 200, offset: int = 0
) -> list[ThreadEntry]:
    """Return a page of a session's entries in file order, subagents attached.

    A subagent's entries follow the parent entry that reported or started it;
    each entry carries the id of the relayed exchange with its requestId.
    Five queries whatever the page holds.
    """
    page = list(
        Entry.objects.filter(session=session)
        .exclude(type__in=NOT_TRANSCRIPT)
        .order_by("id")[offset : offset + limit]
    )
    uuids = {e.uuid for e in page if e.uuid}
    children = [
        s
        for s in Session.objects.filter(parent=session, spawn_uuid__in=uuids).order_by(
            "first_at", "id"
        )
    ]
    child_entries: dict[int | None, list[Entry]] = {s.pk: [] for s in children}
    for entry in Entry.objects.filter(session__in=children).order_by("id"):
        child_entries[entry.session_id].append(entry)
    exchanges = exchange_ids_by_request_id(
        request_ids=[e.request_id for e in page]
        + [e.request_id for rows in child_entries.values() for e in rows]
    )
    children_rows = [e for rows in child_entries.values() for e in rows]
    unpacked = _entries_unpack(page + children_rows)

    def item(entry: Entry, subagents: list[SubagentThread]) -> ThreadEntry:
        line, text = unpacked.get(entry.id, (b"", ""))
        exchange = exchanges.get(entry.request_id)
        return ThreadEntry(entry, exchange, subagents, text, line)

    spawned: dict[str, list[SubagentThread]] = {}
    for child in children:
        rows = [item(e, []) for e in child_entries[child.pk]]
        spawned.setdefault(child.spawn_uuid, []).append(SubagentThread(child, rows))
    return [item(e, spawned.get(e.uuid, []) if e.uuid else []) for e in page]


def _entries_unpack(
    entries: list[Entry] | list[TurnMark],
) -> dict[int, tuple[bytes, str]]:
    """Return {entry id: (original line, searchable text)}, one query for all."""
    wanted = {e.block_id for e in entries}
    blocks = dict(Block.objects.filter(id__in=wanted).values_list("id", "data"))
    unpacked = {}
    for entry in entries:
        if entry.block_id in blocks:
            data = blocks[entry.block_id]
            line, text = block_record(entry.block_id, data, entry.slot)
            unpacked[entry.id] = (line, text.decode("utf-8", errors="replace"))
    return unpacked


def session_exchange_links(*, session_id: str) -> list[tuple[int, str, str, int]]:
    """Return (entry id, uuid, requestId, exchange id) of a session's relayed turns."""
    if not findable(session_id):
        return []
    rows = list(
        Entry.objects.filter(session__session_id=session_id)
        .exclude(request_id="")
        .order_by("id")
        .values_list("id", "uuid", "request_id")
    )
    exchanges = exchange_ids_by_request_id(request_ids=[r[2] for r in rows])
    return [
        (pk, uuid, req, exchanges[req]) for pk, uuid, req in rows if req in exchanges
    ]


def entry_by_request_id(*, request_id: str) -> Entry | None:
    """Return the first transcript entry written for a relayed request-id, or None."""
    if not request_id or not findable(request_id):
        return None
    return (
        Entry.objects.select_related("session__project")
        .filter(request_id=request_id)
        .exclude(request_id="")
        .order_by("id")
        .first()
    )


def entry_raw(*, entry: Entry) -> bytes:
    """Return the original line of an entry, byte for byte."""
    return _entries_unpack([entry]).get(entry.id, (b"", ""))[0]


def entry_text(*, entry: Entry) -> str:
    """Return the searchable text of an entry."""
    return _entries_unpack([entry]).get(entry.id, (b"", ""))[1]


def line_record(line: bytes) -> dict | list | str:
    """Return an original line decoded as JSON (or as text if it is not JSON)."""
    text = line.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def entry_ids_by_uuid(*, session: Session, uuids: list[str]) -> dict[str, int]:
    """Return {uuid: entry id} for a session's entries with these uuids."""
    wanted = [u for u in uuids if u and findable(u)]
    if not wanted:
        return {}
    rows = Entry.objects.filter(session=session, uuid__in=wanted[:900])
    return dict(rows.values_list("uuid", "id"))


def entry_records(
    *, entries: list[Entry] | list[TurnMark]
) -> dict[int, tuple[bytes, str]]:
    """Return {entry id: (original line, searchable text)}, one query for all."""
    return _entries_unpack(entries)


def thread_count(*, session: Session) -> int:
    """Return how many entries a session's thread holds (for paging)."""
    return (
        Entry.objects.filter(session=session).exclude(type__in=NOT_TRANSCRIPT).count()
    )


def thread_position(*, session: Session, entry_id: int) -> int | None:
    """Return the 0-based position of an entry in its session's thread, or None."""
    thread = Entry.objects.filter(session=session).exclude(type__in=NOT_TRANSCRIPT)
    if not thread.filter(id=entry_id).exists():
        return None
    return thread.filter(id__lt=entry_id).count()


def entry_id_by_uuid(*, session: Session, uuid: str) -> int | None:
    """Return the id of a session's entry with this uuid, or None."""
    if not uuid or not findable(uuid):
        return None
    return (
        Entry.objects.filter(session=session, uuid=uuid)
        .values_list("id", flat=True)
        .first()
    )
