"""Writes about the data side's workers: the heartbeats /ready reads."""

from __future__ import annotations

import json
import os
import threading
import time

from apps.dashboard.selectors.readiness import worker_heartbeat_path

HEARTBEAT_EVERY = 5.0


def worker_heartbeat_start(*, name: str) -> threading.Thread:
    """Rewrite this worker's heartbeat file every HEARTBEAT_EVERY seconds, from a
    thread of its own for as long as the process lives.

    A thread, not the worker's loop: an indexer pass may rightly take minutes, and
    the rollups sleep a minute between passes; /ready asks whether they run.
    """

    def beat() -> None:
        while True:
            time.sleep(HEARTBEAT_EVERY)
            try:
                worker_heartbeat_write(name=name)
            except OSError:  # var/ away for a moment: the next beat tries again
                pass

    worker_heartbeat_write(name=name)  # at once: /ready must not wait for a beat
    thread = threading.Thread(target=beat, name=f"heartbeat-{name}", daemon=True)
    thread.start()
    return thread


def worker_heartbeat_write(*, name: str) -> None:
    """Write one heartbeat of this process as the worker `name` (owner-only)."""
    path = worker_heartbeat_path(name=name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    beat = {"pid": os.getpid(), "at": time.time(), "every": HEARTBEAT_EVERY}
    fresh = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(beat, handle)
    os.replace(fresh, path)  # readers never see half a file
