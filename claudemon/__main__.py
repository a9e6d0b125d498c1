"""`python -m claudemon` (what `make run` calls): migrate, then run every process.

Starts the relay (core) and the data deployment under daphne, the transcript
indexer and the stats rollups in --watch mode, prints where they listen, and
stops them all on Ctrl-C. A process that exits on its own is started again (after
a pause that grows while it keeps failing) and the others go on: the relay keeps
relaying whatever happens to the data side.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claudemon.settings.data")
    import django
    from django.conf import settings

    django.setup()
    manage = [sys.executable, str(ROOT / "manage.py")]
    for step in (["migrate", "--noinput", "-v", "0"], ["ensure_admin"]):
        if subprocess.call(manage + step, cwd=ROOT) != 0:
            return 1
    bind = settings.CLAUDEMON_BIND
    daphne = [sys.executable, "-m", "claudemon.serve", "-b", bind]
    children = [
        Child("relay", daphne + ["-p", str(settings.CLAUDEMON_CORE_PORT)], "core"),
        Child("data", daphne + ["-p", str(settings.CLAUDEMON_DATA_PORT)], "data"),
        Child("indexer", manage[1:] + ["reindex", "--watch", "--quiet"], "data"),
        # Stats rollups built ahead of reads: no page pays for a first fill.
        Child("rollups", manage[1:] + ["rollup", "--watch"], "data"),
    ]
    for child in children:
        child.start()
    host = f"[{bind}]" if ":" in bind else bind
    print(
        f"\nclaudemon is running.\n"
        f"  relay      http://{host}:{settings.CLAUDEMON_CORE_PORT}  -> "
        f"{settings.CLAUDEMON_UPSTREAM_URL}\n"
        f"  dashboard  http://{host}:{settings.CLAUDEMON_DATA_PORT}/\n\n"
        f"Point Claude Code at the relay:\n"
        f"  ANTHROPIC_BASE_URL=http://{host}:{settings.CLAUDEMON_CORE_PORT} claude\n\n"
        f"Processes: "
        + ", ".join(f"{child.name} (pid {child.process.pid})" for child in children)
        + "\nPress Ctrl-C to stop.\n",
        flush=True,
    )
    return _supervise(children)


# A child that ran this long before exiting is restarted at once; one that keeps
# failing sooner waits 1, 2, 4 ... up to 30 s between attempts.
_HEALTHY_AFTER = 60.0
_MAX_PAUSE = 30.0


class Child:
    """One supervised process: how to start it, and when to start it again."""

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
        self.process: subprocess.Popen | None = None
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
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping:
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
