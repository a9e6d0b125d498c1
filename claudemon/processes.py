"""The launcher's processes: start, supervise and stop them; find who holds a port.

Used by `python -m claudemon` (make run) and `python -m claudemon team` alike.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parent.parent
FRONT_CONFIG = ROOT / "deploy" / "haproxy.cfg"


def front_config(*, relays: list[str], path: Path) -> Path:
    """Write deploy/haproxy.cfg to `path` with one server line per relay (host:port).

    HAProxy reads the rest from CLAUDEMON_* variables itself; a variable number of
    servers is the one thing it cannot take from its environment.
    """
    servers = "".join(f"    server {relay} {relay}\n" for relay in relays)
    text = FRONT_CONFIG.read_text()
    marker = next(line for line in text.splitlines(True) if "# @relays" in line)
    path.write_text(text.replace(marker, servers))
    return path


def port_free(bind: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family) as probe:
        # As daphne binds: a port left in TIME_WAIT by a stopped run is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind, port))
        except OSError:
            return False
    return True


def port_holder(url: str, port: int, setting: str) -> str:
    """Name what holds a port: a claudemon (it answers /health), else the process."""
    probe = url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")
    try:
        with urlopen(f"{probe}/health", timeout=2) as answer:
            health = json.loads(answer.read())
        if isinstance(health, dict) and "version" in health and "database" in health:
            return f"claudemon is already running on {url}; stop it first."
    except (OSError, ValueError):
        pass
    holder = _listener(port)
    return (
        f"port {port} ({setting}) is in use by {holder or 'another program'}; "
        f"stop it or set {setting} to a free port."
    )


def _listener(port: int) -> str:
    """Return 'pid N (command)' of the process listening on a TCP port ('' if that
    cannot be seen: not Linux, or another user's process)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for fields in (line.split() for line in lines):
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) in inodes:
                pid = fd.parent.parent.name
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
                words = command.replace(b"\0", b" ").decode(errors="replace")
                return f"pid {pid} ({words.strip()[:80]})"
        except OSError:
            continue
    return ""


# A child that ran this long before exiting is restarted at once; one that keeps
# failing sooner waits 1, 2, 4 ... up to 30 s between attempts.
_HEALTHY_AFTER = 60.0
_MAX_PAUSE = 30.0


class Child:
    """One supervised process: how to start it, and when to start it again."""

    process: subprocess.Popen  # set by start(), which the launcher calls first

    def __init__(self, name: str, command: list[str], deployment: str = "") -> None:
        self.name = name
        if command[0].endswith(".py"):  # manage.py
            command = [sys.executable, *command]
        if "claudemon.serve" in command:
            command = [*command, "claudemon.asgi:application"]
        self.command = command
        self.env = dict(os.environ)
        if deployment:  # a Django process (not the front door)
            self.env["DJANGO_SETTINGS_MODULE"] = f"claudemon.settings.{deployment}"
        self.started = 0.0
        self.failures = 0
        self.restart_at: float | None = None

    def start(self) -> None:
        # Own process group: Ctrl-C reaches us once and we stop the children.
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, start_new_session=True
        )
        self.started = time.monotonic()
        self.restart_at = None

    def tend(self) -> None:
        """Notice an exit and schedule, or perform, the restart."""
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.start()
                print(
                    f"claudemon: {self.name} started again (pid {self.process.pid}).",
                    flush=True,
                )
            return
        if self.process.poll() is None:
            return
        ran = now - self.started
        self.failures = 0 if ran >= _HEALTHY_AFTER else self.failures + 1
        pause = min(_MAX_PAUSE, 2 ** (self.failures - 1)) if self.failures else 0.0
        self.restart_at = now + pause
        print(
            f"claudemon: the {self.name} process exited "
            f"({self.process.returncode}) after {ran:.0f} s; starting it again"
            + (f" in {pause:.0f} s" if pause else "")
            + "; the others go on.",
            file=sys.stderr,
            flush=True,
        )

    def stop(self) -> None:
        if self.restart_at is None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, deadline: float) -> None:
        try:
            self.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def supervise(children: list[Child], stop: threading.Event) -> int:
    """Keep the children running until `stop` is set, then stop them all."""
    while not stop.is_set():
        for child in children:
            child.tend()
        time.sleep(0.2)
    for child in children:
        child.stop()
    deadline = time.monotonic() + 10
    for child in children:
        child.wait(deadline)
    print("claudemon stopped.", flush=True)
    return 0
