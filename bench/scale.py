#!/usr/bin/env python
"""Measure claudemon at a team's scale: direct, one relay, two relays behind HAProxy,
each on PostgreSQL and on SQLite.

The fake upstream (tests/fake_upstream.py) and this load generator share CPU 0; the
relays (daphne, as the launcher starts them) and HAProxy (deploy/haproxy.cfg, filled
in as the launcher fills it) share CPU 1. So two relays here have no more CPU than
one: what carries over to a bigger machine is what each part spends per call (the
relays, HAProxy, PostgreSQL's backends for this database, read from /proc) and how
fast each database takes the recorder's rows, which this prints. PostgreSQL is the
machine's server, not pinned. Prints figures; asserts nothing.

    .venv/bin/python bench/scale.py                 # both databases, about 3 minutes
    .venv/bin/python bench/scale.py --quick         # fewer samples
    .venv/bin/python bench/scale.py --postgres URL  # a server's maintenance database
                                                    # (default: local, user postgres)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.relay import (  # noqa: E402
    PY,
    ROOT,
    Connection,
    cpu_seconds,
    free_port,
    pct,
    start,
    start_fake,
    throughput,
)
from bench.storage import session_calls  # noqa: E402
from claudemon.processes import front_config  # noqa: E402

POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
RECORDED = "SELECT count(*) FROM proxy_exchange WHERE state <> 'in_progress'"
# A Claude Code call as the capacity model counts it: a request body of a session
# (bench/storage.py's: system prompt and tools of 50-80 KB plus the conversation)
# and an answer of this many events, each its own chunk, this far apart.
CALL_EVENTS, CALL_GAP_MS = 100, 10
# SQLite's busy timeout is 5 s (settings): a held write must not reach it, or the
# recorder's retry pauses would count as the database's time.
HOLD_SECONDS = 2.5


class Database:
    """The database under test: a SQLite file, or a PostgreSQL database of its own."""

    def __init__(self, kind: str, work: Path, server: str) -> None:
        self.kind, self.path = kind, work / "scale.sqlite3"
        self.env = {"CLAUDEMON_DB_PATH": str(self.path), "CLAUDEMON_DATABASE_URL": ""}
        self.url = ""
        if kind == "PostgreSQL":
            self.name = f"claudemon_scale_{os.getpid()}"
            self._admin(server, f'CREATE DATABASE "{self.name}"')
            self.server = server
            self.url = f"{server.rsplit('/', 1)[0]}/{self.name}"
            self.env["CLAUDEMON_DATABASE_URL"] = self.url

    @staticmethod
    def _admin(server: str, statement: str) -> None:
        with psycopg.connect(server, autocommit=True) as db:
            db.execute(statement)

    def recorded(self) -> int:
        """Count the exchanges written whole (not in progress)."""
        if self.url:
            with psycopg.connect(self.url, autocommit=True) as db:
                return db.execute(RECORDED).fetchone()[0]
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as db:
            return db.execute(RECORDED).fetchone()[0]

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the recorder's writes waiting (reads go on) until the block ends."""
        if self.url:
            with psycopg.connect(self.url) as db, db.transaction():
                db.execute("LOCK TABLE proxy_exchange IN EXCLUSIVE MODE")
                yield
            return
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("COMMIT")
            db.close()

    def backends(self) -> dict[int, float]:
        """CPU seconds of each PostgreSQL backend serving this database (SQLite: none,
        its writes run inside the relays)."""
        if not self.url:
            return {}
        with psycopg.connect(self.url, autocommit=True) as db:
            pids = db.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        return {pid: cpu for (pid,) in pids if (cpu := _cpu_or_none(pid)) is not None}

    def drop(self) -> None:
        if self.url:
            self._admin(self.server, f'DROP DATABASE "{self.name}" WITH (FORCE)')


def _cpu_or_none(pid: int) -> float | None:
    try:
        return cpu_seconds(pid)
    except OSError:  # gone, or another user's process this user cannot read
        return None


