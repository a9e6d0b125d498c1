"""Stats rollups: a read-through cache of aggregates per closed UTC hour.

Why: over 30 days at 200,000 exchanges every stats operation scanned the whole
covering index (0.4-3 s). An hour whose exchanges have all finished no longer
changes, so its sums, tool counts, sorted latencies and (per UTC day) session
figures are kept in apps.dashboard.models and only the open edges of a range
are read live (selectors.rolled combines both).

Invariants:
- The relay never touches these tables (no work on the recording path): a
  stats read fills them, services.exchange_delete invalidates them.
- An hour's rows exist only together with its RollupHour marker (written and
  removed in one transaction). An hour ending less than SETTLE ago, or with an
  exchange still in progress, is never marked: it is read live.
- Every read compares each run of marked hours with the live table (row count
  and largest id, through the started_at index). Ids only grow, so a late
  insert (a recording replayed from the spill file) or a delete by any path
  makes the hour rebuilt before it is used.
- A RollupDay (sessions) exists only while its 24 hours are marked: building
  or invalidating an hour removes its day.

These writes are cache fills, not domain writes; they live beside the
selectors that read them so that nothing else depends on their layout.
"""

from __future__ import annotations

import re
import string
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any, TypeVar

from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from apps.dashboard.models import (
    LatencyDayRollup,
    LatencyRollup,
    ModelHourRollup,
    RollupDay,
    RollupHour,
    RollupWatermark,
    SessionRollup,
    ToolRollup,
    UsageRollup,
)
from apps.dashboard.schemas import ExchangeFilter, RangeFilter
from apps.dashboard.selectors.base import (
    _ERROR_SQL,
    _TOKEN_FIELDS,
    _TOKEN_SUMS,
    COVER_INDEX,
    MESSAGES_PATH,
)

T = TypeVar("T")
# Recordings can land late (the relay's writer backlog); an hour is trusted
# only once it ended this long ago, and the fingerprint check covers the rest.
SETTLE = timedelta(minutes=10)
# Below two days a live scan (~7,000 rows a day) is cheaper than the bookkeeping.
MIN_HOURS = 48
# Filters the rollups cannot apply (model and family they can, per model).
_ROW_FILTERS = ("state", "status", "session", "tool", "streaming")


@dataclass(frozen=True)
class Span:
    """A UTC interval [start, end) read live (duck-types RangeFilter's range).

    model and family carry a range's model filter to its live reads
    (base.exchange_filter applies them).
    """

    start: datetime
    end: datetime
    model: str | None = None
    family: str | None = None


@dataclass(frozen=True)
class RollupPlan:
    """Which hours come from rollups, and which intervals are read live."""

    lo: int  # hours [lo, hi) in epoch hours; unmarked ones have no rollup rows
    hi: int
    hours: frozenset[int]  # the marked ones
    live: list[Span]
    days: list[int]  # marked days (sessions), each inside the range
    session_live: list[Span]
    model: str | None = None  # the range's model filter, if any
    family: str | None = None

    def model_sql(self) -> tuple[str, list]:
        """Return the model filter as a condition on a rollup table, and params."""
        if self.model is not None:
            return " AND model = %s", [self.model]
        if self.family is not None:
            # The same LIKE as Django's startswith on SQLite: ASCII case folded.
            escaped = re.sub(r"([\\%_])", r"\\\1", self.family)
            return " AND model LIKE %s ESCAPE '\\'", [escaped + "%"]
        return "", []

    def model_matches(self, model: str) -> bool:
        """Tell whether a model passes the filter (as model_sql's SQL would)."""
        if self.model is not None:
            return model == self.model
        if self.family is not None:
            return model.translate(_ASCII_LOWER).startswith(
                self.family.translate(_ASCII_LOWER)
            )
        return True


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def rollup_plan(*, filters: RangeFilter, by_model: bool = False) -> RollupPlan | None:
    """Return how to answer a range from rollups, or None to scan it live.

    by_model: the caller's rollups are kept per model, so a model or family
    filter can be applied to them (tools and sessions are not).
    """
    model = family = None
    if isinstance(filters, ExchangeFilter):
        model, family = filters.model, filters.family
        if (
            filters.kind is not None
            or any(getattr(filters, name) is not None for name in _ROW_FILTERS)
            or (not by_model and (model is not None or family is not None))
            or (model is not None and family is not None)
        ):
            return None
    lo = _hour_ceil(filters.start)
    hi = min(_hour_floor(filters.end), _hour_floor(timezone.now() - SETTLE))
    if hi - lo < MIN_HOURS:
        return None
    # Only hours between the oldest and newest exchange get markers, so a
    # range of centuries costs no more than the data it holds.
    oldest, newest = _data_hours()
    lo, hi = max(lo, oldest), min(hi, newest + 1)
    marked = _hours_refresh(lo=lo, hi=hi)
    days = _days_refresh(marked=marked, lo=lo, hi=hi)
    hour_edges = [(a * 3600, b * 3600) for a, b in _runs(list(marked))]
    day_edges = [(d * 86400, (d + 1) * 86400) for d in days]

    def live(covered: list[tuple[int, int]]) -> list[Span]:
        spans = _complement(filters.start, filters.end, covered)
        return [replace(span, model=model, family=family) for span in spans]

    return RollupPlan(
        lo=lo,
        hi=hi,
        hours=frozenset(marked),
        live=live(hour_edges),
        days=days,
        session_live=live(day_edges),
        model=model,
        family=family,
    )


