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
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import overload

import numpy as np
from django.db import connection

from apps.dashboard import sql
from apps.proxy.selectors import Viewer, viewer_sql

_QUARTER = sql.QUARTER
ALL_TIME = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))


@dataclass(frozen=True)
class Scope:
    """Which calls: [start, end) in UTC, a kind ('' for all) and filters, of
    those a viewer sees (required: no read of the ledger forgets whose it is)."""

    start: datetime
    end: datetime
    kind: str = "messages"
    model: str | None = None
    family: str | None = None  # a model id prefix
    project_id: int | None = None
    session_id: str | None = None
    sessions: tuple[str, ...] | None = None  # any of these session ids
    viewer: Viewer = field(kw_only=True)

    @property
    def rollable(self) -> bool:
        """Tell whether the usage rollups (kept without sessions or credentials,
        so for a viewer who sees everyone) apply."""
        return (
            self.session_id is None and self.sessions is None and self.viewer.sees_all
        )

    @property
    def tools_rollable(self) -> bool:
        """Tell whether the tool rollups (kept per kind only) apply."""
        return self.latency_rollable and self.model is None and self.family is None

    @property
    def latency_rollable(self) -> bool:
        """Tell whether the latency rollups (kept per kind and model) apply."""
        return self.rollable and self.project_id is None