@dataclass
class Team:
    """Two relays and HAProxy in front of them, on one database."""

    relays: list[subprocess.Popen]
    ports: list[int]
    front: subprocess.Popen
    front_port: int
    database: Database

    def settle(self) -> None:
        """Wait until every relay has written everything it recorded."""
        deadline = time.monotonic() + 120
        while any(health(port)["recording_backlog"] for port in self.ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the relays' recording backlog did not drain")
            time.sleep(0.05)

    def quarantined(self) -> int:
        return sum(health(port)["quarantine"]["steps"] for port in self.ports)

    def stop(self) -> None:
        for process in [*self.relays, self.front]:
            process.terminate()
        for process in [*self.relays, self.front]:
            process.wait(10)


def health(port: int) -> dict:
    with urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
        return json.loads(answer.read())


def team_start(database: Database, fake_port: int, work: Path) -> Team:
    """Migrate once, then start two relays and HAProxy, as `make team` does."""
    env = {
        **database.env,
        "CLAUDEMON_VAR_DIR": str(work),
        "CLAUDEMON_UPSTREAM_URL": f"http://127.0.0.1:{fake_port}",
        "DJANGO_SETTINGS_MODULE": "claudemon.settings.core",
        # A held database must not spill the burst to disk (see drain()).
        "CLAUDEMON_BACKLOG_SIZE": "100000",
    }
    manage = [PY, "manage.py", "migrate", "-v", "0"]
    subprocess.run(manage, cwd=ROOT, check=True, env={**os.environ, **env})
    ports, front_port = [free_port(), free_port()], free_port()
    serve = [PY, "-m", "claudemon.serve", "-b", "127.0.0.1", "-p"]
    relays = [
        start(
            [*serve, str(port), "claudemon.asgi:application"], env=env, cpu=1, port=port
        )
        for port in ports
    ]
    config = front_config(
        relays=[f"127.0.0.1:{port}" for port in ports], path=work / "haproxy.cfg"
    )
    front_env = {
        "CLAUDEMON_BIND": "127.0.0.1",
        "CLAUDEMON_FRONT_PORT": str(front_port),
        "CLAUDEMON_DATA_UPSTREAM": f"127.0.0.1:{free_port()}",  # no data side here
        "CLAUDEMON_DATA_PREFIX": "/claudemon",
    }
    command = ["haproxy", "-db", "-f", str(config)]
    front = start(command, env=front_env, cpu=1, port=front_port)
    team = Team(relays, ports, front, front_port, database)
    # Each relay's recorder starts now (its first /health), so its start-up
    # clean-up is not among the measured calls.
    team.settle()
    return team


# --- load ----------------------------------------------------------------------


class Sessions:
    """Claude Code request bodies: each worker runs sessions of its own, one call at a
    time, made from a few generated sessions under fresh session ids."""

    def __init__(self, templates: int, calls: int) -> None:
        self.templates = [
            [body for _, _, body, _ in session_calls(calls=calls, seed=seed)]
            for seed in range(templates)
        ]

    def calls(self, worker: int) -> Iterator[tuple[bytes, str]]:
        """Yield (body, extra request headers) of the worker's calls, forever."""
        template = self.templates[worker % len(self.templates)]
        while True:
            headers = (
                f"x-claude-code-session-id: {uuid.uuid4()}\r\n"
                "user-agent: claude-cli/2.1.197 (external, cli)\r\n"
            )
            for body in template:
                yield body, headers


async def first_events(
    port: int, count: int, sessions: Sessions | None = None
) -> list[float]:
    """Milliseconds to the first event, one stream of 10 events 20 ms apart at a time
    (so no queueing behind other streams counts): the bench's small body, or
    Claude Code bodies."""
    conn, out = Connection(port), []
    calls = sessions.calls(0) if sessions else None
    for _ in range(count):
        body, headers = next(calls) if calls else (None, "")
        extra = {"body": body} if body else {}
        stream = await conn.stream(10, 20, headers=headers, **extra)
        out.append(stream.first * 1000)
    conn.close()
    return out


async def load(
    ports: list[int],
    sessions: Sessions | None,
    *,
    workers: int,
    events: int,
    gap_ms: int,
    calls: int = 0,
    seconds: float = 0,
) -> int:
    """Run `workers` connections spread over `ports`, each making `calls` calls in
    turn (or calling until `seconds` pass); return how many calls were made."""
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(number: int) -> None:
        nonlocal done
        conn = Connection(ports[number % len(ports)])
        source = sessions.calls(number) if sessions else None
        made = 0
        while made < calls if calls else time.perf_counter() < stop_at:
            body, headers = next(source) if source else (None, "")
            extra = {"body": body} if body else {}
            await conn.stream(events, gap_ms, headers=headers, **extra)
            made += 1
        done += made
        conn.close()

    await asyncio.gather(*(worker(number) for number in range(workers)))
    return done


# --- measuring -------------------------------------------------------------------


def cpu_per_call(
    team: Team, relays: list[int], front: bool, run: Callable[[], int]
) -> dict[str, float]:
    """CPU seconds per call (or per whatever `run` counts) of the relays in use,
    HAProxy and PostgreSQL's backends, recordings included."""
    team.settle()
    pids = [team.relays[index].pid for index in relays]
    before = (
        sum(map(cpu_seconds, pids)),
        cpu_seconds(team.front.pid),
        team.database.backends(),
    )
    count = run()
    time.sleep(0.3)  # past the recorder's 200 ms batching window
    team.settle()
    backends = team.database.backends()
    return {
        "relays": (sum(map(cpu_seconds, pids)) - before[0]) / count,
        "front": (cpu_seconds(team.front.pid) - before[1]) / count if front else 0.0,
        "database": sum(cpu - before[2].get(pid, 0.0) for pid, cpu in backends.items())
        / count,
    }


def measure_entry(
    team: Team, port: int, relays: list[int], sessions: Sessions, quick: bool
) -> dict[str, float]:
    """Latency, throughput and CPU per call through one entry (a relay, the front)."""
    front = port == team.front_port
    # Warm up: the first calls of a process pay for imports and connections.
    asyncio.run(load([port], sessions, workers=4, calls=5, events=10, gap_ms=0))
    asyncio.run(load([port], None, workers=4, calls=5, events=10, gap_ms=0))
    out = entry_latency(port, sessions, quick)
    out["streams_per_s"] = asyncio.run(throughput(port, 64, 2 if quick else 4))
    rounds = 1 if quick else 2

    def events() -> int:
        small = load([port], None, workers=16, calls=rounds, events=50, gap_ms=20)
        return asyncio.run(small) * 50

    def calls() -> int:
        calls = load(
            [port], sessions, workers=16, calls=rounds,
            events=CALL_EVENTS, gap_ms=CALL_GAP_MS,
        )  # fmt: skip
        return asyncio.run(calls)

    for name, run in (("event", events), ("call", calls)):
        cpu = cpu_per_call(team, relays, front, run)
        out.update({f"cpu_{name}_{part}": value for part, value in cpu.items()})
    out.update(burst(team, [port], sessions, seconds=1.5 if quick else 3))
    print(f"  measured {team.database.kind}, port {port}", file=sys.stderr, flush=True)
    return out


def entry_latency(port: int, sessions: Sessions, quick: bool) -> dict[str, float]:
    small = asyncio.run(first_events(port, 10 if quick else 30))
    large = asyncio.run(first_events(port, 5 if quick else 15, sessions))
    return {"first_small": pct(small, 50), "first_cc": pct(large, 50)}


def burst(
    team: Team, ports: list[int], sessions: Sessions, *, seconds: float
) -> dict[str, float]:
    """Claude Code calls (20 events, no pauses) from 64 connections for `seconds`:
    calls relayed per second, and how long after the last one all are recorded."""
    team.settle()
    before = team.database.recorded()
    started = time.perf_counter()
    made = asyncio.run(
        load(ports, sessions, workers=64, events=20, gap_ms=0, seconds=seconds)
    )
    ended = time.perf_counter()
    written = wait_recorded(team, before + made)
    return {
        "burst_calls_per_s": made / (ended - started),
        "burst_lag_s": written - ended,
        "burst_recorded_per_s": made / (written - started),
    }


def wait_recorded(team: Team, count: int) -> float:
    """Return the moment `count` exchanges are written, or the relays hold nothing
    more (a step set aside never makes its row)."""
    while team.database.recorded() < count:
        if not any(health(port)["recording_backlog"] for port in team.ports):
            break
        time.sleep(0.02)
    return time.perf_counter()


def drain(team: Team, relays: list[int], sessions: Sessions) -> dict[str, float]:
    """Recorder rows per second into the database: a burst straight to the relays
    while the database holds their writes, then the time to write it all; and
    where each writer thread's time went per row."""
    team.settle()
    ports = [team.ports[index] for index in relays]
    pids = [team.relays[index].pid for index in relays]
    before = team.database.recorded()
    with team.database.hold():
        made = asyncio.run(
            load(ports, sessions, workers=64, events=20, gap_ms=0, seconds=HOLD_SECONDS)
        )
        writers, backends = recorder_times(pids), team.database.backends()
        released = time.perf_counter()
    written = wait_recorded(team, before + made)
    took = written - released
    ran, queued = (a - b for a, b in zip(recorder_times(pids), writers, strict=True))
    database_cpu = sum(
        cpu - backends.get(pid, 0.0) for pid, cpu in team.database.backends().items()
    )
    return {
        "calls": made,
        "rows_per_s": made / took,
        "writer_cpu": ran / made,
        "writer_cpu_wait": queued / made,
        # The rest of the writers' time: round trips, commits, locks (both writers
        # counted busy until the last row, so with two this is an upper bound).
        "writer_database_wait": (took * len(pids) - ran - queued) / made,
        "database_cpu": database_cpu / made,
        "missing": before + made - team.database.recorded(),
    }


def recorder_times(pids: list[int]) -> tuple[float, float]:
    """Seconds the relays' recording threads ran, and waited for a CPU (runnable
    but not running), from the scheduler's per-thread counters. They are the
    threads the recorder lowers to nice 10 (Python 3.11 names no OS thread)."""
    ran = queued = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            stat = (task / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[16]) == 10:
                fields = (task / "schedstat").read_text().split()
                ran, queued = ran + int(fields[0]), queued + int(fields[1])
    return ran / 1e9, queued / 1e9


def measure_database(
    kind: str, fake_port: int, sessions: Sessions, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Both entries and both drains on one database, in a fresh team."""
    with tempfile.TemporaryDirectory(prefix=f"claudemon-scale-{kind.lower()}-") as tmp:
        database = Database(kind, Path(tmp), args.postgres)
        team = None
        try:
            team = team_start(database, fake_port, Path(tmp))
            one = measure_entry(team, team.ports[0], [0], sessions, args.quick)
            two = measure_entry(team, team.front_port, [0, 1], sessions, args.quick)
            # Last: HAProxy takes relays whose writes wait over a second out of
            # service, and puts them back only after their next check.
            out = {"one relay": one, "two relays": two}
            out["drain, one relay"] = drain(team, [0], sessions)
            out["drain, two relays"] = drain(team, [0, 1], sessions)
            two["quarantined"] = team.quarantined()
            return out
        finally:
            if team is not None:
                team.stop()
            database.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--postgres", default=POSTGRES, help="maintenance database")
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    sessions = Sessions(templates=4, calls=12)
    fake_port = free_port()
    fake = start_fake(fake_port)
    os.sched_setaffinity(0, {0})
    try:
        direct = entry_latency(fake_port, sessions, args.quick)
        direct["streams_per_s"] = asyncio.run(throughput(fake_port, 64, 4))
        kinds = ["SQLite"] if args.sqlite_only else ["PostgreSQL", "SQLite"]
        results = {}
        for kind in kinds:
            try:
                results[kind] = measure_database(kind, fake_port, sessions, args)
            except psycopg.OperationalError as exc:  # no server: SQLite alone
                print(f"PostgreSQL not measured: {exc}".strip(), file=sys.stderr)
    finally:
        fake.terminate()
        fake.wait(10)
    report(direct, results, sessions)
    print(f"\nload average at the end: {os.getloadavg()}")


def report(
    direct: dict[str, float],
    results: dict[str, dict[str, dict[str, float]]],
    sessions: Sessions,
) -> None:
    sizes = [len(body) for template in sessions.templates for body in template]
    print(
        f"\nClaude Code calls: bodies {min(sizes) // 1024}-{max(sizes) // 1024} KB "
        f"(mean {sum(sizes) // len(sizes) // 1024} KB), answers of {CALL_EVENTS} "
        f"events {CALL_GAP_MS} ms apart (20 events, no pauses, in bursts)"
    )
    columns = [
        (kind, entry) for kind in results for entry in ("one relay", "two relays")
    ]
    print(
        f"\n{'':46} {'direct':>8}"
        + "".join(f" {k[:6]:>6} {e[:3]:>3}" for k, e in columns)
    )
    print(f"{'':46} {'':>8}" + " (two relays: behind HAProxy)")
    rows = [
        ("first event p50, small body, c=1 (ms)", "first_small", 1, True),
        ("first event p50, Claude Code body, c=1 (ms)", "first_cc", 1, True),
        ("streams/s, concurrency 64, 50 events", "streams_per_s", 1, True),
        ("CPU per relayed event, relays (us)", "cpu_event_relays", 1e6, False),
        ("  HAProxy (us)", "cpu_event_front", 1e6, False),
        ("  PostgreSQL backends (us)", "cpu_event_database", 1e6, False),
        ("CPU per Claude Code call, relays (ms)", "cpu_call_relays", 1e3, False),
        ("  HAProxy (ms)", "cpu_call_front", 1e3, False),
        ("  PostgreSQL backends (ms)", "cpu_call_database", 1e3, False),
        ("burst, 64 conns: calls relayed/s", "burst_calls_per_s", 1, False),
        ("  calls recorded/s, start to last row", "burst_recorded_per_s", 1, False),
        ("  last row written after the last call (s)", "burst_lag_s", 1, False),
    ]
    for label, key, scale, has_direct in rows:
        cells = [f"{direct[key] * scale:8.2f}" if has_direct else f"{'-':>8}"]
        cells += [f"{results[k][e][key] * scale:10.2f}" for k, e in columns]
        print(f"{label:46} " + " ".join(cells))
    print("\nadded to the first event over direct, p50 (ms):")
    for label, key in (("small body", "first_small"), ("Claude Code body", "first_cc")):
        added = [results[k][e][key] - direct[key] for k, e in columns]
        print(f"  {label:44} {'':8} " + " ".join(f"{a:+10.2f}" for a in added))
    report_recorder(results)


def report_recorder(results: dict[str, dict[str, dict[str, float]]]) -> None:
    print(
        "\nrecorder, draining a burst the database held (straight to the relays);"
        "\nper row: the recording threads' CPU, their wait for a CPU, their wait on"
        " the database, PostgreSQL's CPU:"
    )
    for kind, figures in results.items():
        for name in ("drain, one relay", "drain, two relays"):
            d = figures[name]
            print(
                f"  {kind:10} {name[7:]:10}: {d['calls']:4.0f} calls, "
                f"{d['rows_per_s']:4.0f} rows/s; per row {d['writer_cpu'] * 1e3:.2f} + "
                f"{d['writer_cpu_wait'] * 1e3:.2f} + "
                f"{d['writer_database_wait'] * 1e3:.2f} ms, "
                f"database {d['database_cpu'] * 1e3:.2f} ms; missing {d['missing']:.0f}"
            )
        print(
            f"  {kind:10} steps set aside: {figures['two relays']['quarantined']:.0f}"
        )
    print("\nper core, from the CPU per Claude Code call above (one relay):")
    for kind, figures in results.items():
        one, two = figures["one relay"], figures["two relays"]
        line = f"  {kind:10}: a relay core {1 / one['cpu_call_relays']:5.0f} calls/s"
        if two["cpu_call_front"]:
            line += f"; an HAProxy core {1 / two['cpu_call_front']:6.0f} calls/s"
        if one["cpu_call_database"]:
            line += f"; a PostgreSQL core {1 / one['cpu_call_database']:5.0f} calls/s"
        drained = figures["drain, one relay"]
        alone = drained["writer_cpu"] + drained["writer_database_wait"]
        print(f"{line}; a relay's recorder with a core {1 / alone:4.0f} rows/s")


if __name__ == "__main__":
    main()
