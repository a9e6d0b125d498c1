"""The ledger's figures in Chromium: a transcript-only user's overview, the
usage reports and the 5-hour blocks view."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.indexing.services import index_sync
from tests.dashboard_ui.conftest import login, screenshot
from tests.factories import exchange_create
from tests.indexing.conftest import ClaudeTree

pytestmark = pytest.mark.django_db(transaction=True)
SESSION = "7a7a7a7a-0000-4000-8000-000000000001"


@pytest.fixture
def transcripts_only(db, tmp_path) -> None:
    """Two responses in one transcript, never relayed: $0.0045 + $0.0090."""
    tree = ClaudeTree(tmp_path / "dot-claude")
    t = tree.transcript(cwd="/home/me/history", session_id=SESSION)
    t.user("fix the migration")
    for rid, (inp, out) in (("r1", (1000, 100)), ("r2", (2000, 200))):
        t.assistant([{"type": "text", "text": rid}], message_id=f"m{rid}",
                    request_id=rid, usage={"input_tokens": inp, "output_tokens": out,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0})  # fmt: skip
    index_sync(roots=[tree.root])


def test_it_shows_a_transcript_only_users_history_on_the_overview(
    page, member, transcripts_only
):
    login(page)
    page.goto("/?range=custom&from=2026-11-19&to=2026-11-21")
    expect(page.locator("[data-card=requests] .value")).to_have_text("2")
    expect(page.locator("[data-card=cost] .value")).to_have_text("$0.0135")
    expect(page.locator("#sessions-table")).to_contain_text("fix the migration")
    screenshot(page, "overview-transcripts-only")
    page.goto("/usage/?report=daily&range=custom&from=2026-11-19&to=2026-11-21")
    expect(page.locator("#report-table tfoot [data-totals]")).to_contain_text("$0.0135")
    assert page.console_errors == []


def test_it_renders_the_blocks_view_with_the_active_block(page, member):
    now = timezone.now()
    for minutes in (400, 390, 50, 20):  # an earlier block, a gap, the active one
        exchange_create(
            started_at=now - timedelta(minutes=minutes), input_tokens=1000,
            output_tokens=0, unified_5h_utilization=0.42,
            unified_7d_utilization=0.18, unified_status="allowed",
        )  # fmt: skip
    login(page)
    page.goto("/usage/?report=blocks&range=24h")
    active = page.locator("[data-active-block]")
    expect(active).to_be_visible()
    expect(active.locator("[data-burn] .value")).to_contain_text("/h")
    expect(active.locator("[data-limit='5h'] .value")).to_have_text("42.0%")
    expect(page.locator("#report-table tr[data-block]")).to_have_count(2)
    expect(page.locator("#report-table tr[data-active]")).to_have_count(1)
    screenshot(page, "usage-blocks")
    page.locator("nav.tabs a[data-report=monthly]").click()
    expect(page.locator("#report-table tfoot [data-totals]")).to_contain_text("$0.0120")
    assert page.console_errors == []
