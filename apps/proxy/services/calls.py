"""The usage ledger's writes: one ApiCall per billed API call, from either source.

Invariants (apps.proxy.models.ApiCall; tests/proxy/test_ledger.py):
- A call is one row: keyed by its request-id, else "msg:<message id>" (a
  transcript line without request-id joins the row already holding its message
  id), else "x:<exchange uid>" or "uuid:<line uuid>".
- The relay's figures win: a transcript merge sets figures only on rows that no
  exchange backs, and always refreshes `transcript`, the transcript's own
  figures, from which a row is re-based when its exchange is deleted.
- Context: the relay's session header wins; else the first transcript that
  records the call keeps it. A session's project follows its transcript.
- Every write marks the quarter hours and sessions it touched, before and
  after, in ApiCallDirty and ApiCallDirtySession, in the caller's transaction:
  the rollups can never miss a change. Writers run one at a time (_one_writer):
  a row's old quarter, read before the write, is still its quarter at the write.
- Whose: `credential` is the relay's (the exchange's credential fingerprint);
  a transcript never sets it, so a call only transcripts record is unclaimed,
  and a call whose exchange is deleted keeps the credential it was sent with.
- Only Messages calls (and count_tokens, a kind of its own) are calls; probes
  and telemetry (HEAD /, /api/event_logging/batch) stay exchanges only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from apps.proxy import sql
from apps.proxy.models import ApiCall, Exchange
from apps.proxy.pricing import Usage, cache_savings

QUARTER = 900  # seconds: the rollups' unit, and every zone offset's divisor
_MESSAGES = re.compile(r"(^|/)v1/messages$")
_COUNT_TOKENS = re.compile(r"(^|/)v1/messages/count_tokens$")
_CHUNK = 500  # parameters per IN list
_TOKENS = (
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens",
    "cache_write_1h_tokens",
)  # fmt: skip
_FIGURES = (
    "at", "quarter", "kind", "model", "speed", *_TOKENS, "cost_usd", "savings_usd",
    "error", "ttfb_ms", "duration_ms", "tools",
)  # fmt: skip
_COLUMNS = (
    "key", "request_id", "message_id", "exchange_id", "session_id", "agent_id",
    "project_id", *_FIGURES, "transcript", "credential",
)  # fmt: skip
_RELAY_SETS = sql.relay_sets(_FIGURES)
_TRANSCRIPT_SETS = sql.transcript_sets(_FIGURES)
_EXCHANGE_FIELDS = (
    "id", "uid", "method", "path", "started_at", "state", "status_code",
    "error_type", "request_id", "message_id", "session_id", "agent_id", "model",
    "speed", *_TOKENS, "cost_usd", "ttfb_ms", "duration_ms", "tools_called",
    "credential",
)  # fmt: skip


def call_kind(*, method: str, path: str) -> str:
    """Return the ledger kind of a relayed request, or "" when it is no API call."""
    if method != "POST":
        return ""
    if _MESSAGES.search(path):
        return ApiCall.Kind.MESSAGES
    if _COUNT_TOKENS.search(path):
        return ApiCall.Kind.COUNT_TOKENS
    return ""


def call_error(*, error_type: str, status_code: int | None, state: str) -> str:
    """Return a call's error label ("" for none): the API's error type, else
    http_<status>, else the relay's failed state. A client disconnect is the
    user's choice, not an error: the relay marks it with an error type of its own
    (client_disconnected), which is not the call's."""
    if error_type and state != Exchange.State.CLIENT_DISCONNECTED:
        return error_type
    if status_code is not None and status_code >= 400:
        return f"http_{status_code}"
    if state in (Exchange.State.UPSTREAM_ERROR, Exchange.State.PROXY_ERROR):
        return state
    return ""


def call_record_exchanges(*, uids: Iterable[Any]) -> None:
    """Enter the finished API calls among these exchanges in the ledger."""
    with _one_writer():
        _record_exchanges(list(uids))


