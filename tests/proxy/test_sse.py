"""The one SSE parser: a table of WHATWG cases, and the LF fast path checked
against the general line-by-line path."""

from __future__ import annotations

import pytest

from apps.proxy.sse import sse_events


@pytest.mark.parametrize(
    ("text", "events"),
    [
        ("event: a\ndata: 1\n\n", [("a", "1")]),
        ("event: a\r\ndata: 1\r\n\r\n", [("a", "1")]),
        ("event: a\rdata: 1\r\r", [("a", "1")]),
        ("data: 1\ndata: 2\n\n", [("message", "1\n2")]),
        (": comment\nevent: ping\ndata: {}\n\n", [("ping", "{}")]),
        ("event: a\ndata:no-space\n\n", [("a", "no-space")]),
        ("event: a\ndata: 1\n\nevent: b\ndata: 2", [("a", "1")]),  # unterminated last
        ("event: a\n\n", []),  # no data, no event
        ("id: 7\nretry: 10\nevent: x\ndata: y\n\n", [("x", "y")]),
        ('data: {"t": "line\u2028sep"}\n\n', [("message", '{"t": "line\u2028sep"}')]),
    ],
)
def test_it_parses_server_sent_events(text, events):
    assert sse_events(text) == events


@pytest.mark.parametrize(
    "text",
    [
        "event: a\ndata: 1\n\nevent: b\ndata: 2\n\n",
        "event: a\ndata: 1\n\n\n\nevent: b\ndata: 2\n\n",
        "\n\nevent: a\ndata: 1\n\n",
        "data: x\n\nevent: a\ndata: 1\ndata: 2\n\n: c\nevent: b\ndata: 3\n\n",
        "event: a\ndata:1\n\nevent:b\ndata: 2\n\nevent: c\ndata: 3",
        "event: a\nid: 1\ndata: 1\n\n",
        "event: ping\n\nevent: a\ndata: {}\n\n",
    ],
)
def test_its_lf_fast_path_parses_like_the_line_by_line_path(text):
    # A CR anywhere sends a stream down the general path, line by line.
    assert sse_events(text) == sse_events(text.replace("\n", "\r\n"))
