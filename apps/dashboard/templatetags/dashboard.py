"""Formatting filters, query-string building and server-drawn SVG charts."""

from __future__ import annotations

from typing import Any

from django import template
from django.http import QueryDict

from apps.dashboard import page_state
from apps.proxy.services import call_error

register = template.Library()

_DASH = "—"
PALETTE_SIZE = 8  # series colours s0..s7 are defined in base.css (light and dark)


@register.filter
def error_label(row: Any) -> str:
    """Return an exchange's error label ("" for none), as the usage figures count it."""
    return call_error(
        error_type=row.error_type, status_code=row.status_code, state=row.state
    )


def _number(value: Any) -> float | None:
    """Return value as a float, or None for an empty or unreadable one (shown _DASH)."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@register.filter
def num(value: Any) -> str:
    """Format an integer count with thousands separators."""
    if isinstance(value, int):
        return f"{value:,}"  # exact past 2**53
    count = _number(value)
    return _DASH if count is None else f"{int(count):,}"


@register.filter
def usd(value: Any) -> str:
    """Format dollars: four decimals below $10 (one call costs fractions of a cent)."""
    amount = _number(value)
    if amount is None:
        return _DASH
    return f"${amount:,.4f}" if abs(amount) < 10 else f"${amount:,.2f}"


@register.filter
def ms(value: Any) -> str:
    """Format a duration in milliseconds: '412 ms' or '2.35 s'."""
    millis = _number(value)
    if millis is None:
        return _DASH
    return f"{millis:,.0f} ms" if millis < 1000 else f"{millis / 1000:,.2f} s"


@register.filter
def pct(value: Any) -> str:
    """Format a ratio (0..1) as a percentage with one decimal."""
    ratio = _number(value)
    return _DASH if ratio is None else f"{ratio * 100:.1f}%"


@register.filter
def short_id(value: Any) -> str:
    """Return the first 8 characters of an id (sessions are UUIDs)."""
    return str(value or "")[:8]


@register.simple_tag
def qs(query: QueryDict, **changes: Any) -> str:
    """Return '?...' for the current query with changes applied (None/'' removes)."""
    updated = query.copy()
    for key, value in changes.items():
        if value is None or value == "":
            updated.pop(key, None)
        else:
            updated[key] = str(value)
    if "page" not in changes:  # a new filter or sort starts again at page 1
        updated.pop("page", None)
    encoded = updated.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.simple_tag
def sort_link(query: QueryDict, column: str) -> str:
    """Return the query that sorts by column, descending first, toggling if current."""
    current = query.get("sort", "-time")
    target = column if current == f"-{column}" else f"-{column}"
    return qs(query, sort=target)


@register.inclusion_tag("dashboard/partials/chart_bars.html")
def stacked_bars(chart: dict, *, unit: str = "") -> dict:
    """Draw a stacked bar chart: chart = {labels: [...], series: [{name, values}]}."""
    labels = chart.get("labels", [])
    series = chart.get("series", [])
    width, height, pad = 720, 220, 28
    totals = [sum(s["values"][i] or 0 for s in series) for i in range(len(labels))]
    top = max(totals, default=0) or 1
    slot = (width - pad) / max(len(labels), 1)
    bars = []
    for i, label in enumerate(labels):
        y: float = height - pad
        for index, s in enumerate(series):
            value = s["values"][i] or 0
            h = value / top * (height - 2 * pad)
            if h > 0:
                y -= h
                bars.append(
                    {
                        "x": pad + i * slot + 1,
                        "y": y,
                        "w": max(slot - 2, 1),
                        "h": h,
                        "cls": f"s{index % PALETTE_SIZE}",
                        "title": f"{label} · {s['name']}: {_fmt(value, unit)}",
                    }
                )
    # By position: a 24 h range in hours starts and ends on the same hour's label.
    ticks = [
        {"x": pad + i * slot + slot / 2, "label": labels[i]}
        for i in range(0, len(labels), max(1, len(labels) // 6))
    ]
    return {
        "width": width,
        "height": height,
        "pad": pad,
        "bars": bars,
        "ticks": ticks,
        "top": _fmt(top, unit),
        "legend": [
            {"name": s["name"], "cls": f"s{i % PALETTE_SIZE}"}
            for i, s in enumerate(series)
        ],
        "empty": not any(totals),
        "baseline": height - pad,
    }


@register.inclusion_tag("dashboard/partials/chart_lines.html")
def line_chart(chart: dict, *, unit: str = "ms") -> dict:
    """Draw one polyline per series over labelled buckets (None values are gaps)."""
    labels = chart.get("labels", [])
    series = chart.get("series", [])
    width, height, pad = 720, 220, 28
    values = [v for s in series for v in s["values"] if v is not None]
    top = max(values, default=0) or 1
    slot = (width - pad) / max(len(labels), 1)
    lines = []
    for index, s in enumerate(series):
        points = [
            f"{pad + (i + 0.5) * slot:.1f},{_y(v, top=top, height=height, pad=pad):.1f}"
            for i, v in enumerate(s["values"])
            if v is not None
        ]
        color = s.get("color", index)
        lines.append(
            {
                "points": " ".join(points),
                "cls": f"s{color % PALETTE_SIZE}",
                "dashed": bool(s.get("dashed")),
                "legend": s.get("legend", s["name"]),
                "name": s["name"],
                "single": len(points) == 1,
                "first": points[0].split(",") if points else None,
            }
        )
    ticks = [
        {"x": pad + i * slot + slot / 2, "label": labels[i]}
        for i in range(0, len(labels), max(1, len(labels) // 6))
    ]
    return {
        "width": width,
        "height": height,
        "pad": pad,
        "lines": lines,
        "ticks": ticks,
        "top": _fmt(top, unit),
        "empty": not values,
        "baseline": height - pad,
    }


def _y(value: float, *, top: float, height: int, pad: int) -> float:
    return height - pad - value / top * (height - 2 * pad)


def _fmt(value: float, unit: str) -> str:
    if unit == "usd":
        return usd(value)
    if unit == "ms":
        return ms(value)
    return num(round(value))


@register.inclusion_tag("dashboard/partials/range_picker.html")
def range_picker(query: QueryDict, span: Any) -> dict:
    """Render the range links and custom form, keeping every other GET parameter."""
    others = query.copy()
    for key in ("range", "from", "to", "page"):
        others.pop(key, None)
    hidden = [(key, value) for key, values in others.lists() for value in values]
    return {
        "ranges": page_state.RANGES,
        "span": span,
        "keep": others.urlencode(),
        "hidden": hidden,
    }


@register.filter
def urlencode_dict(params: dict) -> str:
    """Encode a dict of GET parameters."""
    return page_state.query_string(**params)
