"""Usage on a terminal: the reports as text tables, and figures in few characters.

No Django here: the statusline (apps.dashboard.statusline) uses the formatting
and must start in milliseconds. The tables take the reports' JSON documents
(schemas.*ReportOut dumped), so the text and --json show the same numbers.
"""

from __future__ import annotations

import os
from datetime import datetime, tzinfo
from pathlib import Path

_ZONEINFO = "/usr/share/zoneinfo/"


def zone_local_name() -> str:
    """Return this machine's IANA zone name (TZ, then /etc/localtime), or UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name and "/" in name or name == "UTC":
        return name
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return "UTC"
    return target.split(_ZONEINFO, 1)[1] if _ZONEINFO in target else "UTC"


def money(value: float | None, unpriced: int = 0) -> str:
    """Return dollars the way the dashboard shows them; '?' marks unknown prices."""
    text = "—" if value is None else f"${value:,.2f}" if value >= 1 else f"${value:.4f}"
    return f"{text}+?" if unpriced else text


def count(value: float) -> str:
    """Return a count in at most five characters: 950, 12.3k, 4.1M."""
    for limit, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{unit}"
    return f"{value:.0f}"


def span(minutes: float) -> str:
    """Return minutes as '2h05m' or '17m'."""
    whole = int(minutes)
    return f"{whole // 60}h{whole % 60:02d}m" if whole >= 60 else f"{whole}m"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for number, row in enumerate([header, *rows]):
        pairs = zip(row[1:], widths[1:], strict=True)
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in pairs)]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


_FIGURES = ["Calls", "Input", "Output", "Cache write", "Cache read", "Tokens", "Cost"]


def _figures(row: dict) -> list[str]:
    tokens = row["tokens"]
    written = tokens["cache_write_5m"] + tokens["cache_write_1h"]
    return [
        f"{row['calls']:,}", f"{tokens['input']:,}", f"{tokens['output']:,}",
        f"{written:,}", f"{tokens['cache_read']:,}", f"{row['total_tokens']:,}",
        money(row["cost_usd"], row["unpriced_calls"]),
    ]  # fmt: skip


def report_table(document: dict, *, zone: tzinfo) -> str:
    """Return a report document as a text table, with a totals line."""
    report = document["report"]
    if report == "blocks":
        return _blocks_table(document, zone=zone)
    label = {
        "daily": "Day", "weekly": "Week of", "monthly": "Month",
        "projects": "Project", "models": "Model", "sessions": "Session",
    }[report]  # fmt: skip
    # Like the API every period is there, quiet ones too; a table shows the
    # periods with calls.
    listed = [row for row in document["rows"] if row.get("calls", 1)]
    rows = [[_row_label(report, row), *_figures(_row_figures(report, row))]
            for row in listed]  # fmt: skip
    if not rows:
        return f"No calls between {document['from']} and {document['to']}."
    rows.append(["Total", *_figures(document["totals"])])
    note = _unpriced_note(document)
    return _table([label, *_FIGURES], rows) + (f"\n{note}" if note else "")


def _row_label(report: str, row: dict) -> str:
    if report == "projects":
        return row["project"] or "(no transcript)"
    if report == "models":
        return row["model"] or "(none)"
    if report == "sessions":
        return f"{row['session_id'][:8]} {row['title'][:40]}".rstrip()
    return row["period"]


def _row_figures(report: str, row: dict) -> dict:
    if report != "sessions":
        return row
    tokens = row["tokens"]
    return {
        "calls": row["requests"], "tokens": tokens,
        "total_tokens": sum(tokens.values()), "cost_usd": row["cost_usd"],
        "unpriced_calls": row["unpriced_requests"],
    }  # fmt: skip


def _unpriced_note(document: dict) -> str:
    models = sorted(
        {m for row in document["rows"] for m in row.get("unpriced_models", [])}
    )
    if not document["totals"]["unpriced_calls"]:
        return ""
    named = f" ({', '.join(models)})" if models else ""
    return (
        f"+? {document['totals']['unpriced_calls']} call(s) with no known price"
        f"{named}: not in the costs."
    )


def _blocks_table(document: dict, *, zone: tzinfo) -> str:
    rows = []
    for row in document["rows"]:
        start = _local(row["start"], zone)
        if row["kind"] == "gap":
            rows.append(
                [f"{start} (gap)", "", "", "", f"until {_local(row['end'], zone)}"]
            )
            continue
        state = "ACTIVE" if row["active"] else ""
        rows.append([start, state, f"{row['calls']:,}", f"{row['total_tokens']:,}",
                     money(row["cost_usd"], row["unpriced_calls"])])  # fmt: skip
    if not rows:
        return f"No calls between {document['from']} and {document['to']}."
    text = _table(["Block start", "", "Calls", "Tokens", "Cost"], rows)
    active = document["active"]
    if active and active["burn"]:
        burn = active["burn"]
        text += (
            f"\nActive block: {span(burn['minutes_left'])} left, "
            f"{count(burn['tokens_per_minute'])} tokens/min, "
            f"{money(burn['cost_per_hour'])}/h, projected "
            f"{money(burn['projected_cost_usd'])}"
        )
    limits = document["limits"]
    if limits:
        text += "\nLimits seen by the relay: " + limits_text(limits)
    return text


def limits_text(limits: dict) -> str:
    """Return '5h 42% · 7d 18%' from a limits document (utilizations 0..1)."""
    parts = []
    for key, name in (("five_hour_utilization", "5h"), ("seven_day_utilization", "7d")):
        if limits.get(key) is not None:
            parts.append(f"{name} {limits[key] * 100:.0f}%")
    return " · ".join(parts)


def _local(text: str, zone: tzinfo) -> str:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")
