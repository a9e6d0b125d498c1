"""Sessions, threads and search in Chromium, over transcripts indexed from real files.

The world (tests/dashboard/test_transcript_pages.transcripts_seed) is indexed
by the indexing service into the test database that daphne serves, with
exchanges whose request-ids and session id match the transcript's.
"""

from __future__ import annotations

import pytest
from django.db import connection
from playwright.sync_api import expect

from apps.dashboard.templatetags.dashboard import usd
from tests.dashboard.test_transcript_pages import (
    AGENT,
    COSTS,
    HOSTILE,
    ORPHAN,
    PHRASE,
    RELAYED,
    SUB_COST,
    SUB_PHRASE,
    first_prompt_uuid,
    transcripts_seed,
)
from tests.dashboard_ui.conftest import login, screenshot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def seeded(db, tmp_path) -> dict:
    return transcripts_seed(tmp_path / "dot-claude")


def _header_search(page, text: str) -> None:
    box = page.locator("header form.search input[name=q]")
    box.fill(text)
    # Wait for the navigation itself: from a search page the URL already matches.
    with page.expect_navigation():
        box.press("Enter")
    page.wait_for_url("**/search/**")


def test_it_lands_a_phrase_search_on_the_highlighted_thread_entry(page, member, seeded):
    login(page)
    _header_search(page, f'"{PHRASE}"')
    hits = page.locator("ol.hits li.hit")
    expect(hits).to_have_count(1)
    expect(hits.first.locator(".snippet mark")).to_have_text(
        ["flaky", "websocket", "fixture"]
    )
    screenshot(page, "search-results")
    hits.first.locator("a.hit-link").click()
    prompt_uuid = first_prompt_uuid(seeded["main"])
    page.wait_for_url(f"**/sessions/{RELAYED}/thread/?*#entry-{prompt_uuid}")
    entry = page.locator(f"#entry-{prompt_uuid}")
    expect(entry).to_be_in_viewport()
    expect(entry.locator(".hl-text mark")).to_have_text(
        ["flaky", "websocket", "fixture"]
    )
    expect(entry.locator(".hl-text")).to_contain_text(HOSTILE)  # shown as text
    assert page.evaluate("window.__pwned") is None
    screenshot(page, "thread-hit")
    # A hit further down (a tool result) scrolls the thread to it.
    page.goto("/search/?q=%22deadlock+is+in+the+pool%22&role=tool")
    page.locator("ol.hits a.hit-link").click()
    result = page.locator(".entry.is-hit")
    expect(result).to_have_count(1)
    expect(result).to_be_in_viewport()
    assert page.evaluate("window.scrollY") > 0
    expect(result.locator(".hit-snippet mark")).to_have_text(
        ["deadlock", "is", "in", "the", "pool"]
    )
    assert page.console_errors == []


# Two words (near each other on FTS5) without a third, in each engine's syntax.
ADVANCED = {
    "sqlite": "NEAR(flaky fixture, 2) NOT deadlock",
    "postgresql": "flaky fixture -deadlock",
}


def test_it_lands_an_advanced_search_on_its_terms_in_the_thread(page, member, seeded):
    login(page)
    page.goto("/search/")
    form = page.locator("form.search-form")
    form.locator("input[name=q]").fill(ADVANCED[connection.vendor])
    form.locator("input[name=advanced]").set_checked(True)
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    hits = page.locator("ol.hits li.hit")
    expect(hits).to_have_count(1)
    expect(hits.first.locator(".snippet mark")).to_have_text(["flaky", "fixture"])
    hits.first.locator("a.hit-link").click()
    prompt_uuid = first_prompt_uuid(seeded["main"])
    page.wait_for_url(f"**/sessions/{RELAYED}/thread/?*advanced=1*")
    entry = page.locator(f"#entry-{prompt_uuid}")
    expect(entry).to_be_in_viewport()
    # The query's terms, not its operators, distance or excluded word.
    expect(entry.locator(".hl-text mark")).to_have_text(["flaky", "fixture"])
    expect(entry.locator(".hl-text")).to_contain_text(HOSTILE)  # shown as text
    assert page.evaluate("window.__pwned") is None
    screenshot(page, "thread-advanced-hit")
    assert page.console_errors == []


