"""The routes in force: the routes file re-read when it or an agent file changes.

Invariants:
- A file that does not validate never replaces routes that did: at start it stops
  the process (ImproperlyConfigured naming file, line and field); later, the last
  good routes stay in force and the error is kept for /health.
- The file (and the agent definitions its rules name) is checked for changes at
  most every `reload_interval` seconds, or at the next call after a SIGHUP.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from apps.proxy.routing.config import Routes, RoutesError, routes_load
from apps.proxy.routing.providers import providers_health


class RoutesFile:
    """The routes in force, re-read when the file or an agent definition changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.routes = routes_load(path)  # raises: a bad file stops the start
        self.error = ""
        self.loaded_at = datetime.now(UTC)
        self._signature = self._stat()
        self._next_check = time.monotonic() + self.routes.reload_interval
        self._hup = False
        self._lock = threading.Lock()

    def current(self) -> Routes:
        """The routes to use now (the hot path: one clock read when nothing is due)."""
        if self._hup or time.monotonic() >= self._next_check:
            self.check()
        return self.routes

    def hangup(self) -> None:
        self._hup = True

    def check(self) -> None:
        """Reload if the file or the agent definitions changed since the last load."""
        if not self._lock.acquire(blocking=False):
            return  # another thread is checking: use the routes in force
        try:
            forced, self._hup = self._hup, False
            self._next_check = time.monotonic() + self.routes.reload_interval
            signature = self._stat()
            if signature == self._signature and not forced:
                return
            self._signature = signature
            try:
                self.routes = routes_load(self.path)
            except RoutesError as exc:
                self.error = str(exc)
                return
            self.error = ""
            self.loaded_at = datetime.now(UTC)
        finally:
            self._lock.release()

    def _stat(self) -> tuple:
        """Sizes and mtimes of the routes file and the agent definitions it uses."""
        files = [self.path]
        if any(rule.agent not in (None, "*") for rule in self.routes.rules):
            for folder in self.routes.agent_dirs:
                files += sorted(folder.glob("*.md")) if folder.is_dir() else []
        stamps: list[tuple[str, int | None, int | None]] = []
        for file in files:
            try:
                stat = file.stat()
                stamps.append((str(file), stat.st_mtime_ns, stat.st_size))
            except OSError:
                stamps.append((str(file), None, None))
        return tuple(stamps)


_live: RoutesFile | None = None


def routes_start(path_setting: str) -> None:
    """Load the routes file at start (a bad file stops the process) and watch SIGHUP."""
    global _live
    if not path_setting:
        _live = None
        return
    try:
        _live = RoutesFile(Path(path_setting).expanduser())
    except RoutesError as exc:
        raise ImproperlyConfigured(f"CLAUDEMON_ROUTES_FILE: {exc}") from exc
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGHUP, _hangup)


def _hangup(signum: int, frame: object) -> None:
    """Re-read the routes at the next check (kill -HUP)."""
    if _live is not None:
        _live.hangup()


def routes_live() -> RoutesFile | None:
    """The process's routes file, or None when routing is not configured."""
    return _live


def routing_health() -> dict:
    """The routes file's state and each provider's last call ({} without routing)."""
    if _live is None:
        return {}
    routes = _live.current()  # an edit made while no call came is reported too
    return {
        "routes": {
            "file": str(_live.path),
            "rules": len(routes.rules),
            "loaded_at": _live.loaded_at.isoformat(timespec="seconds"),
            "error": _live.error,
        },
        "providers": providers_health(routes.providers),
    }
