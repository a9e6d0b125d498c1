"""`python -m claudemon` (what `make run` runs), as a user starts and stops it.

Real processes throughout: the launcher migrates a fresh database, starts the relay,
the data deployment, the indexer and the rollups, and stops them all on Ctrl-C. A
data-side process that dies is started again while the relay goes on relaying.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, wait_for
from tests.fake_upstream import FakeAnthropic

ROOT = Path(__file__).resolve().parent.parent


class Launcher:
    def __init__(
        self,
        tmp_path: Path,
        upstream_url: str,
        *,
        ports: tuple[int, int] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.core_port, self.data_port = ports or (free_port(), free_port())
        self.var = tmp_path / "var"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDEMON_")}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        (tmp_path / "claude").mkdir(exist_ok=True)
        env.update(
            CLAUDEMON_DB_PATH=str(tmp_path / "db.sqlite3"),
            CLAUDEMON_VAR_DIR=str(self.var),
            CLAUDEMON_CORE_PORT=str(self.core_port),
            CLAUDEMON_DATA_PORT=str(self.data_port),
            CLAUDEMON_UPSTREAM_URL=upstream_url,
            CLAUDEMON_CLAUDE_DIRS=str(tmp_path / "claude"),
            PYTHONUNBUFFERED="1",
        )
        self.process = subprocess.Popen(
            command or [sys.executable, "-m", "claudemon"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.pids: list[int] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def said(self) -> str:
        """Everything it printed, once it has exited."""
        self.reader.join(10)
        return "".join(self.output) + "".join(self.lines.queue)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)

    def expect(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.output.append(line)
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"{pattern!r} not seen; output:\n{''.join(self.output)}")

    def stop(self) -> None:
        """Stop it as a user would, then make sure no child outlives the test."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        for pid in self.pids:  # children run in sessions of their own
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


@pytest.fixture
def fake_upstream():
    upstream = FakeAnthropic().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def launch(tmp_path, fake_upstream):
    """Start launchers (each in a folder of its own unless told), stop them after."""
    started: list[Launcher] = []

    def start(folder: Path | None = None, **options: object) -> Launcher:
        folder = folder or tmp_path / f"run{len(started)}"
        folder.mkdir(exist_ok=True)
        started.append(Launcher(folder, fake_upstream.url, **options))
        return started[-1]

    yield start
    for launcher in started:
        launcher.stop()


@pytest.fixture
def launcher(launch):
    return launch()


def processes(launcher: Launcher) -> dict[str, int]:
    """Wait for the launcher's list of processes; return {name: pid}."""
    line = launcher.expect(r"^Processes: .*").string
    pids = {name: int(pid) for name, pid in re.findall(r"(\w+) \(pid (\d+)\)", line)}
    launcher.pids.extend(pids.values())
    return pids


def relayed(port: int) -> int:
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/messages",
        headers={"x-api-key": "sk-ant-launch", "anthropic-version": "2023-06-01"},
        json={
            "model": "claude-sonnet-4-6",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=10,
    )
    return response.status_code


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def serving(port: int) -> bool:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def test_it_runs_everything_restarts_the_data_side_and_stops_on_ctrl_c(launcher):
    launcher.expect(rf"ANTHROPIC_BASE_URL=http://127\.0\.0\.1:{launcher.core_port}")
    pids = processes(launcher)
    assert set(pids) == {"relay", "data", "indexer", "rollups"}
    wait_for(lambda: serving(launcher.core_port) and serving(launcher.data_port))
    assert relayed(launcher.core_port) == 200
    # Both sides ready: upstream reached, database migrated, workers beating.
    wait_for(
        lambda: ready(launcher.core_port) and ready(launcher.data_port), timeout=30
    )

    os.kill(int(pids["data"]), signal.SIGKILL)  # the dashboard dies

    launcher.expect(r"the data process exited")
    assert relayed(launcher.core_port) == 200  # the relay goes on
    restarted = int(launcher.expect(r"data started again \(pid (\d+)\)").group(1))
    launcher.pids.append(restarted)
    wait_for(lambda: serving(launcher.data_port), timeout=30)

    os.killpg(launcher.process.pid, signal.SIGINT)  # Ctrl-C in the terminal

    assert launcher.process.wait(30) == 0
    launcher.expect(r"claudemon stopped\.")
    for pid in [restarted, *(p for name, p in pids.items() if name != "data")]:
        assert not alive(pid), pid


def test_a_second_run_says_claudemon_is_already_running_and_starts_nothing(
    launch, tmp_path
):
    first = launch()
    pids = processes(first)
    wait_for(lambda: serving(first.core_port) and serving(first.data_port))

    same = launch(tmp_path / "run0", ports=(first.core_port, first.data_port))
    other_db = launch(ports=(first.core_port, first.data_port))

    assert same.process.wait(60) == 1
    assert other_db.process.wait(60) == 1
    running = f"claudemon is already running on http://127.0.0.1:{first.core_port}"
    assert running in same.said() and "on the same database" in same.said()
    assert running in other_db.said()
    for second in (same, other_db):
        assert "Processes:" not in second.said()  # no second indexer or rollups
    assert all(alive(pid) for pid in pids.values())
    assert relayed(first.core_port) == 200


def test_it_names_another_program_holding_its_port(launch):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        launcher = launch(ports=(port, free_port()))
        assert launcher.process.wait(60) == 1

    said = launcher.said()
    assert f"port {port} (CLAUDEMON_CORE_PORT) is in use by pid {os.getpid()}" in said


def stops_cleanly(launcher: Launcher, pids: dict[str, int]) -> None:
    launcher.expect(r"claudemon stopped\.", timeout=30)
    wait_for(lambda: not any(alive(pid) for pid in pids.values()), timeout=30)


def test_it_stops_everything_on_sigterm_to_the_launcher(launcher):
    pids = processes(launcher)
    wait_for(lambda: serving(launcher.core_port))

    os.kill(launcher.process.pid, signal.SIGTERM)

    assert launcher.process.wait(30) == 0
    stops_cleanly(launcher, pids)


def test_it_stops_everything_on_sigterm_to_make(launch, tmp_path):
    stamp = tmp_path / "deps-installed"
    stamp.touch()  # newer than requirements.txt: make installs nothing
    make = ["make", "-s", "run", f"PY={sys.executable}", f"RUN_STAMP={stamp}"]
    launcher = launch(command=make)
    pids = processes(launcher)
    wait_for(lambda: serving(launcher.core_port))

    os.kill(launcher.process.pid, signal.SIGTERM)  # make's pid: it passes it on

    launcher.process.wait(30)
    stops_cleanly(launcher, pids)
