"""A turn is one SQL expression (selectors.TURN_START_SQL): prompts typed, not
Claude Code's scaffolding, tool results or compaction summaries."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.db import connection

from apps.indexing.models import Entry, Session, TranscriptCall
from apps.indexing.selectors import TURN_PROMPT, TURN_SUMMARY, session_turn_marks
from apps.indexing.services import index_sync

pytestmark = pytest.mark.django_db


def _compacted_session(claude_tree):
    t = claude_tree.transcript()
    t.user("first prompt")
    t.assistant(
        [{"type": "text", "text": "a"},
         {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}},
         {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {}}],
        message_id="msg_1", request_id="req_1",
        usage={"input_tokens": 10, "output_tokens": 7},
    )  # fmt: skip
    t.tool_result("toolu_1", "done")
    t.other(type="system", subtype="compact_boundary", uuid="cb", parentUuid=None)
    t.user("Summary of the conversation so far", isCompactSummary=True)
    t.user("<command-name>/cost</command-name>", isMeta=True)
    t.user("second prompt")
    return t


def test_it_counts_prompts_only_as_turns(claude_tree) -> None:
    t = _compacted_session(claude_tree)
    index_sync()
    session = Session.objects.get()
    assert session.user_count == 2
    summary = Entry.objects.get(is_compact_summary=True)
    assert summary.type == "user" and summary.role == "user"
    marks = session_turn_marks(session=session)
    assert [m.kind for m in marks] == [TURN_PROMPT, TURN_SUMMARY, TURN_PROMPT]
    t.assistant([{"type": "text", "text": "b"}], message_id="msg_2",
                request_id="req_2")  # fmt: skip
    index_sync()
    first, second = TranscriptCall.objects.order_by("entry_id")
    # Three lines of one response, merged as the session totals count them.
    assert (first.turn, first.request_id, first.tools) == (1, "req_1", "Bash Read")
    assert (first.input_tokens, first.output_tokens) == (10, 7)
    lines = Entry.objects.filter(request_id="req_1").order_by("id")
    assert (first.entry_id, first.uuid) == (lines[0].id, lines[0].uuid)
    assert first.cost_usd is not None and first.cost_usd > 0
    assert (second.turn, second.request_id) == (2, "req_2")
    assert Session.objects.get().cost_usd == pytest.approx(
        first.cost_usd + second.cost_usd
    )
    # The response's next line arrives in a later sync: its call is rewritten.
    t.assistant([{"type": "tool_use", "id": "toolu_3", "name": "Edit", "input": {}}],
                message_id="msg_2", request_id="req_2",
                usage={"input_tokens": 10, "output_tokens": 90})  # fmt: skip
    index_sync()
    kept, grown = TranscriptCall.objects.order_by("entry_id")
    assert (kept.pk, grown.entry_id, grown.tools) == (first.pk, second.entry_id, "Edit")
    assert grown.output_tokens == 90 and grown.cost_usd > second.cost_usd


def test_it_marks_summaries_already_indexed_when_migrating(claude_tree) -> None:
    _compacted_session(claude_tree)
    index_sync()
    # The state before migration 0007: no flag, the summary counted as a prompt.
    Entry.objects.update(is_compact_summary=False)
    Session.objects.update(user_count=3)
    migration = importlib.import_module(
        "apps.indexing.migrations.0007_entry_is_compact_summary"
    )
    migration._summaries_mark(None, SimpleNamespace(connection=connection))
    assert list(Entry.objects.filter(is_compact_summary=True).values_list(
        "type", flat=True)) == ["user"]  # fmt: skip
    assert Session.objects.get().user_count == 2