@contextmanager
def _one_writer() -> Iterator[None]:
    """Run a ledger write in a transaction that no other ledger write overlaps
    (PostgreSQL: an advisory lock; SQLite's IMMEDIATE transactions already are)."""
    with transaction.atomic(savepoint=False):
        statement = sql.on(connection.vendor).LEDGER_LOCK
        if statement:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        yield


def _record_exchanges(uids: list[Any]) -> None:
    rows = []
    for chunk in _chunks(uids):
        finished = Exchange.objects.filter(uid__in=chunk).exclude(
            state=Exchange.State.IN_PROGRESS
        )
        rows += [_relayed_row(r) for r in finished.values(*_EXCHANGE_FIELDS)]
    calls = [row for row in rows if row is not None]
    if not calls:
        return
    _rekey_by_message(calls)
    _project_known(calls)
    _upsert(calls, sets=_RELAY_SETS)


def _relayed_row(exchange: dict) -> dict | None:
    kind = call_kind(method=exchange["method"], path=exchange["path"])
    if not kind:
        return None
    at: datetime = exchange["started_at"]
    usage = Usage(*(exchange[name] for name in _TOKENS))
    called = (
        exchange["tools_called"] if isinstance(exchange["tools_called"], dict) else {}
    )
    key = exchange["request_id"] or (
        f"msg:{exchange['message_id']}" if exchange["message_id"] else ""
    )
    return {
        "key": key or f"x:{exchange['uid']}",
        "request_id": exchange["request_id"],
        "message_id": exchange["message_id"],
        "exchange_id": exchange["id"],
        "session_id": exchange["session_id"],
        "agent_id": exchange["agent_id"],
        "project_id": None,
        **_figures(
            at=at, model=exchange["model"], speed=exchange["speed"], usage=usage
        ),
        "kind": kind,
        "cost_usd": exchange["cost_usd"],
        "error": call_error(
            error_type=exchange["error_type"],
            status_code=exchange["status_code"],
            state=exchange["state"],
        ),
        "ttfb_ms": exchange["ttfb_ms"],
        "duration_ms": exchange["duration_ms"],
        "tools": " ".join(
            name for name, n in called.items() for _ in range(int(n or 0))
        ),
        "transcript": None,
        "credential": exchange["credential"],
    }


def _figures(*, at: datetime, model: str, speed: str, usage: Usage) -> dict:
    """Return the figure columns every source shares (time, model, usage, savings)."""
    return {
        "at": at,
        "quarter": int(at.timestamp()) // QUARTER,
        "model": model,
        "speed": speed,
        **dict(zip(_TOKENS, _counts(usage), strict=True)),
        "savings_usd": cache_savings(model=model, usage=usage, at=at, speed=speed)
        or 0.0,
    }


def _counts(usage: Usage) -> tuple[int, int, int, int, int]:
    return (
        usage.input, usage.output, usage.cache_read, usage.cache_write_5m,
        usage.cache_write_1h,
    )  # fmt: skip


def _rekey_by_message(calls: list[dict]) -> None:
    """Give a transcript's "msg:" row the request-id the relay now knows for it."""
    pairs = [
        (c["key"], f"msg:{c['message_id']}", c["key"])
        for c in calls
        if c["request_id"] and c["message_id"]
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql.CALL_REKEY, pairs)


def _project_known(calls: list[dict]) -> None:
    """Give relayed calls the project a transcript already placed their session in."""
    sessions = sorted({c["session_id"] for c in calls if c["session_id"]})
    known: dict[str, int | None] = {}
    for chunk in _chunks(sessions):
        rows = (
            ApiCall.objects.filter(session_id__in=chunk, project_id__isnull=False)
            .values_list("session_id", "project_id")
            .distinct()
        )
        known.update(rows)
    for call in calls:
        call["project_id"] = known.get(call["session_id"])


