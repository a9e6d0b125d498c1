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
    def __init__(self, tmp_path: Path, upstream_url: str) -> None:
        self.core_port, self.data_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDEMON_")}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        (tmp_path / "claude").mkdir()
        env.update(
            CLAUDEMON_DB_PATH=str(tmp_path / "db.sqlite3"),
            CLAUDEMON_VAR_DIR=str(tmp_path / "var"),
            CLAUDEMON_CORE_PORT=str(self.core_port),
            CLAUDEMON_DATA_PORT=str(self.data_port),
            CLAUDEMON_UPSTREAM_URL=upstream_url,
            CLAUDEMON_CLAUDE_DIRS=str(tmp_path / "claude"),
            PYTHONUNBUFFERED="1",
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "claudemon"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

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
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


@pytest.fixture
def launcher(tmp_path):
    upstream = FakeAnthropic().start()
    started = Launcher(tmp_path, upstream.url)
    yield started
    started.stop()
    upstream.stop()


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


def serving(port: int) -> bool:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def test_it_runs_everything_restarts_the_data_side_and_stops_on_ctrl_c(launcher):
    launcher.expect(rf"ANTHROPIC_BASE_URL=http://127\.0\.0\.1:{launcher.core_port}")
    pids = dict(
        re.findall(r"(\w+) \(pid (\d+)\)", launcher.expect(r"^Processes: .*").string)
    )
    assert set(pids) == {"relay", "data", "indexer", "rollups"}
    wait_for(lambda: serving(launcher.core_port) and serving(launcher.data_port))
    assert relayed(launcher.core_port) == 200

    os.kill(int(pids["data"]), signal.SIGKILL)  # the dashboard dies

    launcher.expect(r"the data process exited")
    assert relayed(launcher.core_port) == 200  # the relay goes on
    restarted = int(launcher.expect(r"data started again \(pid (\d+)\)").group(1))
    wait_for(lambda: serving(launcher.data_port), timeout=30)

    os.killpg(launcher.process.pid, signal.SIGINT)  # Ctrl-C in the terminal

    assert launcher.process.wait(30) == 0
    launcher.expect(r"claudemon stopped\.")
    for pid in [restarted, *(int(p) for name, p in pids.items() if name != "data")]:
        assert not alive(pid), pid
