"""Todos, task lists and plans: small files read whole whenever they change.

Each becomes rows of its own model (for browsing) plus one searchable entry (so a
search finds todo items and plans beside the transcripts).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from django.utils import timezone as dj_timezone

from apps.indexing import rawlines
from apps.indexing.models import Plan, Session, SourceFile, Todo
from apps.indexing.parser import LineError, ParsedLine, json_parse, todos_parse
from apps.indexing.services.batches import entries_insert, entry_row
from apps.indexing.services.txn import write_retry
from apps.indexing.sources import FoundFile, task_session, todo_identity

MAX_BYTES = 32 * 1024 * 1024


def wholefile_ingest(
    *, found: FoundFile, source: SourceFile, report, handle: BinaryIO
) -> None:
    """Replace what a todo, task or plan file contributed with what handle reads."""
    data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        report.problem(
            found.path, 0, f"larger than {MAX_BYTES} bytes; skipped", bad=True
        )
        return
    if found.kind == "plan":
        write, entries = _plan_writer(found, source, data)
    else:
        write, entries = _todo_writer(found, source, data, report)
    if write_retry(lambda: _apply(found, source, len(data), write)):
        report.entries_added += entries


def _apply(
    found: FoundFile, source: SourceFile, size: int, write: Callable[[], None]
) -> bool:
    moved = SourceFile.objects.filter(pk=source.pk, offset=source.offset).update(
        offset=size,
        size=found.size,
        mtime_ns=found.mtime_ns,
        device=found.device,
        inode=found.inode,
        missing=False,
        lines=1,
        indexed_at=dj_timezone.now(),
    )
    if moved != 1:
        return False
    Todo.objects.filter(source_id=source.pk).delete()
    Plan.objects.filter(source_id=source.pk).delete()
    write()
    return True


def _session_pk(key: str) -> int | None:
    return Session.objects.filter(session_id=key).values_list("pk", flat=True).first()


def _todo_writer(
    found: FoundFile, source: SourceFile, data: bytes, report
) -> tuple[Callable[[], None], int]:
    try:
        document = json_parse(data.decode("utf-8", errors="replace"))
    except LineError as exc:
        # Keep the offset moving (so an unchanged bad file is not re-read) but
        # index nothing from it; it is reported once per change.
        report.problem(found.path, 1, str(exc), bad=True)
        document = []
    if found.kind == "todo":
        key, agent = todo_identity(found.path)
    else:
        key, agent = task_session(found.path, found.root), ""
    items = todos_parse(document)
    session_pk = _session_pk(key)
    text = "\n".join(item["content"] for item in items)

    def write() -> None:
        Todo.objects.bulk_create(
            [
                Todo(
                    source_id=source.pk,
                    kind=found.kind,
                    session_key=key,
                    agent_id=agent,
                    position=index,
                    **item,
                )
                for index, item in enumerate(items)
            ]
        )
        if items:  # Claude Code leaves many empty lists: no entry for those
            _entry_write(source, session_pk, found.kind, text, data)

    return write, 1 if items else 0


def _plan_writer(
    found: FoundFile, source: SourceFile, data: bytes
) -> tuple[Callable[[], None], int]:
    # A NUL (which PostgreSQL's text cannot hold) reads as U+FFFD, as in JSON lines.
    text = data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    slug = Path(found.path).stem
    session_pk = (
        Session.objects.filter(slug=slug)
        .order_by("-last_at")
        .values_list("pk", flat=True)
        .first()
    )
    modified = datetime.fromtimestamp(found.mtime_ns / 1e9, tz=UTC)

    def write() -> None:
        Plan.objects.create(
            source_id=source.pk, slug=slug, content=text, modified_at=modified
        )
        _entry_write(source, session_pk, "plan", text, data)

    return write, 1


def _entry_write(
    source: SourceFile, session_pk: int | None, kind: str, text: str, data: bytes
) -> None:
    parsed = ParsedLine(type=kind, text=text[:60_000])
    row = entry_row(
        source_pk=source.pk,
        session_pk=session_pk,
        line_no=1,
        parsed=parsed,
        tools="",
        block_no=0,
        slot=0,
    )
    block = rawlines.block_pack([(data, parsed.text.encode("utf-8", errors="replace"))])
    entries_insert(blocks=[(source.pk, block)], rows=[row])
