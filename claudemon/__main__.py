"""`python -m claudemon` (what `make run` calls): migrate, then run every process.

Starts the relay (core) and the data deployment under daphne, the transcript
indexer and the stats rollups in --watch mode, prints where they listen, and
stops them all on Ctrl-C or SIGTERM (make passes its SIGTERM on). A process that
exits on its own is started again (after a pause that grows while it keeps
failing) and the others go on: the relay keeps relaying whatever happens to the
data side.

It starts nothing when a setting is bad (one line naming it), when another
launcher runs on the same database (a lock beside the database file), or when a
port is taken (naming the claudemon or the process that holds it).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claudemon.settings.data")
    _stop_on_signals()  # from here on Ctrl-C and SIGTERM stop us cleanly
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except ImproperlyConfigured as exc:  # a bad setting: one line, no traceback
        print(f"claudemon: {exc}", file=sys.stderr)
        return 2
    refusal = _already_running(settings)
    if refusal:
        print(f"claudemon: {refusal}", file=sys.stderr)
        return 1
    manage = [sys.executable, str(ROOT / "manage.py")]
    for step in (
        ["migrate", "--noinput", "-v", "0"],
        ["ensure_admin"],
        # A database from before the usage ledger: derive it once.
        ["ledger", "--rebuild", "--if-empty"],
    ):
        if _stop.is_set() or subprocess.call(manage + step, cwd=ROOT) != 0:
            return 0 if _stop.is_set() else 1
    children = _children(settings, manage)
    for child in children:
        child.start()
    _announce(settings, children)
    return _supervise(children)


_stop = threading.Event()  # set by Ctrl-C or SIGTERM, whenever they come


def _stop_on_signals() -> None:
    def stop(signum: int, frame: object) -> None:
        _stop.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def _children(settings: Any, manage: list[str]) -> list[Child]:
    daphne = [sys.executable, "-m", "claudemon.serve", "-b", settings.CLAUDEMON_BIND]
    return [
        Child("relay", daphne + ["-p", str(settings.CLAUDEMON_CORE_PORT)], "core"),
        Child("data", daphne + ["-p", str(settings.CLAUDEMON_DATA_PORT)], "data"),
        Child("indexer", manage[1:] + ["reindex", "--watch", "--quiet"], "data"),
        # Stats rollups built ahead of reads: no page pays for a first fill.
        Child("rollups", manage[1:] + ["rollup", "--watch"], "data"),
    ]


def _announce(settings: Any, children: list[Child]) -> None:
    relay, dashboard = _urls(settings)
    upstream = urlsplit(settings.CLAUDEMON_UPSTREAM_URL)
    upstream = upstream._replace(netloc=upstream.netloc.rpartition("@")[2]).geturl()
    print(
        f"\nclaudemon is running.\n"
        f"  relay      {relay}  -> {upstream}\n"
        f"  dashboard  {dashboard}/\n\n"
        f"Point Claude Code at the relay:\n"
        f"  ANTHROPIC_BASE_URL={relay} claude\n\n"
        f"Processes: "
        + ", ".join(f"{child.name} (pid {child.process.pid})" for child in children)
        + "\nPress Ctrl-C to stop.\n",
        flush=True,
    )


def _urls(settings: Any) -> tuple[str, str]:
    """Return the relay's and the dashboard's base URLs."""
    bind = settings.CLAUDEMON_BIND
    host = f"[{bind}]" if ":" in bind else bind
    return (
        f"http://{host}:{settings.CLAUDEMON_CORE_PORT}",
        f"http://{host}:{settings.CLAUDEMON_DATA_PORT}",
    )


# --- one claudemon at a time ---------------------------------------------------

_instance_lock = None  # held open, and locked, for as long as this launcher runs


def _already_running(settings: Any) -> str:
    """Say why starting would be pointless: another launcher on this database, or
    the ports taken (by a claudemon or any other program); '' if it is not."""
    global _instance_lock
    relay, dashboard = _urls(settings)
    path = Path(f"{settings.CLAUDEMON_DB_PATH}-launcher.lock")
    handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        running = handle.read().strip() or "(no details)"
        handle.close()
        return f"claudemon is already running {running}, on the same database."
    handle.truncate()
    handle.write(f"on {relay} and {dashboard} (launcher pid {os.getpid()})")
    handle.flush()
    _instance_lock = handle
    bind = settings.CLAUDEMON_BIND
    for url, port, name in (
        (relay, settings.CLAUDEMON_CORE_PORT, "CLAUDEMON_CORE_PORT"),
        (dashboard, settings.CLAUDEMON_DATA_PORT, "CLAUDEMON_DATA_PORT"),
    ):
        if not _port_free(bind, port):
            return _port_holder(url, port, name)
    return ""


def _port_free(bind: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family) as probe:
        # As daphne binds: a port left in TIME_WAIT by a stopped run is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind, port))
        except OSError:
            return False
    return True


def _port_holder(url: str, port: int, setting: str) -> str:
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

    def __init__(self, name: str, command: list[str], deployment: str) -> None:
        self.name = name
        if command[0] != sys.executable:
            command = [sys.executable, *command]
        if "claudemon.serve" in command:
            command = [*command, "claudemon.asgi:application"]
        self.command = command
        self.env = dict(
            os.environ, DJANGO_SETTINGS_MODULE=f"claudemon.settings.{deployment}"
        )
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


def _supervise(children: list[Child]) -> int:
    while not _stop.is_set():
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


if __name__ == "__main__":
    sys.exit(main())
