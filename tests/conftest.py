"""Shared fixtures: the fake Anthropic upstream, a running relay, sample data."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from django.db import connection

from tests.fake_upstream import FakeAnthropic

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_env() -> dict[str, str]:
    """The environment that points a child process at the test database."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return {"CLAUDEMON_DB_PATH": str(db["NAME"]), "CLAUDEMON_DATABASE_URL": ""}
    user = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    url = f"postgres://{user}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {"CLAUDEMON_DATABASE_URL": url}


ON_POSTGRES = os.environ.get("CLAUDEMON_DATABASE_URL", "") != ""


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """On PostgreSQL (the suite's second run) only tests that use the database run,
    and those marked sqlite_only are skipped: everything else ran on SQLite."""
    if not ON_POSTGRES:
        return
    kept = []
    for item in items:
        uses_db = item.get_closest_marker("django_db") or (
            "django_db_setup" in getattr(item, "fixturenames", ())
        )
        if not uses_db:
            continue
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            reason = marker.args[0] if marker.args else "about SQLite itself"
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}"))
        kept.append(item)
    config.hook.pytest_deselected(items=[i for i in items if i not in kept])
    items[:] = kept


class Relay:
    """A real core deployment under daphne, in its own process."""

    def __init__(self, *, var_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = var_dir / f"daphne-{self.port}.log"
        environment = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="claudemon.settings.core",
            CLAUDEMON_VAR_DIR=str(var_dir),
            CLAUDEMON_CORE_PORT=str(self.port),  # its name in the record, host:port
            PYTHONUNBUFFERED="1",
            **database_env(),
        )
        environment.update(env)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "claudemon.serve",  # daphne, as make run starts it
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "claudemon.asgi:application",
            ],
            cwd=ROOT,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"relay exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"relay did not start:\n{self.log()}")

    def settle(self, timeout: float = 30) -> None:
        """Wait until the relay has written everything it recorded."""
        if self.process.poll() is not None:
            return

        def idle() -> bool:
            try:
                return (
                    httpx.get(f"{self.url}/health", timeout=2).json()[
                        "recording_backlog"
                    ]
                    == 0
                )
            except httpx.HTTPError:
                return False

        wait_for(idle, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic().start()
    yield server
    server.stop()


@pytest.fixture
def upstream(fake: FakeAnthropic) -> FakeAnthropic:
    """The fake upstream with no requests recorded and no replies programmed."""
    fake.reset()
    return fake


@pytest.fixture(scope="session")
def relay_factory(
    django_db_setup: Any,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Relay]]:
    """Start relays (real daphne processes) writing into the test database."""
    started: list[Relay] = []

    def start(**env: str) -> Relay:
        relay = Relay(var_dir=tmp_path_factory.mktemp("var"), env=env)
        started.append(relay)
        return relay

    start.started = started  # type: ignore[attr-defined]
    yield start
    for relay in started:  # all at once: each takes a moment to close its connections
        if relay.process.poll() is None:
            relay.process.terminate()
    for relay in started:
        relay.stop()


@pytest.fixture(scope="session")
def relay(relay_factory: Callable[..., Relay], fake: FakeAnthropic) -> Relay:
    """The default relay in front of the fake upstream."""
    return relay_factory(CLAUDEMON_UPSTREAM_URL=fake.url)


class RedisServer:
    """A private redis-server on a free loopback port (never the shared one)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        """Start it (again, on the same port) unless it runs; wait for PONG."""
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
                + ["--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        wait_for(self.answers)
        return self

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 1) as probe:
                probe.sendall(b"PING\r\n")
                return probe.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill it by its PID, as a crash would: its connections just drop."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A private Redis per test module; a test that stops it need not restart it."""
    if shutil.which("redis-server") is None:
        missing = "redis-server is not installed (apt install redis-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}; the Redis tests cannot be skipped in CI")
        pytest.skip(f"{missing}: the Redis live-feed tests need it")
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def redis(redis_server: RedisServer) -> RedisServer:
    """The module's private Redis, running."""
    return redis_server.start()


def wait_for(predicate: Callable[[], Any], *, timeout: float = 10.0) -> Any:
    """Poll until predicate() returns something truthy; fail with a clear message."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)


async def wait_for_async(predicate: Callable[[], Any], *, timeout: float = 10.0) -> Any:
    """wait_for inside an event loop: poll, letting the loop run in between."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)
