"""The dashboard harness: a real data deployment under daphne and Debian's Chromium.

One daphne and one browser per test session. Daphne serves the pytest test
database file (tests seed it with transactional_db, so rows are committed
and visible to the server process). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client
from django.utils import timezone

from tests.conftest import database_env
from tests.dashboard_ui.seed import world_seed

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USERNAME = "ada"
PASSWORD = "dashboard test password 7"


@pytest.fixture
def member(db):
    """A user who can log in to daphne too (staff, so the Admin link shows).

    The test settings hash with MD5 for speed, which the data deployment does not
    accept; the password is stored as PBKDF2 (few iterations) that both read.
    """
    user = get_user_model().objects.create_user(username=USERNAME, is_staff=True)
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, "dashboardsalt", 1000)
    user.save(update_fields=["password"])
    return user


@pytest.fixture
def member_client(member) -> Client:
    client = Client()
    client.force_login(member)
    return client


@pytest.fixture
def world(db) -> dict:
    """The seeded exchanges, all within the last hour."""
    return world_seed(now=timezone.now())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DataServer:
    """The data deployment under daphne, on a fixed port so it can be restarted."""

    def __init__(self, *, var_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.var_dir = var_dir
        self.env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="claudemon.settings.data",
            CLAUDEMON_VAR_DIR=str(var_dir),
            **database_env(),
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log_path = self.var_dir / "daphne.log"
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p",
                 str(self.port), "claudemon.asgi:application"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=self.env,
            )  # fmt: skip
        _wait_until_up(self.url, self.process, log_path)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def data_server(
    django_db_setup, django_db_blocker, tmp_path_factory
) -> Iterator[DataServer]:
    """Run the data deployment on the pytest test database file."""
    server = DataServer(var_dir=tmp_path_factory.mktemp("data-var"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}")
        try:
            status = httpx.get(f"{url}/health", timeout=1).status_code
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        if status in (200, 503):
            return
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"daphne answered /health with {status}:\n{tail}")
    raise RuntimeError("daphne did not answer /health within 30 s")


def _chromium_missing() -> str | None:
    if Path(CHROMIUM).exists():
        return None
    return f"Chromium is not installed at {CHROMIUM} (run tests/setup_browser.sh)"


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (never Playwright's own download).

    Module scope (all browser tests live in test_browser.py): Playwright's sync
    API runs an event loop in the main thread while it is open, which would
    break async tests collected after this module.
    """
    missing = _chromium_missing()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}; browser tests cannot be skipped in CI")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which
    # makes Django refuse ORM calls (seeding, assertions); they stay synchronous
    # and single-threaded here, so the guard is lifted while the browser lives.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's outcome so the page fixture can keep evidence."""
    outcome = yield
    setattr(item, f"rep_{call.when}", outcome.get_result())


@pytest.fixture
def page(request, browser, data_server):
    """A fresh browser context in Paris time; console errors are collected."""
    context = browser.new_context(
        base_url=data_server.url, timezone_id="Europe/Paris",
        viewport={"width": 1280, "height": 900},
    )  # fmt: skip
    tab = context.new_page()
    tab.console_errors = []
    tab.on(
        "console",
        lambda m: tab.console_errors.append(m.text) if m.type == "error" else None,
    )
    yield tab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:  # keep what the browser saw
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = f"FAILED-{request.node.name}"
        tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        (ARTIFACTS / f"{name}.html").write_text(tab.content())
    context.close()


def login(page) -> None:
    """Log in through the login form and land on the overview."""
    page.goto("/login/")
    # tz.js stores the browser's zone in a cookie and reloads once; wait for the
    # cookie, then load the form again (no reload now) so typing is not lost.
    page.wait_for_function("document.cookie.indexOf('tz=') !== -1")
    page.goto("/login/")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    page.wait_for_load_state("load")


def screenshot(page, name: str) -> None:
    """Save a full-page screenshot under test-artifacts/dashboard/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
