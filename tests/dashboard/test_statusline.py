"""The statusline: a whole process, fed what Claude Code sends, never a traceback."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from tests.conftest import database_env, free_port
from tests.factories import exchange_create

SCRIPT = Path(__file__).resolve().parents[2] / "apps" / "dashboard" / "statusline.py"
SESSION = "5e55105e-0000-4000-8000-00000000beef"
# What Claude Code writes on the command's standard input (2.1.x).
CLAUDE_CODE_INPUT = {
    "hook_event_name": "Status", "session_id": SESSION,
    "transcript_path": f"/home/me/.claude/projects/-home-me-x/{SESSION}.jsonl",
    "cwd": "/home/me/x", "model": {"id": "claude-sonnet-4-5", "display_name": "Sonnet"},
    "workspace": {"current_dir": "/home/me/x", "project_dir": "/home/me/x"},
    "version": "2.1.197", "output_style": {"name": "default"},
    "cost": {"total_cost_usd": 0.01, "total_duration_ms": 1000},
}  # fmt: skip


def test_database() -> str:
    """Return the test database as the statusline takes it: a file or a URL."""
    return (
        database_env().get("CLAUDEMON_DATABASE_URL") or connection.settings_dict["NAME"]
    )


def statusline(db: Path | str, stdin: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-I", "-S", str(SCRIPT), "--db", str(db), "--tz", "UTC",
         *extra],
        input=stdin, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_it_shows_session_today_block_and_limits():
    now = datetime.now(UTC)
    # Two calls of this session in the last half hour ($0.003 each), one of
    # another session; the relay saw the subscription's limits on the last.
    for minutes, session in ((20, SESSION), (10, "other"), (5, SESSION)):
        exchange_create(
            started_at=now - timedelta(minutes=minutes), session_id=session,
            input_tokens=1000, output_tokens=0, unified_5h_utilization=0.42,
            unified_7d_utilization=0.18, unified_status="allowed",
        )  # fmt: skip
    done = statusline(test_database(), json.dumps(CLAUDE_CODE_INPUT))
    assert done.returncode == 0 and not done.stderr
    line = done.stdout.strip()
    assert line.startswith("$0.0060 session · $0.0090 today · $0.0090 block (")
    assert " left" in line and line.endswith("· 5h 42% 7d 18%")


@pytest.mark.parametrize(
    ("setup", "expected"),
    [("missing", "claudemon: no database yet (make run)"),
     ("not a database", "claudemon: no data"),
     ("empty", "claudemon: no calls recorded yet")],
)  # fmt: skip
@pytest.mark.django_db(transaction=True)
def test_it_prints_a_short_line_instead_of_failing(tmp_path, setup, expected):
    db = tmp_path / "claudemon.sqlite3"
    if setup == "not a database":
        db.write_bytes(b"garbage" * 100)
    elif setup == "empty":
        db = test_database()  # migrated, no calls
    done = statusline(db, json.dumps(CLAUDE_CODE_INPUT))
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, expected, "")


@pytest.mark.sqlite_only("an exclusively locked SQLite file")
@pytest.mark.django_db(transaction=True)
def test_it_falls_back_when_the_database_is_locked(tmp_path):
    exchange_create(session_id=SESSION)
    db = tmp_path / "locked.sqlite3"
    source = sqlite3.connect(connection.settings_dict["NAME"])
    target = sqlite3.connect(db)
    source.backup(target)
    source.close()
    target.execute("PRAGMA locking_mode = EXCLUSIVE")
    target.execute("BEGIN EXCLUSIVE")
    try:
        done = statusline(db, json.dumps(CLAUDE_CODE_INPUT))
    finally:
        target.close()
    assert (done.returncode, done.stdout.strip(), done.stderr) == (
        0, "claudemon: database busy", ""
    )  # fmt: skip


@pytest.mark.parametrize("stdin", ["", "not json", "[1, 2]", '{"session_id": 7}'])
@pytest.mark.django_db(transaction=True)
def test_it_reads_odd_input_as_no_session(stdin):
    exchange_create(started_at=datetime.now(UTC) - timedelta(minutes=1))
    done = statusline(test_database(), stdin)
    assert done.returncode == 0 and not done.stderr
    assert done.stdout.startswith("$") and "session" not in done.stdout


@pytest.mark.django_db(transaction=True)
def test_it_falls_back_when_the_ledger_stays_locked(tmp_path):
    # PostgreSQL's counterpart of the locked file: a migration or VACUUM FULL holds
    # the ledger; the line says so within its lock timeout instead of waiting.
    if connection.vendor == "sqlite":
        pytest.skip("SQLite: test_it_falls_back_when_the_database_is_locked")
    exchange_create(session_id=SESSION)
    with psycopg.connect(test_database()) as holder:
        holder.execute("LOCK TABLE proxy_apicall IN ACCESS EXCLUSIVE MODE")
        done = statusline(test_database(), json.dumps(CLAUDE_CODE_INPUT))
    assert (done.returncode, done.stdout.strip(), done.stderr) == (
        0, "claudemon: database busy", ""
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_it_says_no_data_when_the_server_is_gone():
    gone = f"postgres://127.0.0.1:{free_port()}/gone"
    done = statusline(gone, json.dumps(CLAUDE_CODE_INPUT))
    assert (done.returncode, done.stdout.strip(), done.stderr) == (
        0, "claudemon: no data", ""
    )  # fmt: skip
