"""The ledger's rollups: rebuilt per dirty quarter hour, never by a read.

Why they exist: at 200,000 calls over 30 days, summing the ledger itself took
50-250 ms per read (bench/usage.py), against a budget of 150 ms at p95 for a
whole page. A quarter hour's calls fold into a row per kind, model, project
and error; a session's into one row of whole figures. (A first version kept
sessions in the quarter rows too: at 20,000 calls a 30-day daily report took
42 ms, the overview 143 ms; without them, see bench/usage.py's figures.)

Every ledger write marks its quarters and sessions dirty
(apps.proxy.services.calls); this module takes the marks and rebuilds those
quarters and sessions from the ledger, in the same transaction, so reads
(apps.dashboard.sql) never see one half-built and never trust one that changed.
`manage.py rollup --watch` runs it every few seconds; writers of history
(prune, delete, a ledger rebuild) call it at once.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable
from typing import TypeVar

from django.db import connection, transaction

from apps.dashboard import sql
from apps.dashboard.models import (
    LatencyRollup,
    ProjectRollup,
    SessionTotal,
    ToolRollup,
    UsageRollup,
)
from apps.dashboard.selectors.ledger import moment_utc, tools_count
from apps.proxy import services as ledger

_BATCH = 200  # quarters per transaction: short write locks beside the relay
_Rollup = TypeVar("_Rollup", UsageRollup, ProjectRollup)
_TOKENS = (
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens",
    "cache_write_1h_tokens",
)  # fmt: skip


def rollup_refresh(*, limit: int | None = None) -> int:
    """Rebuild the rollups of dirty quarter hours and sessions (all, or up to
    `limit` of each); return how many quarters were rebuilt."""
    done = sessions = 0
    while limit is None or done < limit:
        with transaction.atomic():
            quarters = ledger.call_dirty_take(limit=_BATCH)
            if quarters:
                _rebuild(quarters)
        if not quarters:
            break
        done += len(quarters)
    while limit is None or sessions < limit:
        with transaction.atomic():
            keys = ledger.call_dirty_sessions_take(limit=_BATCH)
            if keys:
                _sessions_rebuild(keys)
        if not keys:
            break
        sessions += len(keys)
    return done


def _sessions_rebuild(keys: list[str]) -> None:
    SessionTotal.objects.filter(session_id__in=keys).delete()
    marks = ", ".join(["%s"] * len(keys))
    with connection.cursor() as cursor:
        cursor.execute(
            sql.on(connection.vendor).SESSION_REBUILD.format(marks=marks), keys
        )
        rows = cursor.fetchall()
    SessionTotal.objects.bulk_create(
        [
            SessionTotal(
                **{
                    **dict(zip(sql.SESSION_COLUMNS, row, strict=True)),
                    "first_at": moment_utc(row[2]),
                    "last_at": moment_utc(row[3]),
                }
            )  # fmt: skip
            for row in rows
        ],
        batch_size=500,
    )


def _rebuild(quarters: list[int]) -> None:
    for model in (UsageRollup, ProjectRollup, ToolRollup, LatencyRollup):
        model.objects.filter(quarter__in=quarters).delete()
    marks = ", ".join(["%s"] * len(quarters))
    with connection.cursor() as cursor:
        cursor.execute(
            sql.on(connection.vendor).QUARTER_CALLS.format(marks=marks), quarters
        )
        names = [column[0] for column in cursor.description]
        calls = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    usage = _sum_rows(UsageRollup, sql.TABLES["usage"][1], calls)
    UsageRollup.objects.bulk_create(usage, batch_size=500)
    project = _sum_rows(ProjectRollup, sql.TABLES["project"][1], calls)
    ProjectRollup.objects.bulk_create(project, batch_size=500)
    LatencyRollup.objects.bulk_create(_latency_rows(calls), batch_size=500)
    ToolRollup.objects.bulk_create(_tool_rows(calls), batch_size=500)


def _sum_rows(
    model: type[_Rollup], keys: tuple[str, ...], calls: list
) -> list[_Rollup]:
    return [
        model(**dict(zip(keys, key, strict=True)), **_sums(members))
        for key, members in _grouped(calls, keys).items()
    ]


def _tool_rows(calls: list[dict]) -> list[ToolRollup]:
    rows = []
    for (quarter, kind), members in _grouped(calls, ("quarter", "kind")).items():
        counted = tools_count([c["tools"] for c in members if c["tools"]])
        rows += [
            ToolRollup(quarter=quarter, kind=kind, tool=tool, uses=uses, calls=n)
            for tool, (uses, n) in counted.items()
        ]
    return rows


def _grouped(calls: Iterable[dict], keys: tuple[str, ...]) -> dict[tuple, list]:
    groups: dict[tuple, list[dict]] = {}
    for call in calls:
        groups.setdefault(tuple(call[name] for name in keys), []).append(call)
    return groups


def _sums(calls: list[dict]) -> dict:
    """Return the sum columns of a group of ledger rows (a rollup row's)."""

    def count(test: Callable[[dict], object]) -> int:
        return sum(1 for call in calls if test(call))

    times = [t for call in calls if (t := moment_utc(call["at"])) is not None]
    ttfbs = [c["ttfb_ms"] for c in calls if c["ttfb_ms"] is not None]
    durations = [c["duration_ms"] for c in calls if c["duration_ms"] is not None]
    sums = dict(
        calls=len(calls),
        errors=count(lambda c: c["error"]),
        subagent_calls=count(lambda c: c["agent_id"]),
        fast_calls=count(lambda c: c["speed"] == "fast"),
        relayed_calls=count(lambda c: c["exchange_id"] is not None),
        unpriced_calls=count(
            lambda c: c["cost_usd"] is None and any(c[t] for t in _TOKENS)
        ),
        **{name: sum(c[name] for c in calls) for name in _TOKENS},
        cost_usd=sum(c["cost_usd"] or 0.0 for c in calls),
        savings_usd=sum(c["savings_usd"] for c in calls),
        ttfb_sum=sum(ttfbs),
        ttfb_n=len(ttfbs),
        duration_sum=sum(durations),
        duration_n=len(durations),
        first_at=min(times),
        last_at=max(times),
    )
    return sums


def _latency_rows(calls: Iterable[dict]) -> list[LatencyRollup]:
    groups: dict[tuple, tuple[list[float], list[float]]] = {}
    for call in calls:
        if call["ttfb_ms"] is None and call["duration_ms"] is None:
            continue
        key = (call["quarter"], call["kind"], call["model"])
        ttfb, duration = groups.setdefault(key, ([], []))
        if call["ttfb_ms"] is not None:
            ttfb.append(call["ttfb_ms"])
        if call["duration_ms"] is not None:
            duration.append(call["duration_ms"])
    return [
        LatencyRollup(
            quarter=quarter,
            kind=kind,
            model=model,
            ttfb=array("d", sorted(ttfb)).tobytes(),
            duration=array("d", sorted(duration)).tobytes(),
        )
        for (quarter, kind, model), (ttfb, duration) in groups.items()
    ]