def rollup_fill(*, chunk_hours: int = 24 * 7) -> int:
    """Build every settled hour's and whole day's rollups now; return marked hours.

    Run by `manage.py rollup --watch` beside the data deployment so that no
    page or API read pays for a first fill; reads still fill what is missing.
    Works in week-long runs so that each write transaction stays short.
    """
    oldest, newest = _data_hours()
    hi = min(newest + 1, _hour_floor(timezone.now() - SETTLE))
    marked: set[int] = set()
    for lo in range(oldest, hi, chunk_hours):
        top = min(lo + chunk_hours, hi)
        marked |= _hours_refresh(lo=lo, hi=top)
    _days_refresh(marked=marked, lo=oldest, hi=hi)
    return len(marked)


@contextmanager
def rollup_read(*, plan: RollupPlan) -> Iterator[bool]:
    """Hold one read snapshot over a plan's reads; yield whether the plan holds.

    Another request may clear or mark hours between planning and reading (a
    late recording, a delete, an exchange finishing); reading in one snapshot
    where the marked hours and days are still the planned ones means no hour
    is counted twice or missed. A deferred transaction never blocks the relay.
    """
    own = not connection.in_atomic_block  # tests already hold a transaction
    if own:
        _execute("BEGIN DEFERRED", [])
    try:
        yield _plan_holds(plan=plan)
    finally:
        if own:
            _execute("COMMIT", [])


def _plan_holds(*, plan: RollupPlan) -> bool:
    days = RollupDay.objects.filter(day__in=plan.days)
    return _marked_hours(lo=plan.lo, hi=plan.hi) == plan.hours and set(
        days.values_list("day", flat=True)
    ) == set(plan.days)


def _marked_hours(*, lo: int, hi: int) -> set[int]:
    # Raw SQL: a month is 720 markers, read on every plan and check.
    found = _execute(
        "SELECT hour FROM dashboard_rolluphour WHERE hour >= %s AND hour < %s",
        [lo, hi],
    )
    return {hour for (hour,) in found}


def _data_hours() -> tuple[int, int]:
    # Two subqueries: SQLite answers a lone MIN or MAX from the index's ends.
    ((oldest, newest),) = _execute(
        "SELECT (SELECT MIN(started_at) FROM proxy_exchange),"
        " (SELECT MAX(started_at) FROM proxy_exchange)",
        [],
    )
    if oldest is None:
        return 0, -1
    return _hour_of(oldest[:13]), _hour_of(newest[:13])


