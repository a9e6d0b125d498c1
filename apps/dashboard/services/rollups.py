"""The ledger's rollups: rebuilt per dirty quarter hour, never by a read.

Why they exist: at 200,000 calls over 30 days, summing the ledger itself took
50-250 ms per read (bench/usage.py), against a budget of 150 ms at p95 for a
whole page. A quarter hour's calls fold into a few rows per session and model.

Every ledger write marks its quarters dirty (apps.proxy.services.calls); this
module takes the marks and rebuilds those quarters from the ledger, in the
same transaction, so reads (apps.dashboard.sql) never see a quarter half-built
and never trust one that changed. `manage.py rollup --watch` runs it every few
seconds; writers of history (prune, delete, a ledger rebuild) call it at once.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from django.db import connection, transaction

from apps.dashboard import sql
from apps.dashboard.models import LatencyRollup, UsageRollup
from apps.dashboard.selectors.ledger import moment_utc, tools_pack
from apps.proxy import services as ledger

_BATCH = 200  # quarters per transaction: short write locks beside the relay
_TOKENS = (
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens",
    "cache_write_1h_tokens",
)  # fmt: skip


def rollup_refresh(*, limit: int | None = None) -> int:
    """Rebuild the rollups of dirty quarter hours (all, or up to `limit`);
    return how many were rebuilt."""
    done = 0
    while limit is None or done < limit:
        with transaction.atomic():
            quarters = ledger.call_dirty_take(limit=_BATCH)
            if quarters:
                _rebuild(quarters)
        if not quarters:
            break
        done += len(quarters)
    return done


def _rebuild(quarters: list[int]) -> None:
    UsageRollup.objects.filter(quarter__in=quarters).delete()
    LatencyRollup.objects.filter(quarter__in=quarters).delete()
    marks = ", ".join(["%s"] * len(quarters))
    with connection.cursor() as cursor:
        cursor.execute(sql.QUARTER_CALLS.format(marks=marks), quarters)
        names = [column[0] for column in cursor.description]
        calls = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    UsageRollup.objects.bulk_create(_usage_rows(calls), batch_size=500)
    LatencyRollup.objects.bulk_create(_latency_rows(calls), batch_size=500)


def _usage_rows(calls: Iterable[dict]) -> list[UsageRollup]:
    groups: dict[tuple, list[dict]] = {}
    for call in calls:
        key = tuple(call[name] for name in sql.GROUP_COLUMNS)
        groups.setdefault(key, []).append(call)
    return [_usage_row(key, members) for key, members in groups.items()]


def _usage_row(key: tuple, calls: list[dict]) -> UsageRollup:
    def count(test: object) -> int:
        return sum(1 for call in calls if test(call))  # type: ignore[operator]

    times = [moment_utc(call["at"]) for call in calls]
    ttfbs = [c["ttfb_ms"] for c in calls if c["ttfb_ms"] is not None]
    durations = [c["duration_ms"] for c in calls if c["duration_ms"] is not None]
    return UsageRollup(
        **dict(zip(sql.GROUP_COLUMNS, key, strict=True)),
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
        tools=tools_pack([c["tools"] for c in calls if c["tools"]]),
    )


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
