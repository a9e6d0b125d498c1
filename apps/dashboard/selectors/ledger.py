"""Reads of the usage ledger: the three primitives every usage figure is built on.

Sums grouped by the ledger's dimensions, latencies (sorted, for nearest-rank
percentiles) and tools called, each for a Scope: a UTC range plus filters on
the dimensions. Each is one statement over the rollups and the ledger
(apps.dashboard.sql explains the split), so a figure is the same whichever
page, API operation or command asks for it.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection

from apps.dashboard import sql

_QUARTER = sql.QUARTER


@dataclass(frozen=True)
class Scope:
    """Which calls: [start, end) in UTC, a kind ('' for all) and filters."""

    start: datetime
    end: datetime
    kind: str = "messages"
    model: str | None = None
    family: str | None = None  # a model id prefix
    project_id: int | None = None
    session_id: str | None = None
    sessions: tuple[str, ...] | None = None  # any of these session ids

    @property
    def rollable(self) -> bool:
        """Tell whether the latency rollups (kept per kind and model) apply."""
        return (
            self.project_id is None
            and self.session_id is None
            and self.sessions is None
        )


def scope_of(filters: object) -> Scope:
    """Return the Scope of a filter schema (schemas.UsageFilter or alike)."""
    return Scope(
        start=filters.start,  # type: ignore[attr-defined]
        end=filters.end,  # type: ignore[attr-defined]
        kind=getattr(filters, "kind", None) or "messages",
        model=getattr(filters, "model", None),
        family=getattr(filters, "family", None),
        project_id=getattr(filters, "project", None),
        session_id=getattr(filters, "session", None),
    )


def _where(scope: Scope) -> tuple[str, list]:
    """Return the scope's conditions on the dimensions, and their parameters."""
    parts, params = [], []
    for column, value in (
        ("kind", scope.kind or None),
        ("model", scope.model),
        ("project_id", scope.project_id),
        ("session_id", scope.session_id),
    ):
        if value is not None:
            parts.append(f"{column} = %s")
            params.append(value)
    if scope.sessions is not None:
        marks = ", ".join(["%s"] * len(scope.sessions)) or "NULL"
        parts.append(f"session_id IN ({marks})")
        params.extend(scope.sessions)
    if scope.family is not None:
        # Django's startswith on SQLite: LIKE, with the wildcards escaped.
        parts.append("model LIKE %s ESCAPE '\\'")
        params.append(re.sub(r"([\\%_])", r"\\\1", scope.family) + "%")
    return "".join(f" AND {part}" for part in parts), params


def _bounds(scope: Scope) -> tuple[list, list]:
    """Return the parameters of a rolled half and of a live half.

    Rolled: the quarters wholly inside the range. Live: the dirty quarters that
    touch it, its partial first and last quarters (-1: none), and the range.
    """
    first = int(scope.start.timestamp())
    last = int(scope.end.timestamp())
    lo = -(-first // _QUARTER)  # ceil: the first whole quarter
    hi = last // _QUARTER  # the quarters wholly inside end before this one
    lo_edge = first // _QUARTER if first % _QUARTER else -1
    hi_edge = hi if last % _QUARTER else -1
    adapt = connection.ops.adapt_datetimefield_value
    live = [first // _QUARTER, (last - 1) // _QUARTER, lo_edge, hi_edge]
    return [lo, hi], [*live, adapt(scope.start), adapt(scope.end)]


def _group(by: tuple[str, ...]) -> str:
    unknown = set(by) - set(sql.GROUP_COLUMNS)
    if unknown:
        raise ValueError(f"cannot group the ledger by {sorted(unknown)}")
    return ", ".join(by)


def ledger_sums(*, scope: Scope, by: tuple[str, ...] = ()) -> list[dict]:
    """Return the calls' sums (sql.SUM_COLUMNS, first_at, last_at) per group."""
    group = _group(by)
    where, params = _where(scope)
    rolled, live = _bounds(scope)
    statement = sql.SUMS.format(
        group=group,
        comma=", " if group else "",
        where=where,
        group_by=f"GROUP BY {group}" if group else "",
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [*rolled, *params, *live, *params])
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in rows:
        row["first_at"] = moment_utc(row["first_at"])
        row["last_at"] = moment_utc(row["last_at"])
    # An empty range still yields one ungrouped row, of NULLs.
    return [row for row in rows if row["calls"]]


def ledger_latencies(
    *, scope: Scope, by: tuple[str, ...] = ()
) -> dict[tuple, tuple[list[float], list[float]]]:
    """Return {group: (sorted times to first byte, sorted durations)} in ms.

    by: any of quarter, kind, model (what the latency rollups keep).
    """
    if set(by) - {"quarter", "kind", "model"}:
        raise ValueError(f"cannot group latencies by {sorted(by)}")
    where, params = _where(scope)
    rolled, live = _bounds(scope)
    if scope.rollable:
        statement = sql.LATENCIES.format(where=where)
        params = [*rolled, *params, *live, *params]
    else:
        statement = sql.LATENCIES_SCAN.format(where=where)
        params = [*live[-2:], *params]
    index = {"quarter": 0, "kind": 1, "model": 2}
    groups: dict[tuple, tuple[array, array]] = {}
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        for row in cursor:
            key = tuple(row[index[name]] for name in by)
            ttfb, duration = groups.setdefault(key, (array("d"), array("d")))
            _add(ttfb, row[3], row[5])
            _add(duration, row[4], row[6])
    # Runs of sorted values: timsort merges them in near-linear time.
    return {key: (sorted(t), sorted(d)) for key, (t, d) in groups.items()}


def _add(values: array, packed: bytes | memoryview | None, one: float | None) -> None:
    if packed is not None:
        values.frombytes(bytes(packed))
    elif one is not None:
        values.append(one)


def ledger_tools(*, scope: Scope) -> list[tuple[str, int, int]]:
    """Return (tool, uses, calls using it) for the tools the model called, most
    used first. Ledger rows list one name per use; rollups "name:uses:calls"."""
    where, params = _where(scope)
    rolled, live = _bounds(scope)
    uses: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    with connection.cursor() as cursor:
        cursor.execute(
            sql.TOOLS.format(where=where), [*rolled, *params, *live, *params]
        )
        for (text,) in cursor:
            if ":" in text:
                for word in text.split():
                    name, used, counted = word.rsplit(":", 2)
                    uses[name] += int(used)
                    calls[name] += int(counted)
            else:
                names = text.split()
                uses.update(names)
                calls.update(set(names))
    return sorted(
        ((name, uses[name], calls[name]) for name in uses),
        key=lambda item: (-item[1], item[0]),
    )


def tools_pack(names: list[str]) -> str:
    """Return the rollup form of the tool lists of some calls: "name:uses:calls"."""
    uses: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for text in names:
        listed = text.split()
        uses.update(listed)
        calls.update(set(listed))
    return " ".join(f"{name}:{uses[name]}:{calls[name]}" for name in sorted(uses))


def ledger_slowest(*, scope: Scope, limit: int) -> list[dict]:
    """Return the slowest relayed calls of a scope (longest duration first)."""
    where, params = _where(scope)
    _, live = _bounds(scope)
    with connection.cursor() as cursor:
        cursor.execute(sql.SLOWEST.format(where=where), [*live[-2:], *params, limit])
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in rows:
        row["at"] = moment_utc(row["at"])
    return rows


def moment_utc(value: datetime | str | None) -> datetime | None:
    """Return an aware UTC datetime from what the database hands back."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)
