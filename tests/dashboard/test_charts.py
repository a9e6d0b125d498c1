"""The server-drawn SVG charts (apps/dashboard/templatetags/dashboard.py)."""

from __future__ import annotations

from apps.dashboard.templatetags.dashboard import line_chart, stacked_bars

# The 24 h overview in hours from 14:37: yesterday's 14:00 bucket to today's.
DAY = [f"{(14 + i) % 24:02d}:00" for i in range(25)]


def test_stacked_bars_put_each_tick_under_its_own_bucket_when_labels_repeat():
    chart = {"labels": DAY, "series": [{"name": "m", "values": [1.0] * 25}]}

    ticks = stacked_bars(chart)["ticks"]

    xs = [tick["x"] for tick in ticks]
    assert [tick["label"] for tick in ticks][-1] == "14:00"
    assert xs == sorted(set(xs))  # left to right, none drawn over another
    assert ticks == line_chart(chart)["ticks"]  # as the line charts place them