def test_it_lists_turns_with_seeded_costs_and_inspector_links(page, member, seeded):
    login(page)
    page.goto("/sessions/?range=custom&from=2026-11-19&to=2026-11-21")
    row = page.locator(f"#sessions-table tr[data-session='{RELAYED}']")
    total = usd(sum(COSTS.values()) + SUB_COST)  # the subagent's call included
    expect(row).to_contain_text(total)
    row.locator("a").first.click()
    expect(page.locator("[data-total-cost]")).to_have_text(total)
    turns = page.locator("#turns-table tr.turn")
    expect(turns).to_have_count(2)
    expect(turns.nth(0).locator(".turn-cost")).to_have_text(
        usd(COSTS["req_t1a"] + COSTS["req_t1b"])
    )
    expect(turns.nth(1).locator(".turn-cost")).to_have_text(usd(COSTS["req_t2"]))
    expect(page.locator("[aria-label='Context size'] svg polyline")).to_have_count(1)
    screenshot(page, "session")
    exchange = seeded["exchanges"]["req_t2"]
    turns.nth(1).locator("a.inspect").click()
    page.wait_for_url(f"**/requests/{exchange.pk}/")
    expect(page.locator("h1")).to_contain_text(f"#{exchange.pk}")


def test_it_nests_subagent_entries_under_the_spawning_turn(page, member, seeded):
    login(page)
    page.goto(f"/sessions/{RELAYED}/")
    second = page.locator("#turns-table tr.turn").nth(1)
    expect(second.locator(f"li.subagent[data-agent='{AGENT}']")).to_be_visible()
    page.goto(f"/sessions/{RELAYED}/thread/")
    spawn = page.locator(f"#entry-{seeded['spawn']['uuid']}")
    nested = spawn.locator(".subagent-thread")
    expect(nested).to_contain_text(SUB_PHRASE)
    expect(nested.locator(".entry")).to_have_count(2)
    expect(page.locator(".compact-mark")).to_have_count(2)  # boundary and summary
    screenshot(page, "thread-subagent")


def test_it_reads_a_transcript_whose_file_was_deleted(page, member, seeded):
    login(page)
    page.goto(f"/sessions/{ORPHAN}/")
    expect(page.locator("#turns-table tr.turn")).to_have_count(1)
    page.click("text=Read the transcript")
    expect(page.locator(".thread")).to_contain_text(
        "explain the quarterly reconciliation of the ledger"
    )
    expect(page.locator(".thread")).to_contain_text("Reconciliation matches entries.")


HOSTILE_QUERIES = [
    '"', 'say "hi', "NEAR(", "NEAR(a b", "*", "-", "-x -", "AND OR", "🦀 emoji",
    "x" * 10_000, HOSTILE, "col:umn", "(((", "'",
]  # fmt: skip


def test_it_answers_hostile_searches_without_an_error_page(page, member, seeded):
    login(page)
    page.goto("/search/")
    for text in HOSTILE_QUERIES:
        for advanced in (False, True):
            form = page.locator("form.search-form")
            form.locator("input[name=q]").fill(text)
            form.locator("input[name=advanced]").set_checked(advanced)
            with page.expect_navigation() as navigation:
                form.locator("button[type=submit]").click()
            assert navigation.value.status == 200, (text[:40], advanced)
            outcome = page.locator(".no-results, ol.hits, .search-error")
            expect(outcome.first).to_be_visible()
    _header_search(page, "fixture")
    expect(page.locator("ol.hits li.hit").first).to_be_visible()
    assert page.evaluate("window.__pwned") is None
    assert page.console_errors == []


def test_it_fits_a_long_unbroken_title_in_a_phone_width(page, member, seeded):
    # Titles are first prompts: paths, URLs and markup with no space to wrap at.
    login(page)
    page.set_viewport_size({"width": 390, "height": 844})
    for path in (f"/sessions/{RELAYED}/", f"/sessions/{RELAYED}/thread/"):
        page.goto(path)
        expect(page.locator("h1")).to_contain_text(HOSTILE)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
    screenshot(page, "thread-narrow")
