"""The dashboard in a real browser: Chromium against daphne serving seeded data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.utils import timezone
from playwright.sync_api import expect
from psycopg.types.json import Jsonb

from apps.dashboard import services
from apps.dashboard.templatetags.dashboard import num, pct, usd
from apps.proxy.models import Exchange
from apps.proxy.recorder import secret_fingerprint
from tests.conftest import database_env
from tests.dashboard_ui.conftest import login, screenshot
from tests.dashboard_ui.seed import BASH_COMMAND, HOSTILE
from tests.factories import exchange_build

pytestmark = pytest.mark.django_db(transaction=True)
# How long a live-page expectation polls before failing: a guard against a hang,
# not a figure the feed must meet (it polls the database every 0.35 s).
LIVE_WAIT = 10_000


def _shots(page, name: str) -> None:
    """Screenshots in light, dark and a narrow dark window."""
    screenshot(page, f"{name}-light")
    page.emulate_media(color_scheme="dark")
    screenshot(page, f"{name}-dark")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, f"{name}-narrow-dark")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_it_logs_in_and_shows_the_exact_seeded_totals(page, member, world):
    login(page)
    rows = list(world.values())

    def card(name: str) -> str:
        return page.locator(f"[data-card={name}] .value").inner_text()

    tokens = {k: sum(getattr(r, f"{k}_tokens") for r in rows)
              for k in ("input", "output", "cache_read", "cache_write_5m")}  # fmt: skip
    prompt = tokens["input"] + tokens["cache_read"] + tokens["cache_write_5m"]
    assert (card("requests"), card("errors")) == ("4", "1")
    assert card("input") == num(tokens["input"]) == "2,400"
    assert card("output") == num(tokens["output"]) == "500"
    assert card("cache-read") == num(tokens["cache_read"])
    assert card("cache-write") == num(tokens["cache_write_5m"])
    assert card("cost") == usd(sum(r.cost_usd or 0 for r in rows))
    assert card("hit-rate") == pct(tokens["cache_read"] / prompt)
    assert card("ttfb") == "300 ms"  # nearest rank 2 of 200, 300, 450, 900
    expect(page.locator("footer")).to_have_text("Times in Europe/Paris.")
    expect(page.locator("[aria-label=Limits]")).to_contain_text("42.0%")
    expect(page.locator("#tools-table")).to_contain_text("Bash")
    expect(page.locator("nav.nav a", has_text="Admin")).to_be_visible()
    _shots(page, "overview")
    page.click("[aria-label=Metric] >> text=Cost")
    page.wait_for_url("**/?metric=cost")
    expect(page.locator(".chart svg rect").first).to_be_visible()
    expect(page.locator("[aria-label=Metric] [aria-current=true]")).to_have_text("Cost")
    assert page.console_errors == []


def test_it_narrows_the_requests_table_with_a_filter(page, member, world):
    login(page)
    page.click("nav.nav >> text=Requests")
    table_rows = page.locator("#requests-table tbody tr[data-id]")
    expect(table_rows).to_have_count(4)
    page.select_option("select[name=model]", "claude-haiku-4-5-20251001")
    page.click("form[aria-label=Filters] button[type=submit]")
    expect(table_rows).to_have_count(1)
    assert "model=claude-haiku-4-5-20251001" in page.url
    expect(table_rows.first).to_contain_text("claude-haiku-4-5-20251001")
    _shots(page, "requests")


def test_it_inspects_an_edit_diff_a_bash_command_and_folded_thinking(
    page, member, world
):
    login(page)
    page.goto(f"/requests/{world['second'].pk}/")
    removed = page.locator(".tool-edit .diff-line.op-del")
    added = page.locator(".tool-edit .diff-line.op-add")
    expect(removed.first).to_have_text("- def greet():")
    expect(added.first).to_have_text("+ def greet(name):")
    expect(page.locator(".tool-bash pre.command")).to_have_text(f"$ {BASH_COMMAND}")
    expect(page.locator(".tool-bash header")).to_contain_text("Run the greet tests")
    thinking = page.locator("details.thinking")
    expect(thinking).not_to_have_attribute("open", "")
    expect(thinking.locator(".prose")).to_be_hidden()
    thinking.locator("summary").click()
    expect(thinking.locator(".prose")).to_have_text("The user wants a name parameter.")
    expect(page.locator("#m0")).to_have_count(0)  # sent before: not new
    shot = page.locator("#m2 img.shot")
    expect(shot).to_be_visible()  # a data: URI, allowed by the policy's img-src
    assert shot.evaluate("img => img.naturalWidth") == 1
    _shots(page, "inspector")
    page.click("nav.tabs >> text=Response")
    expect(page.locator(".role-assistant")).to_contain_text("All green.")
    page.click("text=Raw server-sent events")
    expect(page.locator(".events-list li")).to_have_count(3)
    page.click("nav.tabs >> text=Raw JSON")
    page.click("button.copy[data-copy=raw-request]")
    expect(page.locator("button.copy[data-copy=raw-request]")).to_have_text("Copied")
    assert page.console_errors == []


def test_it_does_not_run_a_script_from_a_tool_result(page, member, world):
    login(page)
    page.goto(f"/requests/{world['second'].pk}/?tab=conversation")
    result = page.locator(".tool-result.is-error")
    expect(result).to_contain_text(HOSTILE)  # shown as text
    assert page.evaluate("window.__pwned") is None
    assert page.title() != "pwned"
    policy = page.request.get(page.url).headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy


def _insert_from_another_process(**fields) -> int:
    """Insert an exchange with a raw INSERT (sqlite3, or psycopg on PostgreSQL)
    run by a separate process."""
    exchange = exchange_build(started_at=fields.pop("started_at"))
    for name, value in fields.items():  # after building: the factory derives times
        setattr(exchange, name, value)
    columns = [f for f in Exchange._meta.concrete_fields if not f.primary_key]
    values = [_plain(f.get_db_prep_save(getattr(exchange, f.attname), connection))
              for f in columns]  # fmt: skip
    job = {
        "sql": f"INSERT INTO proxy_exchange ({', '.join(f.column for f in columns)})"
        f" VALUES ({', '.join(['{m}'] * len(columns))})",
        "params": values,
        "uid": exchange.uid.hex,
    }
    return _job(job, "c.execute(d['sql'].format(m=m), d['params'])")


def _plain(value: object) -> object:
    """Return a prepared value as JSON can carry it (psycopg's Jsonb as its text)."""
    return json.dumps(value.obj) if isinstance(value, Jsonb) else value


# Another process's own connection: the database's driver, its parameter mark m.
_CONNECT = """
import json, sys
d = json.load(sys.stdin)
if d["db"].startswith("postgres://"):
    import psycopg
    c, m = psycopg.connect(d["db"], cursor_factory=psycopg.ClientCursor), "%s"
else:
    import sqlite3
    c, m = sqlite3.connect(d["db"], timeout=5), "?"
"""


def _job(job: dict, statement: str) -> int:
    script = (
        f"{_CONNECT}{statement}\n"
        "c.commit()\n"
        "print(c.execute(f'SELECT id FROM proxy_exchange WHERE uid = {m}',"
        " (d['uid'],)).fetchone()[0])\n"
    )
    db = (
        database_env().get("CLAUDEMON_DATABASE_URL") or connection.settings_dict["NAME"]
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(job | {"db": db}, default=str),
        capture_output=True, text=True, check=True, timeout=20,
    )  # fmt: skip
    return int(done.stdout.strip())


def test_it_shows_an_exchange_from_another_process_as_it_starts_and_ends(
    page, member, world
):
    login(page)
    page.click("nav.nav >> text=Live")
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.locator("#live-rows tr[data-id]")).to_have_count(4)
    started = timezone.now()
    new_id = _insert_from_another_process(
        started_at=started, state=Exchange.State.IN_PROGRESS, ended_at=None,
        first_byte_at=None, status_code=None, duration_ms=None,
        model="claude-opus-4-1-20250805", output_tokens=0,
    )  # fmt: skip
    row = page.locator(f'#live-rows tr[data-id="{new_id}"]')
    expect(row).to_be_visible(timeout=LIVE_WAIT)
    expect(row).to_contain_text("in flight")
    expect(row).to_contain_text("claude-opus-4-1-20250805")
    expect(row.locator(".timer")).to_contain_text(" s …")
    screenshot(page, "live-in-flight-light")
    uid = Exchange.objects.values_list("uid", flat=True).get(pk=new_id)
    _job(
        {"uid": uid.hex},
        "c.execute(\"UPDATE proxy_exchange SET state='complete', status_code=200,"
        " duration_ms=3210 WHERE uid = \" + m, (d['uid'],))",
    )
    expect(row).to_contain_text("3.21 s", timeout=LIVE_WAIT)
    expect(row.locator(".timer")).to_have_count(0)
    _shots(page, "live")
    assert page.console_errors == []