def call_merge_transcripts(*, rows: list[dict]) -> None:
    """Enter calls that transcripts record; `rows` are dicts of request_id,
    message_id, uuid, at, model, speed, the five token counts (TOKENS order as
    `usage`), cost_usd, tools, session_id (the main session's), agent_id and
    project_id. Keeps the relay's figures where an exchange backs the call."""
    with _one_writer():
        _merge_transcripts(rows)


def _merge_transcripts(rows: list[dict]) -> None:
    calls = [_transcript_row(row) for row in rows]
    by_message = _keys_by_message(
        [c["message_id"] for c in calls if not c["request_id"] and c["message_id"]]
    )
    for call in calls:
        if not call["request_id"] and call["message_id"] in by_message:
            call["key"] = by_message[call["message_id"]]
    _upsert(_deduplicated(calls), sets=_TRANSCRIPT_SETS)
    _projects_follow(calls)


def _transcript_row(row: dict) -> dict:
    usage = Usage(*row["usage"])
    figures = _figures(
        at=row["at"], model=row["model"], speed=row["speed"], usage=usage
    )
    figures.update(
        kind=ApiCall.Kind.MESSAGES, cost_usd=row["cost_usd"], error="",
        ttfb_ms=None, duration_ms=None, tools=row["tools"],
    )  # fmt: skip
    stored = {
        "at": row["at"].isoformat(), "model": row["model"], "speed": row["speed"],
        "usage": list(_counts(usage)), "cost_usd": row["cost_usd"],
        "savings_usd": figures["savings_usd"], "tools": row["tools"],
    }  # fmt: skip
    key = row["request_id"] or (
        f"msg:{row['message_id']}" if row["message_id"] else f"uuid:{row['uuid']}"
    )
    return {
        "key": key, "request_id": row["request_id"], "message_id": row["message_id"],
        "exchange_id": None, "session_id": row["session_id"],
        "agent_id": row["agent_id"], "project_id": row["project_id"], **figures,
        "transcript": json.dumps(stored), "credential": "",
    }  # fmt: skip


