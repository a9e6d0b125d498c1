"""`python -m claudemon` (what `make run` calls): migrate, then run every process.

Starts the relay (core) and the data deployment under daphne, the transcript
indexer and the stats rollups in --watch mode, prints where they listen, and
stops them all on Ctrl-C.
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
    daphne = [sys.executable, "-m", "daphne", "-b", bind]
    children = {
        "relay": _start(daphne + ["-p", str(settings.CLAUDEMON_CORE_PORT)], "core"),
        "data": _start(daphne + ["-p", str(settings.CLAUDEMON_DATA_PORT)], "data"),
        "indexer": _start(manage[1:] + ["reindex", "--watch", "--quiet"], "data"),
        # Stats rollups built ahead of reads: no page pays for a first fill.
        "rollups": _start(manage[1:] + ["rollup", "--watch"], "data"),
    }
    host = f"[{bind}]" if ":" in bind else bind
    print(
        f"\nclaudemon is running.\n"
        f"  relay      http://{host}:{settings.CLAUDEMON_CORE_PORT}  -> "
        f"{settings.CLAUDEMON_UPSTREAM_URL}\n"
        f"  dashboard  http://{host}:{settings.CLAUDEMON_DATA_PORT}/\n\n"
        f"Point Claude Code at the relay:\n"
        f"  ANTHROPIC_BASE_URL=http://{host}:{settings.CLAUDEMON_CORE_PORT} claude\n\n"
        f"Press Ctrl-C to stop.\n",
        flush=True,
    )
    return _supervise(children)


def _start(command: list[str], deployment: str) -> subprocess.Popen:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=f"claudemon.settings.{deployment}")
    if command[0] != sys.executable:
        command = [sys.executable, *command]
    if "daphne" in command:
        command = [*command, "claudemon.asgi:application"]
    # Own process group: Ctrl-C reaches us once and we stop the children in order.
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)


def _supervise(children: dict[str, subprocess.Popen]) -> int:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(
                    f"claudemon: the {name} process exited ({child.returncode}); "
                    "stopping the others.",
                    file=sys.stderr,
                    flush=True,
                )
                stopping, code = True, 1
                break
        time.sleep(0.2)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    print("claudemon stopped.", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
