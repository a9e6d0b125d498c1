"""Session totals, titles and subagent links, recomputed from a session's entries.

Recomputing from the entries (rather than adding deltas per batch) keeps the
totals right however a file was re-read; one streaming query per chunk of
sessions keeps it cheap on a full index of thousands of sessions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import Q

from apps.indexing import sql
from apps.indexing.models import (
    Block,
    Entry,
    Project,
    Session,
    SourceFile,
    TranscriptCall,
)
from apps.indexing.parser import title_clean
from apps.indexing.rawlines import block_records
from apps.indexing.services.txn import write_retry
from apps.indexing.sources import transcript_folder
from apps.proxy import services as ledger
from apps.proxy.pricing import Usage, usage_cost

CHUNK = 200
_PROMPTS_TRIED = 5  # the first prompts may all be slash-command scaffolding
_FIELDS = [
    "title",
    "title_source",
    "first_at",
    "last_at",
    "entry_count",
    "user_count",
    "assistant_count",
    "tool_call_count",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cost_usd",
]


@dataclass
class _Totals:
    count: int = 0
    # Times as stored (naive UTC ISO text, read with '' || so that sqlite3 does
    # not parse 20,000 of them): they order as the times do; parsed once at the end.
    first: str | None = None
    last: str | None = None
    users: int = 0
    tool_calls: int = 0
    # Where title candidates' texts are: (block id, slot); read after the scan.
    custom: tuple[int, int] | None = None
    ai: tuple[int, int] | None = None
    prompts: list[tuple[int, int]] = field(default_factory=list)
    uuids: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    # (message.id, requestId) -> [model, first timestamp, usage maxima x5, first
    # line id, its uuid, turn, requestId, tool names, message.id, speed, price]:
    # one TranscriptCall row each.
    messages: dict[tuple, list] = field(default_factory=dict)

    def add(self, row: tuple) -> None:
        (
            _,
            pk,
            kind,
            is_prompt,
            moment,
            uuid,
            message_id,
            request_id,
            model,
            tools,
            *usage,
            speed,
            block_id,
            slot,
        ) = row
        if uuid:
            # The same file under two config roots (or copied) is one session:
            # count each line once, so turns and tools are not doubled.
            if uuid in self.seen:
                return
            self.seen.add(uuid)
        self.count += 1
        if moment:
            self.first = min(self.first, moment) if self.first else moment
            self.last = max(self.last, moment) if self.last else moment
        if uuid:
            self.uuids.append(uuid)
        if kind == "custom-title":
            self.custom = (block_id, slot)
        elif kind == "ai-title":
            self.ai = (block_id, slot)
        elif is_prompt:
            self.users += 1
            if len(self.prompts) < _PROMPTS_TRIED:
                self.prompts.append((block_id, slot))
        elif kind == "assistant" and model != "<synthetic>":
            self.tool_calls += len(tools.split())
            key = (message_id, request_id) if message_id else ("", pk)
            turn = self.users  # the prompts before it (0: before the first)
            self._usage_add(
                key,
                [model, moment, *usage, pk, uuid, turn, request_id, tools]
                + [message_id, speed],
            )

    def _usage_add(self, key: tuple, message: list) -> None:
        seen = self.messages.get(key)
        if seen is None:
            self.messages[key] = message
            return
        # The same response is written once per content block: count it once,
        # keeping the largest value seen (later blocks may carry final output).
        for index in range(2, 7):
            seen[index] = max(seen[index], message[index])
        if message[_TOOLS]:
            seen[_TOOLS] = f"{seen[_TOOLS]} {message[_TOOLS]}".lstrip()


_TOOLS = 11


def sessions_finalize(*, session_pks: set[int]) -> None:
    """Recompute totals, titles, project and subagent links of the given sessions."""
    pks = sorted(session_pks)
    if not pks:
        return
    summaries = _summaries_by_leaf()
    for start in range(0, len(pks), CHUNK):
        chunk = pks[start : start + CHUNK]
        totals = {pk: _Totals() for pk in chunk}
        with connection.cursor() as cursor:
            cursor.execute(
                sql.SESSION_ENTRIES.format(marks=",".join(["%s"] * len(chunk))), chunk
            )
            for row in cursor:
                totals[row[0]].add(row)
        refs = {r for t in totals.values() for r in (t.custom, t.ai, *t.prompts) if r}
        leaves = {
            u: summaries[u] for t in totals.values() for u in t.uuids if u in summaries
        }
        texts = _texts_load(refs | set(leaves.values()))
        sessions = list(Session.objects.filter(pk__in=chunk))
        for session in sessions:
            _session_apply(session, totals[session.pk], leaves, texts)
        calls = [
            _call_row(session.pk, message)
            for session in sessions
            for message in totals[session.pk].messages.values()
        ]
        write_retry(functools.partial(_sessions_save, sessions, calls))
    write_retry(lambda: _projects_fill(pks))
    write_retry(lambda: _subagents_link(pks))
    for start in range(0, len(pks), CHUNK):
        chunk = pks[start : start + CHUNK]
        write_retry(functools.partial(sessions_ledger_merge, chunk))


def _call_row(session_pk: int, message: list) -> tuple:
    """Return the TranscriptCall row of a response (_Totals.messages' shape)."""
    model, stamp, *usage = message[:7]
    first, uuid, turn, request_id, tools, message_id, speed, price = message[7:]
    return (session_pk, first, uuid, turn, stamp, request_id, message_id, model,
            speed, tools, *usage, price)  # fmt: skip


def sessions_ledger_merge(session_pks: list[int]) -> None:
    """Enter the sessions' calls in the usage ledger (apps.proxy: one row per
    call, whichever files and sessions record it)."""
    marks = ", ".join(["%s"] * len(session_pks))
    with connection.cursor() as cursor:
        cursor.execute(sql.LEDGER_CALLS.format(marks=marks), session_pks)
        rows = cursor.fetchall()
    ledger.call_merge_transcripts(
        rows=[
            {
                "request_id": row[0],
                "message_id": row[1],
                "uuid": row[2],
                "at": _moment(row[3]) or datetime.now(UTC),
                "model": row[4],
                "speed": row[5],
                "usage": row[6:11],
                "cost_usd": row[11],
                "tools": row[12],
                "session_id": row[13],
                "agent_id": row[14],
                "project_id": row[15],
            }  # fmt: skip
            for row in rows
        ]
    )


def _ledger_forget(keys: set[str]) -> None:
    """Drop the transcript side of calls that no transcript records any more."""
    if not keys:
        return
    still = set()
    for key in keys:
        if key.startswith("msg:"):
            found = TranscriptCall.objects.filter(message_id=key[4:], request_id="")
        elif key.startswith("uuid:"):
            found = TranscriptCall.objects.filter(uuid=key[5:], request_id="")
        else:
            found = TranscriptCall.objects.filter(request_id=key)
        if found.exists():
            still.add(key)
    ledger.call_untranscribe(keys=keys - still)


def _call_key(request_id: str, message_id: str, uuid: str) -> str:
    """Return the ledger key of a transcript call (apps.proxy.services.calls)."""
    if request_id:
        return request_id
    return f"msg:{message_id}" if message_id else f"uuid:{uuid}"


def _sessions_save(sessions: list[Session], calls: list[tuple]) -> None:
    """Write the recomputed fields and calls (raw executemany: bulk_update's CASE
    chains cost more than the computation itself on thousands of sessions)."""
    if not sessions:
        return
    ops = connection.ops
    rows = []
    for session in sessions:
        values = [getattr(session, name) for name in _FIELDS]
        rows.append(
            [
                ops.adapt_datetimefield_value(v) if isinstance(v, datetime) else v
                for v in values
            ]
            + [session.pk]
        )
    assignments = ", ".join(f"{name} = %s" for name in _FIELDS)
    with connection.cursor() as cursor:
        cursor.executemany(sql.SESSION_UPDATE.format(assignments=assignments), rows)
        _calls_save(cursor, [session.pk for session in sessions], calls)


def _calls_save(cursor: CursorWrapper, session_pks: list[int], calls: list) -> None:
    """Replace the sessions' calls, writing only the rows that changed: a live
    session gains a line at a time, and rewriting its thousands of calls on
    every sync cost a third of its finalizing."""
    marks = ", ".join(["%s"] * len(session_pks))
    columns = sql.CALL_COLUMNS.replace("timestamp", "'' || timestamp")
    cursor.execute(
        sql.CALLS_OF_SESSIONS.format(columns=columns, marks=marks), session_pks
    )
    stored = {tuple(row): pk for pk, *row in cursor.fetchall()}
    fresh = [row for row in calls if stored.pop(row, None) is None]
    cursor.executemany(sql.CALL_DELETE, [(pk,) for pk in stored.values()])
    cursor.executemany(sql.CALL_INSERT, fresh)
    # Calls a session no longer records (a file shrank or was replaced).
    _ledger_forget({_call_key(row[5], row[6], row[2]) for row in stored})


def _summaries_by_leaf() -> dict[str, tuple[int, int]]:
    """Return {leaf uuid: (block, slot) of the last summary naming it}.

    One read of all summaries (a partial index holds only them) is cheaper than
    looking up every uuid of the touched sessions.
    """
    rows = Entry.objects.filter(type="summary").exclude(parent_uuid="").order_by("id")
    return {
        leaf: (block_id, slot)
        for leaf, block_id, slot in rows.values_list("parent_uuid", "block_id", "slot")
    }


def _texts_load(refs: set[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """Return the searchable texts at (block id, slot) places, one read per block."""
    block_ids = sorted({block_id for block_id, _ in refs})
    texts: dict[tuple[int, int], str] = {}
    for start in range(0, len(block_ids), 500):
        blocks = Block.objects.filter(id__in=block_ids[start : start + 500])
        for block_id, data in blocks.values_list("id", "data"):
            records = block_records(block_id, data)
            for ref in refs:
                if ref[0] == block_id:
                    texts[ref] = records[ref[1]][1].decode("utf-8", errors="replace")
    return texts


def _session_apply(
    session: Session,
    totals: _Totals,
    summaries: dict[str, tuple[int, int]],
    texts: dict[tuple[int, int], str],
) -> None:
    leaf = next((u for u in reversed(totals.uuids) if u in summaries), None)
    prompt = next(
        (
            t
            for t in (title_clean(texts.get(r, "")[:1000]) for r in totals.prompts)
            if t
        ),
        "",
    )
    candidates = (
        ("custom", texts.get(totals.custom, "") if totals.custom else ""),
        ("ai", texts.get(totals.ai, "") if totals.ai else ""),
        ("summary", texts.get(summaries[leaf], "") if leaf else ""),
        ("prompt", prompt),
    )
    for source, text in candidates:
        if text:
            session.title, session.title_source = (
                title_clean(text) or text[:200],
                source,
            )
            break
    else:
        session.title, session.title_source = "", ""
    session.first_at = _moment(totals.first)
    session.last_at = _moment(totals.last)
    session.entry_count = totals.count
    session.user_count = totals.users
    session.assistant_count = len(totals.messages)
    session.tool_call_count = totals.tool_calls
    _usage_apply(session, totals)


def _usage_apply(session: Session, totals: _Totals) -> None:
    sums = [0, 0, 0, 0, 0]
    cost = None
    for message in totals.messages.values():
        model, moment, *usage = message[:7]
        sums = [a + b for a, b in zip(sums, usage, strict=True)]
        at = _moment(moment) or datetime.now(UTC)
        speed = message[13]
        price = (
            usage_cost(model=model, usage=Usage(*usage), at=at, speed=speed)
            if model
            else None
        )
        message.append(price)
        if price is not None:
            cost = (cost or 0.0) + price
    (
        session.input_tokens,
        session.output_tokens,
        session.cache_read_tokens,
        session.cache_write_5m_tokens,
        session.cache_write_1h_tokens,
    ) = sums
    session.cost_usd = cost


def _moment(value: datetime | str | None) -> datetime | None:
    """Return an aware UTC datetime from what SQLite hands back (naive UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _projects_fill(pks: list[int]) -> None:
    """Give sessions no cwd has placed yet a stand-in project named by their folder."""
    orphans = SourceFile.objects.filter(
        session_id__in=pks, session__project__isnull=True, kind="transcript"
    ).values_list("session_id", "path", "root")
    for session_pk, path, root in orphans:
        folder = transcript_folder(path, root) or "(unknown)"
        project, _ = Project.objects.get_or_create(
            path=folder, defaults={"folder": folder, "path_known": False}
        )
        Session.objects.filter(pk=session_pk, project__isnull=True).update(
            project=project
        )
    Project.objects.filter(path_known=False, sessions__isnull=True).delete()


def _subagents_link(pks: list[int]) -> None:
    """Link subagent sessions to their parent and the entry that spawned them."""
    keys = Session.objects.filter(pk__in=pks).values_list("session_id", flat=True)
    subagents = (
        Session.objects.filter(is_subagent=True)
        .filter(Q(pk__in=pks) | Q(parent_key__in=list(keys), spawn_uuid=""))
        .exclude(parent_key="")
    )
    parents = dict(
        Session.objects.filter(
            session_id__in={s.parent_key for s in subagents}
        ).values_list("session_id", "pk")
    )
    for sub in subagents:
        parent_pk = parents.get(sub.parent_key)
        if parent_pk is None:
            continue
        spawn = _spawn_uuid(parent_pk, sub)
        Session.objects.filter(pk=sub.pk).update(parent_id=parent_pk, spawn_uuid=spawn)


def _spawn_uuid(parent_pk: int, sub: Session) -> str:
    """Return the uuid of the parent entry that started the subagent, or ''."""
    entries = Entry.objects.filter(session_id=parent_pk).exclude(uuid="")
    if sub.agent_id:
        reported = entries.filter(spawned_agent=sub.agent_id)
        uuid = reported.values_list("uuid", flat=True).first()
        if uuid:
            return uuid
    # Older releases do not report the agent id: take the last Task/Agent call
    # made before the subagent's first line.
    calls = entries.filter(type="assistant").filter(
        Q(tools__regex=r"(^| )(Task|Agent)( |$)")
    )
    if sub.first_at:
        calls = calls.filter(timestamp__lte=sub.first_at)
    return calls.order_by("-id").values_list("uuid", flat=True).first() or ""


def sessions_prune_empty() -> None:
    """Delete sessions left with no entries and no source, then empty projects."""
    empty = Session.objects.filter(entries__isnull=True, sources__isnull=True)
    calls = TranscriptCall.objects.filter(session__in=empty)
    keys = {
        _call_key(*row) for row in calls.values_list("request_id", "message_id", "uuid")
    }
    empty.delete()
    _ledger_forget(keys)
    Project.objects.filter(sessions__isnull=True).delete()