def scope_of(filters: object, *, viewer: Viewer) -> Scope:
    """Return the Scope of a filter schema (schemas.UsageFilter or alike)."""
    return Scope(
        viewer=viewer,
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
    mine, whose = viewer_sql(viewer=scope.viewer)
    return "".join(f" AND {part}" for part in parts) + mine, params + whose


def _bounds(scope: Scope) -> tuple[list, list]:
    """Return the parameters of a rolled half and of a live half
    (sql.quarter_bounds, then the range as stored instants)."""
    rolled, live = sql.quarter_bounds(
        int(scope.start.timestamp()), int(scope.end.timestamp())
    )
    adapt = connection.ops.adapt_datetimefield_value
    return rolled, [*live, adapt(scope.start), adapt(scope.end)]


def _group(by: tuple[str, ...]) -> str:
    unknown = set(by) - set(sql.GROUP_COLUMNS)
    if unknown:
        raise ValueError(f"cannot group the ledger by {sorted(unknown)}")
    return ", ".join(by)


def ledger_rows(
    *, scope: Scope, by: tuple[str, ...] = (), edges: list[datetime] | None = None
) -> tuple[list[str], list[tuple]]:
    """Return the column names and rows of the calls' sums per group
    (sql.SUM_COLUMNS, then first_at and last_at as stored).

    edges: bucket boundaries; the rows are then grouped by `bucket` (the index of
    the bucket [edges[i], edges[i + 1]) holding each quarter hour) first.
    """
    columns = ", ".join(by)
    _group(by)
    if edges is not None:
        columns = f"{_bucket_sql(edges)} AS bucket" + (f", {columns}" if by else "")
        by = ("bucket", *by)
    group = ", ".join(by)
    where, params = _where(scope)
    rolled, live = _bounds(scope)
    parts = {
        "group": columns,
        "comma": ", " if group else "",
        "where": where,
        "group_by": f"GROUP BY {group}" if group else "",
    }
    if scope.rollable:
        project = "project_id" in by or scope.project_id
        name, keys = sql.TABLES["project" if project else "usage"]
        statement = sql.on(connection.vendor).SUMS.format(
            **parts, table=name, keys=", ".join(keys)
        )
        params = [*rolled, *params, *live, *params]
    else:
        statement = sql.on(connection.vendor).SUMS_SCAN.format(**parts)
        params = [*live[-2:], *params]
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        names = [column[0] for column in cursor.description]
        # An empty range still yields one ungrouped row, of NULLs.
        return names, [row for row in cursor.fetchall() if row[len(by)]]


def _bucket_sql(edges: list[datetime]) -> str:
    """Return an SQL expression of `quarter` giving its bucket's index.

    Grouping a month by bucket rather than by quarter hour leaves SQLite a
    hundred groups to keep instead of ~10,000 (bench/usage.py). Edges are our
    own integers, never user input. Evenly spaced edges (hours, days without a
    DST change) are a division; others a CASE over the boundaries.
    """
    firsts = [-(-int(edge.timestamp()) // _QUARTER) for edge in edges]
    widths = {b - a for a, b in zip(firsts, firsts[1:], strict=False)}
    if len(widths) == 1:
        return f"((quarter - {firsts[0]}) / {widths.pop()})"
    cases = " ".join(
        f"WHEN quarter < {first} THEN {index}"
        for index, first in enumerate(firsts[1:-1])
    )
    return f"(CASE {cases} ELSE {max(len(firsts) - 2, 0)} END)"


def ledger_sums(
    *, scope: Scope, by: tuple[str, ...] = (), times: bool = False
) -> list[dict]:
    """Return the calls' sums (sql.SUM_COLUMNS, first_at, last_at) per group;
    times: parse first_at and last_at into datetimes (else left as stored)."""
    names, rows = ledger_rows(scope=scope, by=by)
    found = [dict(zip(names, row, strict=True)) for row in rows]
    if times:
        for row in found:
            row["first_at"] = moment_utc(row["first_at"])
            row["last_at"] = moment_utc(row["last_at"])
    return found


def ledger_route_sums(*, scope: Scope) -> list[dict]:
    """Return the sums (sql.SUM_COLUMNS, first_at, last_at) of the routed calls
    per provider and route (a rule of CLAUDEMON_ROUTES_FILE took them)."""
    where, params = _where(scope)
    adapt = connection.ops.adapt_datetimefield_value
    bounds = [adapt(scope.start), adapt(scope.end)]
    with connection.cursor() as cursor:
        cursor.execute(
            sql.on(connection.vendor).ROUTE_SUMS.format(where=where),
            [*bounds, *bounds, *params],
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def ledger_latencies(
    *, scope: Scope, by: tuple[str, ...] = (), edges: list[datetime] | None = None
) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    """Return {group: (times to first byte, durations)} in ms, unordered.

    by: any of quarter, kind, model (what the latency rollups keep); edges:
    bucket boundaries, the group then starting with the bucket's index.
    """
    if set(by) - {"quarter", "kind", "model"}:
        raise ValueError(f"cannot group latencies by {sorted(by)}")
    where, params = _where(scope)
    rolled, live = _bounds(scope)
    if scope.latency_rollable:
        statement = sql.on(connection.vendor).LATENCIES.format(where=where)
        params = [*rolled, *params, *live, *params]
    else:
        statement = sql.on(connection.vendor).LATENCIES_SCAN.format(where=where)
        params = [*live[-2:], *params]
    index = [{"quarter": 0, "kind": 1, "model": 2}[name] for name in by]
    seconds = [int(edge.timestamp()) for edge in edges or ()]
    # Per group: the rollups' packed arrays, then single live values.
    parts: dict[tuple, tuple[list, list, array, array]] = {}
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        for row in cursor:
            key = tuple(row[i] for i in index)
            if seconds:
                bucket = bisect_right(seconds, row[0] * _QUARTER) - 1
                key = (min(max(bucket, 0), len(seconds) - 2), *key)
            part = parts.get(key) or parts.setdefault(
                key, ([], [], array("d"), array("d"))
            )
            if row[3] is not None:
                part[0].append(bytes(row[3]))
                part[1].append(bytes(row[4]))
                continue
            if row[5] is not None:
                part[2].append(row[5])
            if row[6] is not None:
                part[3].append(row[6])
    return {
        key: (_values(packed_t, single_t), _values(packed_d, single_d))
        for key, (packed_t, packed_d, single_t, single_d) in parts.items()
    }


def _values(packed: list[bytes], single: array) -> np.ndarray:
    return np.frombuffer(b"".join(packed) + single.tobytes(), dtype=np.float64)


def ledger_tools(*, scope: Scope) -> list[tuple[str, int, int]]:
    """Return (tool, uses, calls using it) for the tools the model called, most
    used first (ledger rows list one name per use)."""
    where, params = _where(scope)
    rolled, live = _bounds(scope)
    if scope.tools_rollable:
        statement = sql.on(connection.vendor).TOOLS.format(where=where)
        params = [*rolled, *params, *live, *params]
    else:
        statement, params = (
            sql.on(connection.vendor).TOOLS_SCAN.format(where=where),
            [*live[-2:], *params],
        )
    uses: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        for tool, used, counted, names in cursor:
            if tool is not None:
                uses[tool] += int(used)
                calls[tool] += int(counted)
            else:
                listed = names.split()
                uses.update(listed)
                calls.update(set(listed))
    return sorted(
        ((name, uses[name], calls[name]) for name in uses),
        key=lambda item: (-item[1], item[0]),
    )


def tools_count(lists: list[str]) -> dict[str, tuple[int, int]]:
    """Return {tool: (uses, calls using it)} of some calls' lists of names."""
    uses: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for text in lists:
        listed = text.split()
        uses.update(listed)
        calls.update(set(listed))
    return {name: (uses[name], calls[name]) for name in uses}


def ledger_quarter_models(*, scope: Scope) -> dict[int, set[str]]:
    """Return {quarter hour: the models called in it} for a scope."""
    where, params = _where(scope)
    rolled, live = _bounds(scope)
    if scope.rollable:  # as ledger_rows: the table that keeps the filter's columns
        table = sql.TABLES["project" if scope.project_id else "usage"][0]
        statement = sql.on(connection.vendor).QUARTER_MODELS.format(
            table=table, where=where
        )
        params = [*rolled, *params, *live, *params]
    else:
        statement = sql.on(connection.vendor).QUARTER_MODELS_SCAN.format(where=where)
        params = [*live[-2:], *params]
    found: dict[int, set[str]] = {}
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        for quarter, model in cursor:
            found.setdefault(quarter, set()).add(model)
    return found


def ledger_slowest(*, scope: Scope, limit: int) -> list[dict]:
    """Return the slowest relayed calls of a scope (longest duration first)."""
    where, params = _where(scope)
    _, live = _bounds(scope)
    with connection.cursor() as cursor:
        cursor.execute(
            sql.on(connection.vendor).SLOWEST.format(where=where),
            [*live[-2:], *params, limit],
        )
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in rows:
        row["at"] = moment_utc(row["at"])
    return rows


@overload
def moment_utc(value: datetime | str) -> datetime: ...
@overload
def moment_utc(value: None) -> None: ...
def moment_utc(value: datetime | str | None) -> datetime | None:
    """Return an aware UTC datetime from what the database hands back."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)