def test_it_links_every_page_from_the_navigation(page, member, world):
    login(page)
    for label, heading in [("Performance", "Performance"), ("Requests", "Requests"),
                           ("Live", "Live"), ("Overview", "Overview")]:  # fmt: skip
        page.click(f"nav.nav >> text={label}")
        expect(page.locator("h1")).to_contain_text(heading)
        expect(page.locator("nav.nav a[aria-current=page]")).to_have_text(label)
    page.click("nav.nav >> text=Performance")
    expect(page.locator("#errors-table")).to_contain_text("overloaded_error")
    expect(page.locator("#slowest-table tbody tr").first).to_contain_text("6.00 s")
    _shots(page, "performance")


def test_it_keeps_a_staff_members_live_feed_to_the_person_the_url_names(
    page, member, world
):
    anna = get_user_model().objects.create_user(username="anna")
    services.claim_add(user=anna, secret="sk-ant-key-of-anna")
    login(page)
    page.goto("/live/?user=anna")
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.locator("#live-rows tr[data-id]")).to_have_count(0)  # none of hers
    someone = _insert_from_another_process(
        started_at=timezone.now(), credential=secret_fingerprint("sk-ant-other")
    )
    hers = _insert_from_another_process(
        started_at=timezone.now(), credential=secret_fingerprint("sk-ant-key-of-anna")
    )
    expect(page.locator(f'#live-rows tr[data-id="{hers}"]')).to_be_visible(
        timeout=LIVE_WAIT
    )
    expect(page.locator(f'#live-rows tr[data-id="{someone}"]')).to_have_count(0)


def test_it_reconnects_the_live_feed_after_a_restart(page, member, world, data_server):
    login(page)
    page.goto("/live/")
    status = page.locator("#live-status")
    expect(status).to_have_text("live")
    data_server.stop()
    expect(status).to_have_text("reconnecting…")
    data_server.start()
    expect(status).to_have_text("live", timeout=15000)  # backoff tops out at 10 s
    new_id = _insert_from_another_process(started_at=timezone.now())
    expect(page.locator(f'#live-rows tr[data-id="{new_id}"]')).to_be_visible(
        timeout=LIVE_WAIT
    )


def test_the_admins_exchange_detail_page_keeps_to_the_content_security_policy(
    page, member, world
):
    member.user_permissions.add(Permission.objects.get(codename="view_exchange"))
    streamed = next(row for row in world.values() if row.is_streaming)
    messages = []
    page.on("console", lambda message: messages.append(message.text))
    login(page)

    page.goto(f"/admin/proxy/exchange/{streamed.pk}/change/")

    body = page.locator("pre.claudemon-body").first
    expect(body).to_be_visible()
    assert [text for text in messages if "Content Security Policy" in text] == []
    expect(body).to_have_css("white-space", "pre-wrap")  # its styles still apply