def _keys_by_message(message_ids: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for chunk in _chunks(sorted(set(message_ids))):
        rows = ApiCall.objects.filter(message_id__in=chunk)
        found.update(rows.values_list("message_id", "key"))
    return found


def _deduplicated(calls: list[dict]) -> list[dict]:
    """Keep the first row of each key: one statement may not update a row twice."""
    first: dict[str, dict] = {}
    for call in calls:
        first.setdefault(call["key"], call)
    return list(first.values())


def _projects_follow(calls: list[dict]) -> None:
    """Place the sessions' relay-only calls in the project their transcript names."""
    pairs = {
        (c["session_id"], c["project_id"])
        for c in calls
        if c["session_id"] and c["project_id"] is not None
    }
    for session_id, project_id in sorted(pairs):
        moved = ApiCall.objects.filter(session_id=session_id).exclude(
            project_id=project_id
        )
        quarters = set(moved.values_list("quarter", flat=True))
        if quarters:
            moved.update(project_id=project_id)
            _dirty(quarters, {session_id})


def call_untranscribe(*, keys: Iterable[str]) -> None:
    """Forget the transcript side of these calls (their transcripts were dropped):
    rows no exchange backs go, the others keep the relay's figures."""
    with _one_writer():
        _untranscribe(sorted(set(keys)))


def _untranscribe(keys: list[str]) -> None:
    for chunk in _chunks(keys):
        rows = ApiCall.objects.filter(key__in=chunk)
        _dirty(*_places(rows.values_list("quarter", "session_id")))
        rows.filter(exchange_id__isnull=True).delete()
        rows.update(transcript=None)


def call_unrelay(*, exchange_ids: Iterable[int]) -> None:
    """Forget the relay side of these exchanges' calls (the exchanges are being
    deleted): a call a transcript records falls back to its figures, else goes."""
    with _one_writer():
        _unrelay(sorted(set(exchange_ids)))


def _unrelay(exchange_ids: list[int]) -> None:
    for chunk in _chunks(exchange_ids):
        rows = ApiCall.objects.filter(exchange_id__in=chunk)
        quarters, sessions = _places(rows.values_list("quarter", "session_id"))
        rows.filter(transcript__isnull=True).delete()
        for pk, stored in rows.values_list("pk", "transcript"):
            if stored is None:  # deleted just above
                continue
            fields = _from_transcript(json.loads(stored))
            quarters.add(fields["quarter"])
            ApiCall.objects.filter(pk=pk).update(exchange_id=None, **fields)
        _dirty(quarters, sessions)


def _from_transcript(stored: dict) -> dict:
    at = datetime.fromisoformat(stored["at"])
    return {
        "at": at, "quarter": int(at.timestamp()) // QUARTER, "model": stored["model"],
        "speed": stored["speed"], **dict(zip(_TOKENS, stored["usage"], strict=True)),
        "cost_usd": stored["cost_usd"], "savings_usd": stored["savings_usd"],
        "tools": stored["tools"], "kind": ApiCall.Kind.MESSAGES, "error": "",
        "ttfb_ms": None, "duration_ms": None,
    }  # fmt: skip


def _places(rows: Iterable[tuple[int, str]]) -> tuple[set[int], set[str]]:
    """Return the quarter hours and sessions of (quarter, session id) pairs."""
    pairs = list(rows)
    return {q for q, _ in pairs}, {s for _, s in pairs if s}


def call_dirty_take(*, limit: int) -> list[int]:
    """Take up to `limit` dirty quarter hours (oldest first) off the list.

    Call inside the transaction that rebuilds their rollups, after which it reads
    the ledger: a mark a writer holds is left for next time (PostgreSQL) or
    cannot be held (SQLite's one writer), and a writer that marks a taken quarter
    waits for the rebuild's commit, then marks it again. Two takers never take
    the same mark.
    """
    with connection.cursor() as cursor:
        cursor.execute(sql.on(connection.vendor).DIRTY_TAKE, [limit])
        return sorted(row[0] for row in cursor.fetchall())


def call_dirty_sessions_take(*, limit: int) -> list[str]:
    """Take up to `limit` dirty sessions off the list (as call_dirty_take)."""
    with connection.cursor() as cursor:
        cursor.execute(sql.on(connection.vendor).DIRTY_SESSIONS_TAKE, [limit])
        return sorted(row[0] for row in cursor.fetchall())


def _upsert(calls: list[dict], *, sets: dict[str, str]) -> None:
    """Insert or merge rows, marking their old and new quarter hours dirty."""
    quarters: set[int] = {c["quarter"] for c in calls}
    sessions: set[str] = {c["session_id"] for c in calls if c["session_id"]}
    for chunk in _chunks([c["key"] for c in calls]):
        rows = ApiCall.objects.filter(key__in=chunk)
        old_quarters, old_sessions = _places(rows.values_list("quarter", "session_id"))
        quarters |= old_quarters
        sessions |= old_sessions
    assignments = ", ".join(f"{name} = {expr}" for name, expr in sets.items())
    statement = sql.CALL_UPSERT.format(
        columns=", ".join(_COLUMNS),
        marks=", ".join(["%s"] * len(_COLUMNS)),
        assignments=assignments,
    )
    adapt = connection.ops.adapt_datetimefield_value
    params = [[adapt(c[n]) if n == "at" else c[n] for n in _COLUMNS] for c in calls]
    with connection.cursor() as cursor:
        cursor.executemany(statement, params)
    _dirty(quarters, sessions)


def _dirty(quarters: Iterable[int], sessions: Iterable[str] = ()) -> None:
    with connection.cursor() as cursor:
        cursor.executemany(sql.DIRTY_MARK, [(q,) for q in sorted(quarters)])
        cursor.executemany(sql.DIRTY_SESSION_MARK, [(s,) for s in sorted(sessions)])


def _chunks(items: list) -> Iterable[list]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
