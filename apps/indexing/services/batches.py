"""A batch of JSONL lines from one source file, turned into entry rows and written.

Rows are plain tuples inserted with one executemany: an ORM save per line would
cost more than parsing it. Lines and their searchable text go into compressed
blocks (apps.indexing.rawlines); the FTS rows are inserted beside the entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from apps.indexing import rawlines, sql
from apps.indexing.fts import fts_insert
from apps.indexing.models import Entry, Project, Session, SourceFile
from apps.indexing.parser import (
    LineError,
    ParsedLine,
    history_parse,
    json_parse,
    line_parse,
)
from apps.indexing.services.txn import write_retry
from apps.indexing.sources import FoundFile, transcript_identity

_COLUMNS = (
    "source_id",
    "session_id",
    "line_no",
    "type",
    "role",
    "uuid",
    "parent_uuid",
    "timestamp",
    "is_sidechain",
    "is_meta",
    "is_compact_summary",
    "agent_id",
    "spawned_agent",
    "request_id",
    "message_id",
    "model",
    "tools",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "speed",
    "block_id",
    "slot",
)
_ENTRY_INSERT = sql.ENTRY_INSERT.format(
    columns=", ".join(_COLUMNS), marks=", ".join(["%s"] * (len(_COLUMNS) + 1))
)
_TOOL_MAP_MAX = 5000


def entry_row(
    *,
    source_pk: int,
    session_pk: int | None,
    line_no: int,
    parsed: ParsedLine,
    tools: str,
    block_no: int,
    slot: int,
) -> tuple:
    """Return the insert tuple of one entry: _COLUMNS order (block_id = the block's
    index in its batch until written), then the plain text."""
    moment = parsed.timestamp
    return (
        source_pk,
        session_pk,
        line_no,
        parsed.type,
        parsed.role,
        parsed.uuid,
        parsed.parent_uuid,
        str(moment.replace(tzinfo=None)) if moment else None,
        parsed.is_sidechain,
        parsed.is_meta,
        parsed.is_compact_summary,
        parsed.agent_id,
        parsed.spawned_agent,
        parsed.request_id,
        parsed.message_id,
        parsed.model,
        tools,
        *parsed.usage,
        parsed.speed,
        block_no,
        slot,
        parsed.text,
    )


def entries_insert(*, blocks: list[tuple[int, bytes]], rows: list[tuple]) -> None:
    """Insert blocks (source id, data), entry rows, and their FTS rows.

    Call inside the write transaction. Ids are assigned here (_ids_take), so rows
    can name their block and the FTS rows can be inserted with the plain text
    already in hand.
    """
    if not rows:
        return
    with connection.cursor() as cursor:
        block_ids = _ids_take(cursor, "indexing_block", len(blocks))
        _rows_insert(
            cursor,
            sql.BLOCK_INSERT,
            [(block_ids[n], source, data) for n, (source, data) in enumerate(blocks)],
        )
        ids = _ids_take(cursor, "indexing_entry", len(rows))
        _rows_insert(
            cursor,
            _ENTRY_INSERT,
            [
                (
                    ids[n],
                    *row[:_BLOCK],
                    block_ids[row[_BLOCK]],
                    *row[_BLOCK + 1 : -1],
                )
                for n, row in enumerate(rows)
            ],
        )
    fts_insert(
        rows=[
            (ids[n], row[-1], row[_TOOLS], row[_TYPE], row[_ROLE])
            for n, row in enumerate(rows)
        ]
    )


def _rows_insert(cursor: CursorWrapper, insert: str, rows: list[tuple]) -> None:
    """Run an INSERT ... VALUES for each row: executemany on SQLite, one COPY on
    PostgreSQL, where a statement per row cost three times the COPY's time."""
    if connection.vendor == "sqlite":
        cursor.executemany(insert, rows)
        return
    table_columns = insert.split(" VALUES ")[0].removeprefix("INSERT INTO ")
    with cursor.cursor.copy(f"COPY {table_columns} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _ids_take(cursor: CursorWrapper, table: str, count: int) -> Sequence[int]:
    """Return count fresh ids of table, ascending, never used before."""
    if connection.vendor == "sqlite":
        # Under the IMMEDIATE write lock nobody else takes ids meanwhile.
        cursor.execute(sql.NEXT_ID.format(table=table))
        first = cursor.fetchone()[0] + 1
        return range(first, first + count)
    # Other writers may take ids at the same time: draw them from the sequence.
    cursor.execute(sql.IDS_TAKE, [table, count])
    return [row[0] for row in cursor.fetchall()]


_BLOCK = _COLUMNS.index("block_id")
_TOOLS = _COLUMNS.index("tools")
_TYPE = _COLUMNS.index("type")
_ROLE = _COLUMNS.index("role")


class Batch:
    """Lines of one file, parsed and waiting to be written with the file's offset."""

    def __init__(
        self,
        *,
        found: FoundFile,
        source: SourceFile,
        report,
        session_pk: int | None = None,
    ) -> None:
        self.found, self.source_pk, self.report = found, source.pk, report
        self.line_no, self.offset_end = source.lines, source.offset
        self.rows: list[tuple] = []
        self.blocks: list[tuple[int, bytes]] = []
        self.records: list[tuple[bytes, bytes]] = []
        self.records_bytes = 0
        self.nbytes = 0
        self.bad = 0
        self.uuids: dict[str, int] = {}
        self.meta: dict[str, str] = {}
        self.tool_names: dict[str, str] = {}
        self.session_pk: int | None = None
        self.session_keys: dict[str, int] = {}
        if found.kind == "transcript":
            self.session_pk = (
                session_pk or sessions_ensure(paths=[found.path])[found.path]
            )
        else:
            self.session_keys = dict(Session.objects.values_list("session_id", "pk"))

    def full(self, max_rows: int, max_bytes: int) -> bool:
        return len(self.rows) >= max_rows or self.nbytes >= max_bytes

    def add(self, line: bytes) -> None:
        """Parse one line (without its newline) into a row, or count it as bad."""
        self.line_no += 1
        self.offset_end += len(line) + 1
        if not line.strip():
            return
        try:
            parsed = self._parse(line)
        except LineError as exc:
            self._bad(str(exc))
            return
        if parsed.invalid_utf8:
            self.report.problem(
                self.found.path,
                self.line_no,
                "invalid UTF-8 (indexed with U+FFFD)",
                bad=False,
            )
        self.nbytes += len(line)
        self.rows.append(
            entry_row(
                source_pk=self.source_pk,
                session_pk=self.session_pk or self.session_keys.get(parsed.session_id),
                line_no=self.line_no,
                parsed=parsed,
                tools=self._tools(parsed),
                block_no=len(self.blocks),
                slot=len(self.records),
            )
        )
        self.records.append((line, parsed.text.encode("utf-8", errors="replace")))
        self.records_bytes += len(line)
        if self.records_bytes >= rawlines.BLOCK_BYTES:
            self.seal()
        if parsed.uuid:
            self.uuids[parsed.uuid] = self.line_no
        self._meta_note(parsed)

    def skip(self, size: int, *, reason: str) -> None:
        """Count a line of size bytes that is not read (too long) as bad."""
        self.line_no += 1
        self.offset_end += size + 1
        self._bad(reason)

    def _bad(self, reason: str) -> None:
        self.bad += 1
        self.report.problem(self.found.path, self.line_no, reason, bad=True)

    def _parse(self, line: bytes) -> ParsedLine:
        if self.found.kind == "transcript":
            return line_parse(line)
        data = json_parse(line.decode("utf-8", errors="replace"))
        if not isinstance(data, dict):
            raise LineError("not a JSON object")
        return history_parse(data)

    def _tools(self, parsed: ParsedLine) -> str:
        """Name tools on calls, and on results by the call they answer (same file)."""
        names = list(parsed.tools)
        for use_id, name in zip(parsed.tool_use_ids, parsed.tools, strict=False):
            if len(self.tool_names) > _TOOL_MAP_MAX:
                self.tool_names.clear()
            self.tool_names[use_id] = name
        for result_id in parsed.tool_result_ids:
            known = self.tool_names.get(result_id)
            if known and known not in names:
                names.append(known)
        return " ".join(names)[:500]

    def _meta_note(self, parsed: ParsedLine) -> None:
        for key, value in (
            ("cwd", parsed.cwd),
            ("cli_version", parsed.version),
            ("git_branch", parsed.git_branch),
            ("slug", parsed.slug),
        ):
            if value:
                self.meta[key] = value
        if parsed.session_id and "parent_key" not in self.meta:
            self.meta["parent_key"] = parsed.session_id

    def seal(self) -> None:
        """Close the open block: compress the records gathered so far."""
        if self.records:
            self.blocks.append((self.source_pk, rawlines.block_pack(self.records)))
            self.records, self.records_bytes = [], 0

    def clear(self) -> None:
        self.rows, self.blocks, self.nbytes, self.bad, self.uuids = [], [], 0, 0, {}


@dataclass(slots=True)
class _Pending:
    batch_path: str
    found: FoundFile
    source_pk: int
    session_pk: int | None
    expected: int
    offset_end: int
    lines: int
    bad: int
    head: str
    rows: list[tuple]
    blocks: list[tuple[int, bytes]]
    meta: dict[str, str]
    uuids: dict[str, int]


class Committer:
    """Write the batches of many files together: one short transaction per ~2,000
    rows rather than several per file, which is what a tree of small files needs
    (each commit also leaves FTS5 a segment to merge)."""

    def __init__(self, *, report, max_rows: int, max_bytes: int) -> None:
        self.report, self.max_rows, self.max_bytes = report, max_rows, max_bytes
        self.pending: list[_Pending] = []
        self.rows = 0
        self.nbytes = 0
        self.saved_meta: dict[int, dict[str, str]] = {}
        self.projects: dict[str, int] = {}

    def queue(self, batch: Batch, *, expected: int, head: str) -> None:
        """Take the batch's rows (and its new offset) for the next flush."""
        batch.seal()
        self.pending.append(
            _Pending(
                batch.found.path,
                batch.found,
                batch.source_pk,
                batch.session_pk,
                expected,
                batch.offset_end,
                batch.line_no,
                batch.bad,
                head,
                batch.rows,
                batch.blocks,
                dict(batch.meta),
                batch.uuids,
            )
        )
        self.rows += len(batch.rows)
        self.nbytes += batch.nbytes
        batch.clear()

    def due(self) -> bool:
        return self.rows >= self.max_rows or self.nbytes >= self.max_bytes

    def flush(self) -> int:
        """Write everything queued; return the number of entries written."""
        if not self.pending:
            return 0
        self._duplicates_report()
        written = write_retry(self._write)
        self.pending, self.rows, self.nbytes = [], 0, 0
        return written

    def _write(self) -> int:
        rows: list[tuple] = []
        blocks: list[tuple[int, bytes]] = []
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        cursor = connection.cursor()
        for item in self.pending:
            found = item.found
            # Raw SQL: thousands of small files make the ORM's per-call cost count.
            cursor.execute(
                sql.SOURCE_MOVE,
                [
                    item.offset_end,
                    item.lines,
                    found.size,
                    found.mtime_ns,
                    found.device,
                    found.inode,
                    item.session_pk,
                    item.head,
                    item.bad,
                    now,
                    item.source_pk,
                    item.expected,
                ],
            )
            if cursor.rowcount != 1:  # another run moved this file first
                continue
            base = len(blocks)
            blocks.extend(item.blocks)
            rows.extend(
                (*row[:_BLOCK], base + row[_BLOCK], *row[_BLOCK + 1 :])
                for row in item.rows
            )
            if item.session_pk and self.saved_meta.get(item.session_pk) != item.meta:
                _session_meta_save(item.session_pk, item.meta, self.projects)
                self.saved_meta[item.session_pk] = item.meta
        entries_insert(blocks=blocks, rows=rows)
        return len(rows)

    def _duplicates_report(self) -> None:
        """Report uuids already seen in another file (both copies are kept)."""
        owners: dict[str, _Pending] = {}
        for item in self.pending:
            for uuid in item.uuids:
                first = owners.setdefault(uuid, item)
                if first.source_pk != item.source_pk:
                    self._duplicate(item, uuid, first.batch_path)
        uuids = list(owners)
        for start in range(0, len(uuids), 900):
            chunk = uuids[start : start + 900]
            clash = (
                Entry.objects.filter(uuid__in=chunk)
                .exclude(uuid="")
                .values_list("uuid", "source_id", "source__path")
            )
            for uuid, source_pk, other in clash:
                if source_pk != owners[uuid].source_pk:
                    self._duplicate(owners[uuid], uuid, other)

    def _duplicate(self, item: _Pending, uuid: str, other: str) -> None:
        self.report.problem(
            item.batch_path,
            item.uuids[uuid],
            f"duplicate uuid {uuid} (also in {other}); kept in both",
            bad=False,
        )


def sessions_ensure(*, paths: list[str]) -> dict[str, int]:
    """Return {transcript path: session pk}, creating sessions in one transaction."""
    wanted: dict[str, tuple[str, bool, str, str]] = {}
    for path in paths:
        key, is_subagent, agent_id = transcript_identity(path)
        parts = Path(path).parts
        parent = parts[-3] if is_subagent and parts[-2:-1] == ("subagents",) else ""
        wanted[path] = (key, is_subagent, agent_id, parent)

    def create() -> dict[str, int]:
        keys = {w[0] for w in wanted.values()}
        existing = dict(
            Session.objects.filter(session_id__in=keys).values_list("session_id", "pk")
        )
        fresh = {
            w[0]: Session(
                session_id=w[0], is_subagent=w[1], agent_id=w[2], parent_key=w[3]
            )
            for w in wanted.values()
            if w[0] not in existing
        }
        Session.objects.bulk_create(fresh.values())
        created = Session.objects.filter(session_id__in=list(fresh))
        existing.update(created.values_list("session_id", "pk"))
        return {path: existing[w[0]] for path, w in wanted.items()}

    return write_retry(create)


def _session_meta_save(
    session_pk: int, meta: dict[str, str], projects: dict[str, int]
) -> None:
    """Record the latest CLI version, branch, slug, cwd, parent and project."""
    fields = {
        k: meta[k] for k in ("cli_version", "git_branch", "slug", "cwd") if meta.get(k)
    }
    with connection.cursor() as cursor:
        if fields:
            assignments = ", ".join(f"{name} = %s" for name in fields)
            cursor.execute(
                sql.SESSION_UPDATE.format(assignments=assignments),
                [*fields.values(), session_pk],
            )
        if meta.get("parent_key"):
            cursor.execute(sql.SESSION_PARENT_SET, [meta["parent_key"], session_pk])
        if meta.get("cwd"):
            if meta["cwd"] not in projects:
                project, _ = Project.objects.get_or_create(path=meta["cwd"])
                projects[meta["cwd"]] = project.pk
            cursor.execute(sql.SESSION_PROJECT_SET, [projects[meta["cwd"]], session_pk])
