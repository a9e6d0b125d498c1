"""The front door: real HAProxy with the shipped deploy/haproxy.cfg before real relays.

Three relays (daphne processes) and the data side run against the fake upstream
and the test database; HAProxy listens on a free port. The official SDK, plain HTTP
and the real Claude Code CLI talk to it as a team's developers would.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anthropic
import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import User

from apps.proxy.models import Exchange
from claudemon.processes import front_config
from tests.conftest import Relay, free_port, wait_for
from tests.fake_upstream import FakeAnthropic, Reply, message_events

pytestmark = pytest.mark.django_db(transaction=True)

PREFIX = "/claudemon"
IN_CI = os.environ.get("CI", "").lower() == "true"


class FrontDoor:
    """HAProxy running deploy/haproxy.cfg, configured as `make team` configures it."""

    def __init__(self, *, relays: list[Relay], data: Relay, var_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = var_dir / f"haproxy-{self.port}.log"
        env = dict(
            os.environ,
            CLAUDEMON_BIND="127.0.0.1",
            CLAUDEMON_FRONT_PORT=str(self.port),
            CLAUDEMON_DATA_UPSTREAM=f"127.0.0.1:{data.port}",
            CLAUDEMON_DATA_PREFIX=PREFIX,
        )
        config = front_config(
            relays=[f"127.0.0.1:{relay.port}" for relay in relays],
            path=var_dir / "haproxy.cfg",
        )
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [_haproxy(), "-db", "-f", str(config)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._answers, timeout=20)

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"haproxy exited:\n{self.log_path.read_text()}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def _haproxy() -> str:
    path = shutil.which("haproxy")
    if path:
        return path
    missing = "haproxy is not installed (tests/setup_browser.sh installs it)"
    if IN_CI:
        pytest.fail(f"{missing}; the front door tests cannot be skipped in CI")
    pytest.skip(missing)


@pytest.fixture(scope="module")
def team(
    relay_factory: Callable[..., Relay],
    fake: FakeAnthropic,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FrontDoor, list[Relay]]]:
    """Three relays and the data side (under the prefix) behind one HAProxy."""
    _haproxy()
    relays = [relay_factory(CLAUDEMON_UPSTREAM_URL=fake.url) for _ in range(3)]
    data = relay_factory(
        DJANGO_SETTINGS_MODULE="claudemon.settings.data", CLAUDEMON_DATA_PREFIX=PREFIX
    )
    front = FrontDoor(relays=relays, data=data, var_dir=tmp_path_factory.mktemp("fd"))
    yield front, relays
    front.stop()


@pytest.fixture
def front(team: tuple[FrontDoor, list[Relay]], upstream: FakeAnthropic) -> FrontDoor:
    for relay in team[1]:
        relay.settle()
    Exchange.objects.all().delete()
    return team[0]


def client_at(url: str) -> anthropic.Anthropic:
    # No retries: every call the test makes is one call, counted once.
    return anthropic.Anthropic(base_url=url, api_key="sk-ant-test-front", max_retries=0)


@dataclass
class Outcome:
    relay: str = ""
    request_id: str = ""
    body: bytes = b""
    complete: bool = False
    error: Exception | None = None
    flowing: threading.Event = field(default_factory=threading.Event)


def _stream(client: anthropic.Anthropic, outcome: Outcome) -> None:
    try:
        with client.messages.with_streaming_response.create(
            model="claude-sonnet-4-5",
            max_tokens=100,
            messages=[{"role": "user", "content": "count slowly"}],
            stream=True,
        ) as response:
            outcome.relay = response.headers["x-claudemon-relay"]
            outcome.request_id = response.headers["request-id"]
            for chunk in response.iter_bytes():
                outcome.body += chunk
                outcome.flowing.set()
        outcome.complete = True
    except Exception as exc:  # noqa: BLE001 - the killed relay's streams end here
        outcome.error = exc
    finally:
        outcome.flowing.set()


def test_it_keeps_streaming_on_the_survivors_when_one_relay_is_killed(
    front: FrontDoor, team: tuple[FrontDoor, list[Relay]], upstream: FakeAnthropic
) -> None:
    relays = team[1]
    events = message_events(text="x" * 30, text_parts=30)
    upstream.enqueue(*(Reply(events=events, pause=0.08) for _ in range(12)))
    client = client_at(front.url)
    outcomes = [Outcome() for _ in range(12)]
    threads = [threading.Thread(target=_stream, args=(client, o)) for o in outcomes]
    for thread in threads:
        thread.start()
    for outcome in outcomes:
        assert outcome.flowing.wait(20) and outcome.error is None, outcome.error
    # least_conn spread the twelve over all three relays.
    by_relay = {f"127.0.0.1:{r.port}": r for r in relays}
    assert {o.relay for o in outcomes} == set(by_relay)
    # Every call in flight is already a row (in progress) before the kill.
    wait_for(lambda: Exchange.objects.count() == 12)
    victim = by_relay[outcomes[0].relay]
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(10)
    for thread in threads:
        thread.join(30)

    expected = b"".join(events)
    for outcome in outcomes:
        if outcome.relay == outcomes[0].relay:  # its streams end with an error
            assert outcome.error is not None and not outcome.complete
            assert expected.startswith(outcome.body) and outcome.body != expected
        else:  # the others do not notice: every byte, in order
            assert outcome.error is None and outcome.body == expected
    killed = sum(o.relay == outcomes[0].relay for o in outcomes)

    # New calls go to the survivors; the first may have been tried on the dead
    # relay first and moved on by HAProxy.
    after: list[str] = []
    for _ in range(6):
        raw = client.messages.with_raw_response.create(
            model="claude-sonnet-4-5",
            max_tokens=50,
            messages=[{"role": "user", "content": "after the kill"}],
        )
        assert raw.status_code == 200
        assert raw.headers["x-claudemon-relay"] != outcomes[0].relay
        after.append(raw.headers["request-id"])

    # Nothing lost: every call the client saw complete is one finished exchange,
    # and the killed relay's calls are rows too (left in progress: no process
    # is left to finish them).
    for relay in relays:
        relay.settle()
    completed = {o.request_id for o in outcomes if o.complete} | set(after)
    assert len(completed) == 12 - killed + 6
    finished = Exchange.objects.exclude(state=Exchange.State.IN_PROGRESS)
    assert set(finished.values_list("request_id", flat=True)) == completed
    assert finished.count() == len(completed)
    assert Exchange.objects.count() == 12 + 6
    assert Exchange.objects.filter(state=Exchange.State.IN_PROGRESS).count() == killed
    relays.remove(victim)  # later tests use the survivors


def _login(http: httpx.Client) -> None:
    # Hashed as the data side hashes (the test settings' MD5 is unknown there).
    hasher = PBKDF2PasswordHasher()
    password = hasher.encode("a long front door pass", hasher.salt())
    # Staff, as the single-user default's one admin: every call is theirs to see.
    User.objects.create(username="frontdesk", password=password, is_staff=True)
    page = http.get(f"{PREFIX}/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token is not None
    answer = http.post(
        f"{PREFIX}/login/?next={PREFIX}/requests/",
        data={
            "username": "frontdesk",
            "password": "a long front door pass",
            "csrfmiddlewaretoken": token.group(1),
        },
    )
    assert answer.status_code == 302
    assert answer.headers["location"] == f"{PREFIX}/requests/"


def test_it_serves_the_dashboard_under_the_prefix_from_the_same_origin(
    front: FrontDoor, upstream: FakeAnthropic
) -> None:
    http = httpx.Client(base_url=front.url, timeout=10)
    # Anthropic's /api/... is the relays' (and upstream's), never the dashboard's.
    logged = http.post("/api/event_logging/batch", json={"events": []})
    assert logged.status_code == 200 and "x-claudemon-relay" in logged.headers
    assert [r.target for r in upstream.requests] == ["/api/event_logging/batch"]
    assert http.get(PREFIX).headers["location"] == f"{PREFIX}/"
    first = http.get(f"{PREFIX}/")
    assert first.status_code == 302
    assert first.headers["location"] == f"{PREFIX}/login/?next={PREFIX}/"
    _login(http)

    page = http.get(f"{PREFIX}/requests/")
    assert page.status_code == 200 and "/api/event_logging/batch" in page.text
    links = re.findall(r'(?:href|src|action)="(/[^"]*)"', page.text)
    assert links and all(link.startswith(f"{PREFIX}/") for link in links), links
    css = next(link for link in links if link.endswith(".css"))
    assert http.get(css).headers["content-type"].startswith("text/css")
    rows = http.get(f"{PREFIX}/api/exchanges").json()
    assert [row["path"] for row in rows["items"]] == ["/api/event_logging/batch"]
    frame = _live_feed_frame(front, http.cookies)
    assert "/api/event_logging/batch" in json.dumps(json.loads(frame)["rows"])


def _live_feed_frame(front: FrontDoor, cookies: httpx.Cookies) -> str:
    """Open the live feed's WebSocket through HAProxy and return its first message."""
    key = base64.b64encode(os.urandom(16)).decode()
    cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
    handshake = (
        f"GET {PREFIX}/ws/live/?after=0 HTTP/1.1\r\nHost: 127.0.0.1:{front.port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\nOrigin: {front.url}\r\nCookie: {cookie}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", front.port), timeout=10) as sock:
        sock.sendall(handshake.encode())
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"HTTP/1.1 101")
        while reader.readline() not in (b"\r\n", b""):
            pass
        head = reader.read(2)
        assert head[0] == 0x81  # one unfragmented text frame, unmasked
        size = head[1] & 0x7F
        if size == 126:
            size = int.from_bytes(reader.read(2), "big")
        elif size == 127:
            size = int.from_bytes(reader.read(8), "big")
        return reader.read(size).decode()