def _hour_ceil(moment: datetime) -> int:
    return -(-int(moment.timestamp()) // 3600)


def _hour_floor(moment: datetime) -> int:
    return int(moment.timestamp()) // 3600


def _instant(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _complement(
    start: datetime, end: datetime, covered: list[tuple[int, int]]
) -> list[Span]:
    """Return the parts of [start, end) outside sorted covered (lo, hi) seconds."""
    spans, cursor = [], start
    for lo, hi in covered:
        if _instant(lo) > cursor:
            spans.append(Span(cursor, _instant(lo)))
        cursor = max(cursor, _instant(hi))
    if cursor < end:
        spans.append(Span(cursor, end))
    return spans


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Return sorted ints as contiguous [lo, hi) runs."""
    runs = []
    for _, group in groupby(enumerate(sorted(values)), lambda pair: pair[1] - pair[0]):
        members = [value for _, value in group]
        runs.append((members[0], members[-1] + 1))
    return runs


def _text(seconds: int) -> str:
    """Return the stored text form of an instant (naive UTC, as Django writes it)."""
    return connection.ops.adapt_datetimefield_value(_instant(seconds))


def _execute(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- merged closed days, kept in memory -------------------------------------------
# Merging a month's sorted latencies costs ~25 ms of Python per read, and the
# closed hours of a range are the same from one read to the next. Such merges
# are kept per process, keyed by their hours' markers (row count and largest
# id: recorded rows never change once finished, and ids only grow, so equal
# markers mean equal rows); any rollup write in this process clears them.


class _Memo:
    """A small thread-safe LRU of values derived from marked hours."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self.values: OrderedDict[tuple, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple, build: Callable[[], T]) -> T:
        with self.lock:
            if key in self.values:
                self.values.move_to_end(key)
                return self.values[key]
        value = build()
        self.put(key, value)
        return value

    def peek(self, key: tuple) -> Any | None:
        with self.lock:
            if key in self.values:
                self.values.move_to_end(key)
                return self.values[key]
        return None

    def put(self, key: tuple, value: Any) -> None:
        with self.lock:
            self.values[key] = value
            while len(self.values) > self.kept:
                self.values.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.values.clear()


_MERGED = _Memo(kept=4)  # a month of latencies per model: ~3 MB each
_BUCKETS = _Memo(kept=1000)  # one bucket's percentiles: a few hundred bytes
# One time series bucket's output, total and per model: ~4 KB with four models.
# A month of hours is 720 of them: two such series fit in ~6 MB.
_SERIES = _Memo(kept=1500)


def merged_get(*, days: list[int], build: Callable[[], T]) -> T:
    """Return build() for these marked days, from memory when their rows are known."""
    markers = hour_markers(lo=days[0] * 24, hi=(days[-1] + 1) * 24)
    return _MERGED.get((tuple(days), tuple(markers.items())), build)


def bucket_get(*, lo: int, hi: int, markers: dict, build: Callable[[], T]) -> T:
    """Return build() for the marked hours [lo, hi), from memory when known."""
    key = (lo, hi, tuple(markers[hour] for hour in range(lo, hi)))
    return _BUCKETS.get(key, build)


def series_key(*, lo: int, hi: int, markers: dict, plan: RollupPlan) -> tuple:
    """Return the memory key of a time series bucket of the marked hours [lo, hi)."""
    marks = tuple(markers[hour] for hour in range(lo, hi))
    return (lo, hi, plan.model, plan.family, marks)


def series_peek(*, key: tuple) -> Any | None:
    """Return a time series bucket's output kept under key (series_key), or None."""
    return _SERIES.peek(key)


def series_put(*, key: tuple, value: Any) -> None:
    """Keep a time series bucket's output (never changed afterwards) under key."""
    _SERIES.put(key, value)


def hour_markers(*, lo: int, hi: int) -> dict[int, tuple[int, int]]:
    """Return {hour: (rows, largest id)} of the marked hours in [lo, hi)."""
    found = _execute(
        "SELECT hour, rows, max_id FROM dashboard_rolluphour"
        " WHERE hour >= %s AND hour < %s ORDER BY hour",
        [lo, hi],
    )
    return {hour: (rows, top) for hour, rows, top in found}


def _merged_clear() -> None:
    _MERGED.clear()
    _BUCKETS.clear()
    _SERIES.clear()


# --- hours: check, build, invalidate ------------------------------------------


def _hours_refresh(*, lo: int, hi: int) -> set[int]:
    """Make sure every settled hour in [lo, hi) is marked if it can be; return them."""
    _watermark_check()
    marked = _marked_hours(lo=lo, hi=hi)
    todo = [h for h in range(lo, hi) if h not in marked]
    return marked | (_hours_build(hours=todo) if todo else set())


def _watermark_check() -> None:
    # Ids only grow (AUTOINCREMENT) and commit in order (one writer), so every
    # row recorded since the last check has an id above the watermark: clear
    # the hours such late rows fall in. The rowid range read costs only the
    # new rows. Deletes clear their hours in services.exchange_delete.
    ((top,),) = _execute("SELECT COALESCE(MAX(id), 0) FROM proxy_exchange", [])
    mark = RollupWatermark.objects.filter(pk=1).values_list("checked_id", flat=True)
    checked = mark.first()
    if checked is not None and top <= checked:
        return
    with transaction.atomic():
        _merged_clear()
        if checked is None:  # no history to trust: start afresh
            for model in _HOUR_MODELS:
                model.objects.all().delete()
            for model in (SessionRollup, LatencyDayRollup, RollupDay):
                model.objects.all().delete()
        elif RollupHour.objects.exists():
            _hours_clear(hours=_hours_of_ids(after=checked, upto=top))
        if not RollupWatermark.objects.filter(pk=1).update(
            checked_id=Greatest(F("checked_id"), top)
        ):
            RollupWatermark.objects.create(pk=1, checked_id=top)


def _hours_of_ids(*, after: int, upto: int | None = None) -> list[int]:
    """Return the hours holding exchanges with after < id (<= upto)."""
    found = _execute(
        "SELECT DISTINCT substr(started_at, 1, 13) FROM proxy_exchange"
        " WHERE id > %s AND id <= %s",
        [after, upto if upto is not None else 2**63 - 1],
    )
    return sorted({_hour_of(text) for (text,) in found})


def _hour_of(text: str) -> int:
    """Return the epoch hour of a stored 'YYYY-MM-DD HH' prefix."""
    moment = datetime.strptime(text, "%Y-%m-%d %H").replace(tzinfo=UTC)
    return int(moment.timestamp()) // 3600


_LABEL_SQL = (
    f"CASE WHEN {_ERROR_SQL} THEN CASE WHEN error_type <> '' THEN error_type"
    " WHEN status_code >= 400 THEN 'http_' || status_code ELSE state END"
    " ELSE '' END"
)
_COVER = f"proxy_exchange INDEXED BY {COVER_INDEX}"


def _hours_build(*, hours: list[int]) -> set[int]:
    """Recompute the rollups of some hours; return those that could be marked."""
    marked: set[int] = set()
    for run_lo, run_hi in _runs(hours):
        marked |= _run_build(lo=run_lo, hi=run_hi)
    return marked


def _run_build(*, lo: int, hi: int) -> set[int]:
    # Three scans of the run (sums, tools, latencies), all bounded by the
    # largest id before they began, so they agree even if rows land meanwhile.
    ((top,),) = _execute("SELECT COALESCE(MAX(id), 0) FROM proxy_exchange", [])
    bounds = [_text(lo * 3600), _text(hi * 3600)]
    usage = _execute(
        "SELECT substr(started_at, 1, 13) AS h,"
        " CAST(substr(started_at, 15, 2) AS INTEGER) / 15 AS q, model,"
        f" {_LABEL_SQL} AS label, COUNT(*), {_TOKEN_SUMS},"
        " COALESCE(SUM(cost_usd), 0.0), SUM(CASE WHEN cost_usd IS NULL"
        " AND (input_tokens > 0 OR output_tokens > 0) THEN 1 ELSE 0 END),"
        " COALESCE(SUM(ttfb_ms), 0.0), COUNT(ttfb_ms),"
        " COALESCE(SUM(duration_ms), 0.0), COUNT(duration_ms), MAX(id),"
        " SUM(CASE WHEN state = 'in_progress' THEN 1 ELSE 0 END)"
        f" FROM {_COVER} WHERE started_at >= %s AND started_at < %s"
        " AND proxy_exchange.id <= %s GROUP BY h, q, model, label",
        [*bounds, top],
    )
    fingerprint: dict[int, list[int]] = {h: [0, 0, 0] for h in range(lo, hi)}
    usage_rows = []
    for text, quarter, model, label, requests, *rest in usage:
        hour = _hour_of(text)
        fingerprint[hour][0] += requests
        fingerprint[hour][1] = max(fingerprint[hour][1], rest[-2])
        fingerprint[hour][2] += rest[-1]
        usage_rows.append((hour, quarter, model, label, requests, *rest[:-2]))
    closed = {hour for hour, (_, _, busy) in fingerprint.items() if not busy}
    tools = _execute(
        "SELECT substr(started_at, 1, 13) AS h, t.key AS tool,"
        " SUM(CAST(t.value AS INTEGER)), COUNT(*)"
        f" FROM {_COVER}, json_each(proxy_exchange.tools_called) AS t"
        " WHERE started_at >= %s AND started_at < %s AND proxy_exchange.id <= %s"
        " AND tools_called <> '{}' AND json_type(tools_called) = 'object'"
        " GROUP BY h, tool",
        [*bounds, top],
    )
    latencies = _latency_arrays(bounds=bounds, top=top)
    with transaction.atomic():
        # Inside the write lock nothing can land any more: an hour that got a
        # row after the scans began stays unmarked (read live this time).
        closed -= set(_hours_of_ids(after=top))
        _hours_clear(hours=list(range(lo, hi)))
        kept = [_usage_object(row) for row in usage_rows if row[0] in closed]
        UsageRollup.objects.bulk_create(kept, batch_size=2000)
        ModelHourRollup.objects.bulk_create(_per_model_hour(kept), batch_size=2000)
        ToolRollup.objects.bulk_create(
            [
                ToolRollup(hour=h, tool=tool, calls=calls, exchanges=n)
                for text, tool, calls, n in tools
                if (h := _hour_of(text)) in closed
            ],
            batch_size=2000,
        )
        LatencyRollup.objects.bulk_create(
            [
                LatencyRollup(hour=h, model=model, ttfb=values[0], duration=values[1])
                for (h, model), values in latencies.items()
                if h in closed
            ],
            batch_size=500,
        )
        RollupHour.objects.bulk_create(
            [
                RollupHour(hour=h, rows=fingerprint[h][0], max_id=fingerprint[h][1])
                for h in sorted(closed)
            ],
            batch_size=2000,
        )
    return closed


_MODEL_HOUR_SUMS = (
    "requests", *_TOKEN_FIELDS.values(), "cost_usd", "unpriced", "ttfb_sum",
    "ttfb_count", "duration_sum", "duration_count",
)  # fmt: skip


def _per_model_hour(rows: list[UsageRollup]) -> list[ModelHourRollup]:
    """Sum usage rows over quarters and error labels."""
    merged: dict[tuple[int, str], ModelHourRollup] = {}
    for row in rows:
        key = (row.hour, row.model)
        target = merged.get(key)
        if target is None:
            target = merged[key] = ModelHourRollup(
                hour=row.hour, model=row.model, errors=0,
                **dict.fromkeys(_MODEL_HOUR_SUMS, 0),
            )  # fmt: skip
        for name in _MODEL_HOUR_SUMS:
            setattr(target, name, getattr(target, name) + getattr(row, name))
        if row.label:
            target.errors += row.requests
    return list(merged.values())


def _usage_object(row: tuple) -> UsageRollup:
    hour, quarter, model, label, requests, *sums = row
    tokens = dict(zip(_TOKEN_FIELDS.values(), sums[:5], strict=True))
    cost, unpriced, ttfb_sum, ttfb_n, duration_sum, duration_n = sums[5:]
    return UsageRollup(
        hour=hour, quarter=quarter, model=model, label=label, requests=requests,
        **tokens, cost_usd=cost, unpriced=unpriced, ttfb_sum=ttfb_sum,
        ttfb_count=ttfb_n, duration_sum=duration_sum, duration_count=duration_n,
    )  # fmt: skip


def _latency_arrays(*, bounds: list, top: int) -> dict[tuple[int, str], tuple]:
    values: dict[tuple[str, str], tuple[list, list]] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT substr(started_at, 1, 13), model, ttfb_ms, duration_ms"
            f" FROM {_COVER} WHERE started_at >= %s AND started_at < %s"
            " AND proxy_exchange.id <= %s",
            [*bounds, top],
        )
        for text, model, ttfb, duration in cursor.fetchall():
            pair = values.setdefault((text, model), ([], []))
            if ttfb is not None:
                pair[0].append(ttfb)
            if duration is not None:
                pair[1].append(duration)
    return {
        (_hour_of(text), model): tuple(
            array("d", sorted(column)).tobytes() for column in pair
        )
        for (text, model), pair in values.items()
    }


_HOUR_MODELS = (UsageRollup, ModelHourRollup, ToolRollup, LatencyRollup, RollupHour)


def _hours_clear(*, hours: list[int]) -> None:
    """Drop the rollups of some hours and of the days holding them."""
    _merged_clear()
    for lo, hi in _runs(hours):
        for model in _HOUR_MODELS:
            model.objects.filter(hour__gte=lo, hour__lt=hi).delete()
        day_lo, day_hi = lo // 24, (hi - 1) // 24 + 1
        for model in (SessionRollup, LatencyDayRollup, RollupDay):
            model.objects.filter(day__gte=day_lo, day__lt=day_hi).delete()


def rollup_invalidate(*, exchange_ids: list[int]) -> None:
    """Forget the rollups of the hours holding some exchanges (before a delete)."""
    if not exchange_ids:
        return
    marks = ", ".join(["%s"] * len(exchange_ids))
    found = _execute(
        "SELECT DISTINCT substr(started_at, 1, 13) FROM proxy_exchange"
        f" WHERE id IN ({marks})",
        list(exchange_ids),
    )
    hours = sorted({_hour_of(text) for (text,) in found})
    if hours:
        with transaction.atomic():
            _hours_clear(hours=hours)


# --- days: per-session rollups --------------------------------------------------


def _days_refresh(*, marked: set[int], lo: int, hi: int) -> list[int]:
    """Return the days in [lo, hi) hours whose 24 hours are marked, built if needed."""
    full = [
        day
        for day in range(-(-lo // 24), hi // 24)
        if all(h in marked for h in range(day * 24, day * 24 + 24))
    ]
    if not full:
        return []
    have = set(
        RollupDay.objects.filter(day__gte=full[0], day__lte=full[-1]).values_list(
            "day", flat=True
        )
    )
    todo = [day for day in full if day not in have]
    if todo:
        have |= _days_build(days=todo)
    return [day for day in full if day in have]


_SESSION_SUMS = (
    "MIN(started_at) AS first_at, MAX(started_at) AS last_at, COUNT(*) AS requests,"
    " SUM(CASE WHEN agent_id = '' AND path LIKE '%%" + MESSAGES_PATH + "'"
    " THEN 1 ELSE 0 END) AS turns,"
    " SUM(CASE WHEN agent_id <> '' THEN 1 ELSE 0 END) AS subagent_calls,"
    f" SUM(CASE WHEN {_ERROR_SQL} THEN 1 ELSE 0 END) AS errors, {_TOKEN_SUMS},"
    " COALESCE(SUM(cost_usd), 0.0) AS cost, GROUP_CONCAT(DISTINCT model) AS models"
)


def _days_build(*, days: list[int]) -> set[int]:
    # A day's scan must count exactly the rows its hour markers count (bounded
    # by their largest id); otherwise something changed meanwhile: stay live.
    markers = {
        hour: (rows, top)
        for hour, rows, top in RollupHour.objects.filter(
            hour__gte=days[0] * 24, hour__lt=(days[-1] + 1) * 24
        ).values_list("hour", "rows", "max_id")
    }
    built: set[int] = set()
    for day in days:
        hours = [markers.get(h, (0, 0)) for h in range(day * 24, day * 24 + 24)]
        expected = sum(rows for rows, _ in hours)
        grouped = _execute(
            f"SELECT session_id, {_SESSION_SUMS} FROM {_COVER}"
            " WHERE started_at >= %s AND started_at < %s AND proxy_exchange.id <= %s"
            " GROUP BY session_id",
            [_text(day * 86400), _text((day + 1) * 86400), max(t for _, t in hours)],
        )
        if sum(row[3] for row in grouped) != expected:
            continue
        _merged_clear()
        with transaction.atomic():
            SessionRollup.objects.filter(day=day).delete()
            SessionRollup.objects.bulk_create(
                [_session_object(day, row) for row in grouped if row[0]],
                batch_size=2000,
            )
            LatencyDayRollup.objects.filter(day=day).delete()
            LatencyDayRollup.objects.bulk_create(_latency_day(day=day))
            RollupDay.objects.filter(day=day).delete()  # a concurrent read's
            RollupDay.objects.create(day=day, rows=expected)
        built.add(day)
    return built


def _latency_day(*, day: int) -> list[LatencyDayRollup]:
    """Merge a day's hourly sorted latencies into one sorted array per model."""
    merged: dict[str, tuple[array, array]] = {}
    for model, ttfb, duration in LatencyRollup.objects.filter(
        hour__gte=day * 24, hour__lt=day * 24 + 24
    ).values_list("model", "ttfb", "duration"):
        pair = merged.setdefault(model, (array("d"), array("d")))
        pair[0].frombytes(ttfb)
        pair[1].frombytes(duration)
    return [
        LatencyDayRollup(
            day=day,
            model=model,
            ttfb=array("d", sorted(ttfb)).tobytes(),
            duration=array("d", sorted(duration)).tobytes(),
        )
        for model, (ttfb, duration) in merged.items()
    ]


def _session_object(day: int, row: tuple) -> SessionRollup:
    session, first, last, requests, turns, subagents, errors, *rest = row
    tokens = dict(zip(_TOKEN_FIELDS.values(), rest[:5], strict=True))
    return SessionRollup(
        day=day, session_id=session, first_at=first, last_at=last,
        requests=requests, turns=turns, subagent_calls=subagents, errors=errors,
        **tokens, cost_usd=rest[5], model_list=rest[6] or "",
    )  # fmt: skip
