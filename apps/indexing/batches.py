"""A batch of JSONL lines from one source file, turned into entry rows and written.

Rows are plain tuples inserted with one executemany: an ORM save per line would
cost more than parsing it. The FTS index follows through the migration's triggers.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from apps.indexing import rawlines
from apps.indexing.models import Entry, Project, Session, SourceFile
from apps.indexing.parser import LineError, ParsedLine, history_parse, line_parse
from apps.indexing.sources import FoundFile, transcript_identity
from apps.indexing.txn import write_retry

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
    "agent_id",
    "spawned_agent",
    "request_id",
    "message_id",
    "model",
    "text_packed",
    "tools",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "raw",
)
INSERT_SQL = (
    f"INSERT INTO indexing_entry ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(_COLUMNS))})"
)
_TOOL_MAP_MAX = 5000


def entry_row(
    *,
    source_pk: int,
    session_pk: int | None,
    line_no: int,
    parsed: ParsedLine,
    tools: str,
    raw: bytes,
) -> tuple:
    """Return the insert tuple of one entry, in _COLUMNS order."""
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
        parsed.agent_id,
        parsed.spawned_agent,
        parsed.request_id,
        parsed.message_id,
        parsed.model,
        rawlines.text_pack(parsed.text),
        tools,
        *parsed.usage,
        raw,
    )


def entries_insert(rows: list[tuple]) -> None:
    """Insert entry rows (call inside a transaction)."""
    if rows:
        with connection.cursor() as cursor:
            cursor.executemany(INSERT_SQL, rows)


class Batch:
    """Lines of one file, parsed and waiting to be written with the file's offset."""

    def __init__(
        self, *, found: FoundFile, source: SourceFile, dict_id: int | None, report
    ) -> None:
        self.found, self.source_pk, self.dict_id, self.report = (
            found,
            source.pk,
            dict_id,
            report,
        )
        self.line_no, self.offset_end = source.lines, source.offset
        self.rows: list[tuple] = []
        self.nbytes = 0
        self.bad = 0
        self.uuids: dict[str, int] = {}
        self.meta: dict[str, str] = {}
        self.tool_names: dict[str, str] = {}
        self.session_pk: int | None = None
        self.session_keys: dict[str, int] = {}
        if found.kind == "transcript":
            self.session_pk = _session_ensure(found.path)
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
            self.bad += 1
            self.report.problem(self.found.path, self.line_no, str(exc), bad=True)
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
                raw=rawlines.line_encode(line, dict_id=self.dict_id),
            )
        )
        if parsed.uuid:
            self.uuids[parsed.uuid] = self.line_no
        self._meta_note(parsed)

    def _parse(self, line: bytes) -> ParsedLine:
        if self.found.kind == "transcript":
            return line_parse(line)
        try:
            data = json.loads(line.decode("utf-8", errors="replace"))
        except ValueError as exc:
            raise LineError(f"malformed JSON ({exc})") from None
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
            name = self.tool_names.get(result_id)
            if name and name not in names:
                names.append(name)
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

    def duplicates_report(self) -> None:
        """Report uuids already indexed from another file (both copies are kept)."""
        uuids = list(self.uuids)
        for start in range(0, len(uuids), 900):
            chunk = uuids[start : start + 900]
            clash = (
                Entry.objects.filter(uuid__in=chunk)
                .exclude(uuid="")
                .exclude(source_id=self.source_pk)
                .values_list("uuid", "source__path")
            )
            for uuid, other in clash:
                self.report.problem(
                    self.found.path,
                    self.uuids[uuid],
                    f"duplicate uuid {uuid} (also in {other}); kept in both",
                    bad=False,
                )

    def write(self, *, expected_offset: int, head: str) -> bool:
        """Insert the rows and move the offset; False if another run moved it first."""
        moved = SourceFile.objects.filter(
            pk=self.source_pk, offset=expected_offset
        ).update(
            offset=self.offset_end,
            lines=self.line_no,
            size=self.found.size,
            mtime_ns=self.found.mtime_ns,
            device=self.found.device,
            inode=self.found.inode,
            missing=False,
            session_id=self.session_pk,
            head=head,
            bad_lines=F("bad_lines") + self.bad,
            indexed_at=timezone.now(),
        )
        if moved != 1:
            return False
        entries_insert(self.rows)
        if self.session_pk:
            _session_meta_save(self.session_pk, self.meta)
        return True

    def clear(self) -> None:
        self.rows, self.nbytes, self.bad, self.uuids = [], 0, 0, {}


def _session_ensure(path: str) -> int:
    key, is_subagent, agent_id = transcript_identity(path)
    parts = Path(path).parts
    parent_key = parts[-3] if is_subagent and parts[-2:-1] == ("subagents",) else ""
    session, _ = write_retry(
        lambda: Session.objects.get_or_create(
            session_id=key,
            defaults={
                "is_subagent": is_subagent,
                "agent_id": agent_id,
                "parent_key": parent_key,
            },
        )
    )
    return session.pk


def _session_meta_save(session_pk: int, meta: dict[str, str]) -> None:
    if not meta:
        return
    fields = {
        k: v for k, v in meta.items() if k in ("cli_version", "git_branch", "slug")
    }
    fields["cwd"] = meta.get("cwd", "")
    if not fields["cwd"]:
        del fields["cwd"]
    sessions = Session.objects.filter(pk=session_pk)
    if fields:
        sessions.update(**fields)
    if meta.get("parent_key"):
        sessions.filter(is_subagent=True, parent_key="").update(
            parent_key=meta["parent_key"]
        )
    if meta.get("cwd"):
        project, _ = Project.objects.get_or_create(path=meta["cwd"])
        sessions.filter(Q(project__isnull=True) | Q(project__path_known=False)).update(
            project=project
        )