def _claude_cli() -> str:
    """The real Claude Code CLI (tests/setup_browser.sh installs the pinned one)."""
    for path in (
        os.environ.get("CLAUDEMON_TEST_CLAUDE", ""),
        shutil.which("claude") or "",
        "/tmp/cc/node_modules/.bin/claude",
    ):
        if path and os.access(path, os.X_OK):
            return path
    missing = "the Claude Code CLI is not installed (tests/setup_browser.sh)"
    if IN_CI:
        pytest.fail(f"{missing}; its test cannot be skipped in CI")
    pytest.skip(missing)


def test_it_carries_claude_code_and_its_dashboard_page_on_one_origin(
    front: FrontDoor, upstream: FakeAnthropic, tmp_path: Path
) -> None:
    cli = _claude_cli()
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": front.url,
        "ANTHROPIC_API_KEY": "sk-ant-test-front-door",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    done = subprocess.run(
        [cli, "-p", "run echo front-door-ok", "--allowedTools", "Bash(echo:*)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # The fake answers a tool_result with what the command printed: the tool ran
    # on this machine and its result went back through the front door.
    assert "The command printed: front-door-ok" in done.stdout

    http = httpx.Client(base_url=front.url, timeout=10)
    _login(http)
    called = wait_for(
        lambda: [
            e
            for e in Exchange.objects.exclude(state=Exchange.State.IN_PROGRESS)
            if "Bash" in e.tools_called
        ]
    )
    page = http.get(f"{PREFIX}/requests/{called[0].pk}/")
    assert page.status_code == 200 and "echo front-door-ok" in page.text
    session = http.get(f"{PREFIX}/sessions/{called[0].session_id}/")
    assert session.status_code == 200 and called[0].session_id
