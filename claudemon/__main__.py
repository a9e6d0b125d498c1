"""`python -m claudemon` (what `make run` calls): migrate, then run every process.

Starts the relay (core) and the data deployment under daphne, the transcript
indexer and the stats rollups in --watch mode, prints where they listen, and
stops them all on Ctrl-C or SIGTERM (make passes its SIGTERM on). A process that
exits on its own is started again (after a pause that grows while it keeps
failing) and the others go on: the relay keeps relaying whatever happens to the
data side.

`python -m claudemon team` (what `make team` calls) is the same on one machine for
a team's trial: CLAUDEMON_TEAM_RELAYS relays on 127.0.0.1 from port
CLAUDEMON_TEAM_RELAY_PORT on, the data side under CLAUDEMON_DATA_PREFIX, and HAProxy
(deploy/haproxy.cfg) in front on CLAUDEMON_FRONT_PORT: one address for Claude Code
and the dashboard. Migrations run once, before any of them starts.

It starts nothing when a setting is bad (one line naming it), when another
launcher runs on the same database (a lock beside the database file), or when a
port is taken (naming the claudemon or the process that holds it).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from claudemon.processes import (
    Child,
    front_config,
    port_free,
    port_holder,
    supervise,
)

ROOT = Path(__file__).resolve().parent.parent
USAGE = "usage: python -m claudemon [team]"


def main() -> int:
    if sys.argv[1:] not in ([], ["team"]):
        print(USAGE, file=sys.stderr)
        return 2
    team = sys.argv[1:] == ["team"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claudemon.settings.data")
    if team:  # the data side behind the front door; the launcher's own settings too
        os.environ.setdefault("CLAUDEMON_DATA_PREFIX", "/claudemon")
    _stop_on_signals()  # from here on Ctrl-C and SIGTERM stop us cleanly
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except ImproperlyConfigured as exc:  # a bad setting: one line, no traceback
        print(f"claudemon: {exc}", file=sys.stderr)
        return 2
    refusal = _already_running(settings, team=team)
    if refusal:
        print(f"claudemon: {refusal}", file=sys.stderr)
        return 1
    manage = [sys.executable, str(ROOT / "manage.py")]
    # Once, here, before any process that uses the database starts.
    for step in (
        ["migrate", "--noinput", "-v", "0"],
        ["ensure_admin"],
        # A database from before the usage ledger: derive it once.
        ["ledger", "--rebuild", "--if-empty"],
    ):
        if _stop.is_set() or subprocess.call(manage + step, cwd=ROOT) != 0:
            return 0 if _stop.is_set() else 1
    children = (_team if team else _children)(settings, manage)
    for child in children:
        child.start()
    (_announce_team if team else _announce)(settings, children)
    return supervise(children, _stop)


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
        *_workers(manage),
    ]


def _workers(manage: list[str]) -> list[Child]:
    return [
        Child("indexer", manage[1:] + ["reindex", "--watch", "--quiet"], "data"),
        # Stats rollups built ahead of reads: no page pays for a first fill.
        Child("rollups", manage[1:] + ["rollup", "--watch"], "data"),
    ]


def _team(settings: Any, manage: list[str]) -> list[Child]:
    """Relays x N and the data side on loopback, the workers, HAProxy in front."""
    daphne = [sys.executable, "-m", "claudemon.serve", "-b", "127.0.0.1"]
    ports = _relay_ports(settings)
    relays = [
        Child(f"relay-{number}", daphne + ["-p", str(port)], "core")
        for number, port in enumerate(ports, start=1)
    ]
    for relay, port in zip(relays, ports, strict=True):
        relay.env["CLAUDEMON_CORE_PORT"] = str(port)  # and so its name, host:port
    data = Child("data", daphne + ["-p", str(settings.CLAUDEMON_DATA_PORT)], "data")
    config = front_config(
        relays=[f"127.0.0.1:{port}" for port in ports],
        path=settings.CLAUDEMON_VAR_DIR / "haproxy.cfg",
    )
    haproxy = shutil.which("haproxy") or "haproxy"
    front = Child("front", [haproxy, "-db", "-f", str(config)])
    front.env.update(
        CLAUDEMON_BIND=settings.CLAUDEMON_BIND,
        CLAUDEMON_FRONT_PORT=str(settings.CLAUDEMON_FRONT_PORT),
        CLAUDEMON_DATA_UPSTREAM=f"127.0.0.1:{settings.CLAUDEMON_DATA_PORT}",
        CLAUDEMON_DATA_PREFIX=settings.CLAUDEMON_DATA_PREFIX,
    )
    return [*relays, data, *_workers(manage), front]


def _relay_ports(settings: Any) -> list[int]:
    first = settings.CLAUDEMON_TEAM_RELAY_PORT
    return list(range(first, first + settings.CLAUDEMON_TEAM_RELAYS))


def _announce(settings: Any, children: list[Child]) -> None:
    relay, dashboard = _urls(settings)
    print(
        f"\nclaudemon is running.\n"
        f"  relay      {relay}  -> {_upstream(settings)}\n"
        f"  dashboard  {dashboard}/\n\n"
        f"Point Claude Code at the relay:\n"
        f"  ANTHROPIC_BASE_URL={relay} claude\n\n" + _processes(children),
        flush=True,
    )


def _announce_team(settings: Any, children: list[Child]) -> None:
    front = _url(settings.CLAUDEMON_BIND, settings.CLAUDEMON_FRONT_PORT)
    ports = _relay_ports(settings)
    print(
        f"\nclaudemon (team) is running.\n"
        f"  front door {front}  -> {len(ports)} relays on 127.0.0.1:"
        f"{ports[0]}-{ports[-1]} -> {_upstream(settings)}\n"
        f"  dashboard  {front}{settings.CLAUDEMON_DATA_PREFIX}/\n\n"
        f"Point every developer's Claude Code at the front door:\n"
        f"  ANTHROPIC_BASE_URL={front} claude\n\n" + _processes(children),
        flush=True,
    )


def _upstream(settings: Any) -> str:
    upstream = urlsplit(settings.CLAUDEMON_UPSTREAM_URL)
    return upstream._replace(netloc=upstream.netloc.rpartition("@")[2]).geturl()


def _processes(children: list[Child]) -> str:
    started = (f"{child.name} (pid {child.process.pid})" for child in children)
    return "Processes: " + ", ".join(started) + "\nPress Ctrl-C to stop.\n"


def _url(bind: str, port: int) -> str:
    host = f"[{bind}]" if ":" in bind else bind
    return f"http://{host}:{port}"


def _urls(settings: Any) -> tuple[str, str]:
    """Return the relay's and the dashboard's base URLs."""
    bind = settings.CLAUDEMON_BIND
    return (
        _url(bind, settings.CLAUDEMON_CORE_PORT),
        _url(bind, settings.CLAUDEMON_DATA_PORT),
    )


# --- one claudemon at a time ---------------------------------------------------

_instance_lock = None  # held open, and locked, for as long as this launcher runs


def _already_running(settings: Any, *, team: bool) -> str:
    """Say why starting would be pointless: another launcher on this database, the
    ports taken (by a claudemon or any other program), or no HAProxy for a team;
    '' if it is not."""
    global _instance_lock
    listeners = _listeners(settings, team=team)
    path = Path(f"{settings.CLAUDEMON_DB_PATH}-launcher.lock")
    handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        running = handle.read().strip() or "(no details)"
        handle.close()
        return f"claudemon is already running {running}, on the same database."
    handle.truncate()
    urls = " and ".join(url for url, *_ in listeners[:2])
    handle.write(f"on {urls} (launcher pid {os.getpid()})")
    handle.flush()
    _instance_lock = handle
    for url, bind, port, name in listeners:
        if not port_free(bind, port):
            return port_holder(url, port, name)
    if team and not shutil.which("haproxy"):
        return "haproxy is not installed (Debian: apt-get install haproxy); see README."
    return ""


def _listeners(settings: Any, *, team: bool) -> list[tuple[str, str, int, str]]:
    """Return (url, bind, port, setting) for every port this launch will listen on."""
    bind = settings.CLAUDEMON_BIND
    if not team:
        relay, dashboard = _urls(settings)
        return [
            (relay, bind, settings.CLAUDEMON_CORE_PORT, "CLAUDEMON_CORE_PORT"),
            (dashboard, bind, settings.CLAUDEMON_DATA_PORT, "CLAUDEMON_DATA_PORT"),
        ]
    front = settings.CLAUDEMON_FRONT_PORT
    data = settings.CLAUDEMON_DATA_PORT
    return [
        (_url(bind, front), bind, front, "CLAUDEMON_FRONT_PORT"),
        (_url("127.0.0.1", data), "127.0.0.1", data, "CLAUDEMON_DATA_PORT"),
        *(
            (_url("127.0.0.1", port), "127.0.0.1", port, "CLAUDEMON_TEAM_RELAY_PORT")
            for port in _relay_ports(settings)
        ),
    ]


if __name__ == "__main__":
    sys.exit(main())
